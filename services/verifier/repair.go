package verifier

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/pipeline/broker"
)

// Publish stores a result on AUDIT (relay.verify.<site>), where `relay
// status` reads the site's last verification.
func Publish(ctx context.Context, js jetstream.JetStream, r messages.VerifyResult) error {
	id := "verify." + r.Site + "." + strconv.FormatInt(r.FinishedAt.UnixNano(), 10)
	return broker.Publish(ctx, js, messages.VerifySubject(r.Site), id, broker.Route{Site: r.Site}, r)
}

// repairChunk bounds the records of one repair request (a request is one
// NATS message).
const repairChunk = 5000

// RepairRequests are the export requests that repair an outcome: the
// differing records (and the extras, to delete) in runs of their own, each
// with a run ID derived from its content, so an identical repair asked
// again dedupes. Each version (request time) is newer than what the
// importer stored for its records, so latest-wins takes them. Empty when
// there is nothing to repair.
func RepairRequests(ctx context.Context, js jetstream.JetStream, o *Outcome, now time.Time) []messages.ExportRequested {
	var out []messages.ExportRequested
	site := o.Result.Site
	at := now.UTC()
	add := func(records, deletes []string) {
		ids := append(append([]string(nil), records...), deletes...)
		if newest := newestImported(ctx, js, o, ids); !newest.Before(at) {
			at = newest.Add(time.Millisecond)
		}
		h := messages.HashJSON(struct{ R, D []string }{records, deletes})[:16]
		out = append(out, messages.ExportRequested{V: messages.V, Site: site, RunID: site + "-repair-" + h,
			Reason: messages.ReasonRepair, RequestedAt: at, Records: records, DeleteDest: deletes})
	}
	recs := append([]string(nil), o.Records...)
	sort.Strings(recs)
	for i := 0; i < len(recs); i += repairChunk {
		add(recs[i:min(i+repairChunk, len(recs))], nil)
	}
	if len(o.Extras) > 0 {
		// One request: max_deletions_per_run applies to the repair's
		// deletions as a whole.
		add(nil, o.Extras)
	}
	return out
}

// newestImported is the newest version the importer stored among the
// repair's records (zero when none or unreadable). Site IDs are mapped to
// destination IDs through the outcome's lists.
func newestImported(ctx context.Context, js jetstream.JetStream, o *Outcome, ids []string) time.Time {
	if js == nil || len(ids) == 0 {
		return time.Time{}
	}
	kv, err := js.KeyValue(ctx, messages.BucketDestVersion)
	if err != nil {
		return time.Time{}
	}
	var newest int64
	for _, id := range ids {
		dest := id
		if d, ok := o.destOf[id]; ok {
			dest = d
		}
		e, err := kv.Get(ctx, base64.RawURLEncoding.EncodeToString([]byte(dest)))
		if err != nil {
			continue
		}
		if n, err := strconv.ParseInt(string(e.Value()), 10, 64); err == nil && n > newest {
			newest = n
		}
	}
	if newest == 0 {
		return time.Time{}
	}
	return time.UnixMilli(newest).UTC()
}

// Repair publishes the outcome's repair requests one after the other (a
// run holds the site's lease: two at once would skip one), waiting for
// each run to export and for the pipeline to drain. It needs the pipeline
// running (`relay all`, or the services).
func Repair(ctx context.Context, js jetstream.JetStream, o *Outcome, timeout time.Duration) (*messages.VerifyRepair, error) {
	reqs := RepairRequests(ctx, js, o, time.Now())
	rep := &messages.VerifyRepair{Records: len(o.Records), Deletes: len(o.Extras)}
	if len(reqs) == 0 {
		return rep, nil
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for _, req := range reqs {
		rep.Runs = append(rep.Runs, req.RunID)
		m, err := broker.NewMsg(messages.ExportRequestedSubject(req.Site), req.MsgID(), broker.Route{Site: req.Site, Run: req.RunID}, req)
		if err != nil {
			return rep, err
		}
		ack, err := js.PublishMsg(ctx, m)
		if err != nil {
			return rep, fmt.Errorf("site %s: publish repair run %s: %w", req.Site, req.RunID, err)
		}
		if ack.Duplicate {
			rep.Duplicate = true // asked already, within the dedupe window: wait for that run
		}
		ev, err := waitRun(ctx, js, req.Site, req.RunID)
		if err != nil {
			return rep, err
		}
		if ev.Phase == messages.PhaseFailed {
			return rep, fmt.Errorf("site %s: repair run %s failed: %s", req.Site, req.RunID, ev.Error)
		}
	}
	if err := waitDrained(ctx, js); err != nil {
		return rep, fmt.Errorf("site %s: the pipeline did not drain after the repair: %w", o.Result.Site, err)
	}
	return rep, nil
}

// waitRun waits for the repair run's exported (or failed) event on
// relay.run.<site>.
func waitRun(ctx context.Context, js jetstream.JetStream, site, runID string) (messages.RunEvent, error) {
	stream, err := js.Stream(ctx, messages.StreamAudit)
	if err != nil {
		return messages.RunEvent{}, err
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		var ev messages.RunEvent
		if m, err := stream.GetLastMsgForSubject(ctx, messages.RunSubject(site)); err == nil && decode(m.Data, &ev) &&
			ev.RunID == runID && (ev.Phase == messages.PhaseExported || ev.Phase == messages.PhaseFailed) {
			if ev.Phase == messages.PhaseFailed && strings.HasPrefix(ev.Error, "skipped:") {
				// Another run of the site held its lease: ask again later.
				return ev, fmt.Errorf("site %s: repair run %s was skipped: another run of the site was in progress; run the repair again when it ended", site, runID)
			}
			return ev, nil
		}
		select {
		case <-ctx.Done():
			return messages.RunEvent{}, fmt.Errorf("site %s: repair run %s did not finish: %w (is the pipeline running?)", site, runID, ctx.Err())
		case <-tick.C:
		}
	}
}

// waitDrained waits until the export, transform and import consumers have
// nothing left (twice in a row: an import in flight shows as ack pending).
func waitDrained(ctx context.Context, js jetstream.JetStream) error {
	quiet := 0
	for quiet < 2 {
		if broker.Drained(ctx, js) {
			quiet++
		} else {
			quiet = 0
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	return nil
}

func decode(b []byte, v any) bool { return json.Unmarshal(b, v) == nil }
