package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/pipeline/broker"
	"github.com/redcap-relay/relay/services/internal/redcap"
)

// SiteDeletions is one site's line of `relay deletions list`: destination
// record IDs only (the held records as the destination knows them).
type SiteDeletions struct {
	Site    string    `json:"site"`
	Pending int       `json:"pending"`
	Oldest  time.Time `json:"oldest_pending,omitzero"`
	Held    *Held     `json:"held,omitempty"`
	// Restorable are the site's records deleted at the destination whose
	// rows are still kept.
	Restorable []Restorable `json:"restorable,omitempty"`
}

// Held is a run's deletions waiting for an operator.
type Held struct {
	Run     string    `json:"run"`
	At      time.Time `json:"at"`
	Reason  string    `json:"reason"`
	Detail  string    `json:"detail"`
	Records []string  `json:"records"` // destination record IDs
}

// Restorable is a deleted record whose destination rows are kept.
type Restorable struct {
	Record    string    `json:"record"`
	DeletedAt time.Time `json:"deleted_at"`
	Run       string    `json:"run"`
}

// ListDeletions reads every site's pending, held and restorable deletions
// (site "" = all).
func ListDeletions(ctx context.Context, js jetstream.JetStream, site string) ([]SiteDeletions, error) {
	bySite := map[string]*SiteDeletions{}
	get := func(s string) *SiteDeletions {
		if bySite[s] == nil {
			bySite[s] = &SiteDeletions{Site: s}
		}
		return bySite[s]
	}
	obs, err := js.ObjectStore(ctx, messages.BucketDeletions)
	if err != nil {
		return nil, fmt.Errorf("object store %s: %w (has the pipeline been provisioned? `relay provision`)", messages.BucketDeletions, err)
	}
	infos, err := obs.List(ctx)
	if err != nil && !errors.Is(err, jetstream.ErrNoObjectsFound) {
		return nil, err
	}
	for _, in := range infos {
		if site != "" && in.Name != site {
			continue
		}
		st, err := readDeletionState(ctx, obs, in.Name)
		if err != nil {
			return nil, err
		}
		sd := get(in.Name)
		sd.Pending = len(st.Pending)
		for _, p := range st.Pending {
			if sd.Oldest.IsZero() || p.Since.Before(sd.Oldest) {
				sd.Oldest = p.Since
			}
		}
		if h := st.Held; h != nil {
			sd.Held = &Held{Run: h.Run, At: h.At, Reason: h.Reason, Detail: h.Detail, Records: h.DestRecords}
		}
	}
	kept, err := js.ObjectStore(ctx, messages.BucketDeletedRecords)
	if err == nil {
		infos, err := kept.List(ctx)
		if err != nil && !errors.Is(err, jetstream.ErrNoObjectsFound) {
			return nil, err
		}
		for _, in := range infos {
			s, rec, ok := strings.Cut(in.Name, "/")
			if !ok || (site != "" && s != site) {
				continue
			}
			var dr messages.DeletedRecord
			if b, err := kept.GetBytes(ctx, in.Name); err == nil && json.Unmarshal(b, &dr) == nil {
				get(s).Restorable = append(get(s).Restorable, Restorable{Record: rec, DeletedAt: dr.DeletedAt, Run: dr.Run})
			}
		}
	}
	out := make([]SiteDeletions, 0, len(bySite))
	for _, sd := range bySite {
		sort.Slice(sd.Restorable, func(i, j int) bool { return sd.Restorable[i].DeletedAt.After(sd.Restorable[j].DeletedAt) })
		out = append(out, *sd)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Site < out[j].Site })
	return out, nil
}

func readDeletionState(ctx context.Context, obs jetstream.ObjectStore, site string) (messages.DeletionState, error) {
	var st messages.DeletionState
	b, err := obs.GetBytes(ctx, site)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("site %s: deletion state is unreadable: %w", site, err)
	}
	return st, nil
}

// Decide records an operator's decision (approve or reject) on a site's
// held deletions and writes it to the audit. The exporter carries it out at
// the site's next run: approved records still absent are deleted, records
// back at the site are kept (the site's data wins), rejected ones are only
// forgotten.
func Decide(ctx context.Context, js jetstream.JetStream, site, run, decision, by string) (*messages.DeletionDecision, error) {
	if decision != messages.DecisionApprove && decision != messages.DecisionReject {
		return nil, fmt.Errorf("decision %q: approve or reject", decision)
	}
	if strings.TrimSpace(by) == "" {
		return nil, errors.New("say who decides (--by NAME): the audit records it")
	}
	obs, err := js.ObjectStore(ctx, messages.BucketDeletions)
	if err != nil {
		return nil, err
	}
	st, err := readDeletionState(ctx, obs, site)
	if err != nil {
		return nil, err
	}
	switch {
	case st.Held == nil:
		return nil, fmt.Errorf("site %s has no held deletions (run %s's were decided already, or superseded): see `relay deletions list --site %s`", site, run, site)
	case st.Held.Run != run:
		return nil, fmt.Errorf("site %s: no deletions are held for run %s; the held deletions are run %s's (%d record(s): %s): decide on that run", site, run, st.Held.Run, len(st.Held.Records), st.Held.Detail)
	}
	d := &messages.DeletionDecision{V: messages.V, Site: site, Run: run, Decision: decision, By: by, At: time.Now().UTC(), Records: len(st.Held.Records)}
	kv, err := js.KeyValue(ctx, messages.BucketDeletionDecisions)
	if err != nil {
		return nil, err
	}
	b, _ := json.Marshal(d)
	if _, err := kv.Put(ctx, messages.DeletionDecisionKey(site, run), b); err != nil {
		return nil, fmt.Errorf("store the decision: %w", err)
	}
	a := messages.DeletionAudit{V: messages.V, Site: site, Action: decision, Run: run, By: by, At: d.At, Records: st.Held.DestRecords}
	if err := broker.Publish(ctx, js, messages.DeletionsSubject(site), "deletions."+decision+"."+site+"."+run, broker.Route{Site: site, Run: run}, a); err != nil {
		return d, fmt.Errorf("decision stored, but its audit record not: %w", err)
	}
	return d, nil
}

// RestoreTarget is the part of the destination's REDCap client a restore uses.
type RestoreTarget interface {
	ExportRecords(ctx context.Context, p redcap.ExportParams) ([]messages.Row, error)
	ImportRecords(ctx context.Context, rows []messages.Row, p redcap.ImportParams) (redcap.ImportResult, error)
}

// Restore puts a deleted record's kept rows back at the destination. It
// refuses when the record exists at the destination again (re-created at
// the site and imported since): the site's current data wins.
func Restore(ctx context.Context, js jetstream.JetStream, dest RestoreTarget, site, record, by string) (int, error) {
	kept, err := js.ObjectStore(ctx, messages.BucketDeletedRecords)
	if err != nil {
		return 0, err
	}
	b, err := kept.GetBytes(ctx, messages.DeletedRecordName(site, record))
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return 0, fmt.Errorf("site %s: no deleted record %s is kept (kept for streams.deleted_retention after its deletion; see `relay deletions list --site %s`)", site, record, site)
	}
	if err != nil {
		return 0, err
	}
	var dr messages.DeletedRecord
	if err := json.Unmarshal(b, &dr); err != nil {
		return 0, fmt.Errorf("site %s: kept record %s is unreadable: %w", site, record, err)
	}
	now, err := dest.ExportRecords(ctx, redcap.ExportParams{Records: []string{record}})
	if err != nil {
		return 0, fmt.Errorf("destination: %w", err)
	}
	if len(now) > 0 {
		return 0, fmt.Errorf("site %s: record %s exists at the destination again (re-created at the site and imported since its deletion on %s): the site's current data wins; nothing restored",
			site, record, dr.DeletedAt.Format(time.RFC3339))
	}
	res, err := dest.ImportRecords(ctx, dr.Rows, redcap.ImportParams{})
	if err != nil {
		return 0, fmt.Errorf("destination: restore record %s: %w", record, err)
	}
	a := messages.DeletionAudit{V: messages.V, Site: site, Action: "restore", Run: dr.Run, By: by, At: time.Now().UTC(), Records: []string{record}}
	if err := broker.Publish(ctx, js, messages.DeletionsSubject(site), fmt.Sprintf("deletions.restore.%s.%s.%d", site, record, a.At.UnixNano()), broker.Route{Site: site}, a); err != nil {
		return res.Count, fmt.Errorf("record restored, but its audit record not: %w", err)
	}
	return res.Count, kept.Delete(ctx, messages.DeletedRecordName(site, record))
}

// WriteDeletionsTable prints the deletions for people.
func WriteDeletionsTable(w io.Writer, ds []SiteDeletions) error {
	if len(ds) == 0 {
		_, err := fmt.Fprintln(w, "no pending, held or restorable deletions")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SITE\tPENDING\tOLDEST PENDING\tHELD\tHELD RUN\tRESTORABLE")
	for _, d := range ds {
		oldest, held, run := "-", "0", "-"
		if !d.Oldest.IsZero() {
			oldest = d.Oldest.UTC().Format(time.RFC3339)
		}
		if d.Held != nil {
			held, run = fmt.Sprint(len(d.Held.Records)), d.Held.Run
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%d\n", d.Site, d.Pending, oldest, held, run, len(d.Restorable))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, d := range ds {
		if d.Held != nil {
			fmt.Fprintf(w, "  %s: %s; decide with `relay deletions approve --site %s --run %s --by NAME` (or reject)\n", d.Site, d.Held.Detail, d.Site, d.Held.Run)
		}
	}
	return nil
}
