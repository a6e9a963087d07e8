package exporter

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/pipeline/broker"
	"github.com/redcap-relay/relay/services/internal/pipeline/retry"
	"github.com/redcap-relay/relay/services/internal/pipeline/sitemeta"
	"github.com/redcap-relay/relay/services/internal/pipeline/telemetry"
	"github.com/redcap-relay/relay/services/internal/pipeline/topology"
	"github.com/redcap-relay/relay/services/internal/policy"
	"github.com/redcap-relay/relay/services/internal/redcap"
)

type result struct {
	full                         bool
	exported, deleted, unchanged int
	calls                        int
	pending, held, short         int
	renamed                      int
	warnings                     []string
}

// siteRun is one run's working set.
type siteRun struct {
	site     *config.Site
	req      messages.ExportRequested
	client   REDCap
	start    time.Time // when the run began: the next cursor
	snap     *messages.MetadataSnapshot
	compiled *policy.Compiled
	warnings []string // for the run's result
	plan     runPlan
	pub      Publisher
	short    int    // answers that lacked records or rows
	access   string // the token's DAG access measured this run ("" = not measured)
	// retry retries each call within the run's budget (site.retry_for),
	// saying so in the log and the run's status.
	retry retry.Policy
}

func (r *siteRun) version() int64 { return r.req.RequestedAt.UnixMilli() }

func (e *Exporter) run(ctx context.Context, site *config.Site, req messages.ExportRequested) (res result, err error) {
	client, err := e.d.Sites.Client(site.ID)
	if err != nil {
		return res, retry.Permanent(err)
	}
	defer func() { res.calls = int(client.Calls()) }()
	if err := e.checkRawStream(ctx); err != nil {
		return res, err
	}
	st, err := e.d.Store.State(ctx, site.ID)
	if err != nil {
		return res, err
	}
	r := &siteRun{site: site, req: req, client: client, start: e.d.Now().UTC(), pub: e.d.Store.Publisher()}
	r.retry = e.runRetry(ctx, r)

	// 1. Metadata, and the transfer policy compiled against this very
	// dictionary.
	if r.snap, err = e.snapshot(ctx, r, st); err != nil {
		return res, err
	}
	if r.compiled, err = e.compile(ctx, r); err != nil {
		return res, err
	}
	res.warnings = append(res.warnings, r.warnings...)
	if req.Repair() {
		return res, e.repair(ctx, r, st, &res)
	}

	// 2. Full or changed-since, and the record-ID list checked against
	// what is known.
	r.plan = planRun(req, st, r.snap.Hash, r.compiled.Version(), r.start, site.FullEvery.D())
	res.full = r.plan.Full
	prev, err := e.d.Store.Known(ctx, site.ID)
	if err != nil {
		return res, err
	}
	list, todo, err := e.listIDs(ctx, r, st, prev)
	if err != nil {
		return res, err
	}
	absent, err := e.absentRecords(ctx, r, prev, list, &todo)
	if err != nil {
		return res, err
	}
	next, current := carryKnown(prev, list.order)
	if r.plan.Full {
		if warn := e.checkServerClock(ctx, r); warn != "" {
			res.warnings = append(res.warnings, warn)
		}
	}

	// 3. Records, batch by batch. While known records are gone, new ones
	// are held back until renames are known.
	var short atomic.Int64
	var held []heldRecord
	if len(absent) > 0 {
		held = []heldRecord{}
	}
	if res.exported, res.unchanged, err = e.exportRecords(ctx, r, todo, list, prev, next, current, &short, &held); err != nil {
		return res, err
	}
	r.short += int(short.Load())
	renamed := e.detectRenames(ctx, r, st, absent, prev, held)
	for _, h := range held {
		if old := renamed[h.msg.RecordID]; old != "" {
			h.msg.RenamedFrom = old
			e.log.Info("record renamed at the site; renamed at the destination too", "site", site.ID, "run", req.RunID,
				"from", r.compiled.DestRecordID(old), "to", r.compiled.DestRecordID(h.msg.RecordID))
		}
		if err := r.pub.Add(ctx, messages.RecordsRawSubject(site.ID), h.msg.MsgID(), broker.Route{Site: site.ID, Run: req.RunID, Record: h.msg.RecordID}, h.msg); err != nil {
			return res, err
		}
	}
	absent = withoutRenamed(absent, renamed)
	res.renamed = len(renamed)

	// 4. Deletions: known before, gone now, and confirmed gone.
	del, err := e.deletions(ctx, r, st, absent)
	if err != nil {
		return res, err
	}
	for _, id := range del.Delete {
		m := messages.RecordExported{V: messages.V, Site: site.ID, RunID: req.RunID, RecordID: id, Version: r.version(),
			Hash: "deleted", MetadataHash: r.snap.Hash, Deleted: true, ExportedAt: r.start}
		if err := r.pub.Add(ctx, messages.RecordsRawSubject(site.ID), m.MsgID(), broker.Route{Site: site.ID, Run: req.RunID}, m); err != nil {
			return res, err
		}
	}
	res.deleted = len(del.Delete)
	// Records waiting or held stay known (they are candidates again next
	// run); records carried out, rejected or no longer propagated do not.
	for id := range del.State.Pending {
		next[id] = prev[id]
	}
	res.pending, res.short = len(del.State.Pending), r.short
	if del.State.Held != nil {
		res.held = len(del.State.Held.Records)
		res.warnings = append(res.warnings, del.Warn+": confirm with `relay deletions approve --site "+site.ID+" --run "+del.State.Held.Run+"`, or `reject`")
	}
	if r.short > 0 {
		res.warnings = append(res.warnings, fmt.Sprintf("%d REDCap answer(s) lacked records or rows and were asked again", r.short))
	}

	// 5. Only when everything is stored does the site's state move on.
	if err := r.pub.Wait(ctx); err != nil {
		return res, err
	}
	if err := e.d.Store.SaveKnown(ctx, site.ID, next); err != nil {
		return res, err
	}
	if err := e.d.Store.SaveDeletions(ctx, site.ID, del.State); err != nil {
		return res, err
	}
	st.Cursor, st.FieldsHash, st.SnapshotHash = r.start, sitemeta.FieldsHash(r.snap.Fields), r.snap.Hash
	st.PolicyVersion, st.LastRun, st.Records = r.compiled.Version(), req.RunID, len(list.order)
	if r.access != "" {
		st.DAGAccess = r.access
	}
	if res.full {
		st.LastFull = r.start
	}
	telemetry.Records.WithLabelValues(messages.StageExport, site.ID, "exported").Add(float64(res.exported))
	telemetry.Records.WithLabelValues(messages.StageExport, site.ID, "unchanged").Add(float64(res.unchanged))
	telemetry.Records.WithLabelValues(messages.StageExport, site.ID, "deleted").Add(float64(res.deleted))
	telemetry.DeletionsHeld.WithLabelValues(site.ID).Set(float64(res.held))
	telemetry.DeletionsPending.WithLabelValues(site.ID).Set(float64(res.pending))
	return res, e.d.Store.SaveState(ctx, site.ID, st)
}

// snapshot takes the site's metadata. One call tells whether the dictionary
// changed; only then (or on a full run) is the whole snapshot taken again.
func (e *Exporter) snapshot(ctx context.Context, r *siteRun, st messages.SiteState) (*messages.MetadataSnapshot, error) {
	fields, err := retry.Value(ctx, r.retry, func() ([]messages.Field, error) { return r.client.ExportMetadata(ctx) })
	if err != nil {
		return nil, err
	}
	var snap *messages.MetadataSnapshot
	if !r.req.Full && st.SnapshotHash != "" && sitemeta.FieldsHash(fields) == st.FieldsHash {
		snap, _ = e.d.Store.Snapshot(ctx, messages.MetadataKey(r.site.ID, st.SnapshotHash))
	}
	if snap == nil {
		if snap, err = sitemeta.Fetch(ctx, r.client, r.site.ID, r.retry); err != nil {
			return nil, err
		}
	}
	snap.RunID = r.req.RunID
	snap.TakenAt = r.start
	if err := e.d.Store.PublishSnapshot(ctx, snap); err != nil {
		return nil, err
	}
	return snap, nil
}

// compile binds the site's policy to the snapshot and checks that the
// destination can take what it writes.
func (e *Exporter) compile(ctx context.Context, r *siteRun) (*policy.Compiled, error) {
	compiled, err := e.d.Sites.Policy(r.site.ID, r.snap)
	if err != nil {
		return nil, retry.Permanent(err) // names the site, the policy file and every field
	}
	// The importer reads the destination's dictionary now. While it cannot
	// (no importer, the destination down) the run is checked against the
	// dictionary it read last, with a warning, so that the records wait in
	// RECORDS_CLEAN for the destination (the outage is what the stream is
	// for: REDCap refuses a field that has gone since, and that record is
	// dead-lettered with the reason). Without one the run waits, within its
	// retry budget, as it does when the dictionary changed while it was read.
	dest, err := e.d.Store.Destination(ctx, r.site.ID, r.start)
	if err != nil {
		var last *messages.MetadataSnapshot
		if !errors.Is(err, errDestinationChanged) {
			if snap, lerr := e.d.Store.Snapshot(ctx, messages.DestinationMetadataKey); lerr == nil {
				last = snap
			}
		}
		if last != nil {
			r.warnings = append(r.warnings, fmt.Sprintf("the destination could not be checked (%v): checked against its dictionary of %s; the records wait for it in RECORDS_CLEAN",
				err, last.TakenAt.UTC().Format(time.RFC3339)))
			e.log.Warn("destination check failed: using the destination's last dictionary", "site", r.site.ID, "run", r.req.RunID, "err", err, "dictionary_of", last.TakenAt)
			dest = last
		} else {
			dest, err = retry.Value(ctx, r.retry, func() (*messages.MetadataSnapshot, error) {
				return e.d.Store.Destination(ctx, r.site.ID, r.start)
			})
			if err != nil {
				return nil, fmt.Errorf("site %s: %w", r.site.ID, err)
			}
		}
	}
	if err := compiled.CheckDestination(dest.Fields); err != nil {
		return nil, retry.Permanent(fmt.Errorf("site %s: the destination cannot take what policy %s writes: %w", r.site.ID, r.site.Policy, err))
	}
	return compiled, nil
}

// listIDs lists every record ID (with the rows each has) and, on an
// incremental run, those changed since the cursor (minus the overlap, in
// the server's time zone: REDCap reads dateRangeBegin as server-local time),
// checking the answers against each other. The records to export are every
// record on a full run; on an incremental one the changed records and those
// the known set lacks (new, or wrongly dropped earlier: exported again
// whatever their content hash).
func (e *Exporter) listIDs(ctx context.Context, r *siteRun, st messages.SiteState, prev Known) (*idList, []string, error) {
	idField := r.compiled.RecordIDField()
	list := newIDList()
	rows, err := e.exportIDRows(ctx, r, nil)
	if err != nil {
		return nil, nil, err
	}
	list.add(rows, idField)
	if r.plan.Full {
		// A second answer costs one call per full run and is the only
		// evidence the first one was complete.
		second, err := e.exportIDRows(ctx, r, nil)
		if err != nil {
			return nil, nil, err
		}
		if list.add(second, idField) > 0 || distinctIDs(second, idField) != len(list.order) {
			r.short++
			if err := e.stabilise(ctx, r, list); err != nil {
				return nil, nil, err
			}
		}
		return list, list.order, nil
	}
	since := st.Cursor.Add(-r.site.Overlap.D()).In(r.site.ServerLocation())
	changed, err := retry.Value(ctx, r.retry, func() ([]string, error) { return r.client.ExportRecordIDs(ctx, idField, since) })
	if err != nil {
		return nil, nil, err
	}
	if list.addIDs(changed) > 0 {
		// Changed records missing from the full list: it was short.
		r.short++
		if err := e.stabilise(ctx, r, list); err != nil {
			return nil, nil, err
		}
	}
	todo := append([]string(nil), changed...)
	seen := make(map[string]bool, len(changed))
	for _, id := range changed {
		seen[id] = true
	}
	for _, id := range list.order {
		// Unknown here (new, or dropped by mistake), or marked to be
		// exported again (a file of it did not make it last time).
		if h, known := prev[id]; (!known || h == "") && !seen[id] {
			todo = append(todo, id)
		}
	}
	return list, todo, nil
}

// withoutRenamed drops the records renamed at the site from those gone.
func withoutRenamed(absent []string, renamed map[string]string) []string {
	old := make(map[string]bool, len(renamed))
	for _, o := range renamed {
		old[o] = true
	}
	out := absent[:0]
	for _, id := range absent {
		if !old[id] {
			out = append(out, id)
		}
	}
	return out
}

func distinctIDs(rows []messages.Row, idField string) int {
	seen := make(map[string]struct{}, len(rows))
	for _, r := range rows {
		seen[r[idField]] = struct{}{}
	}
	return len(seen)
}

// absentRecords are the known records the list lacks and a direct export
// does not find either. Those it does find were missing from the list: they
// join it (and the records to export), and the list is stabilised.
func (e *Exporter) absentRecords(ctx context.Context, r *siteRun, prev Known, list *idList, todo *[]string) ([]string, error) {
	var candidates []string
	for _, id := range gone(prev, list.rows) {
		candidates = append(candidates, id)
	}
	if len(candidates) == 0 || !r.site.PropagateDeletions {
		return nil, nil // without propagation a vanished record is only forgotten
	}
	found, err := e.confirmCandidates(ctx, r, candidates)
	if err != nil {
		return nil, err
	}
	var absent []string
	idField := r.compiled.RecordIDField()
	for _, id := range candidates {
		rows, ok := found[id]
		if !ok {
			absent = append(absent, id)
			continue
		}
		list.add(rows, idField)
		*todo = append(*todo, id)
	}
	if len(found) > 0 {
		r.short++
		e.log.Warn("the record-ID list lacked records that exist at the site; asking again", "site", r.site.ID, "run", r.req.RunID, "missing_from_list", len(found))
		if err := e.stabilise(ctx, r, list); err != nil {
			return nil, err
		}
		var still []string
		for _, id := range absent {
			if !list.has(id) {
				still = append(still, id)
			} else {
				*todo = append(*todo, id)
			}
		}
		absent = still
	}
	return absent, nil
}

// exportRecords exports the records to do in batches (up to
// ExportConcurrency calls at once: REDCap's per-call overhead dominates
// small batches), each answer checked against the ID list, and publishes
// those whose content changed.
func (e *Exporter) exportRecords(ctx context.Context, r *siteRun, todo []string, list *idList, prev, next Known, current map[string]struct{}, short *atomic.Int64, held *[]heldRecord) (exported, same int, err error) {
	site := r.site
	results := exportBatches(ctx, todo, site.BatchSize, site.ExportConcurrency, func(ids []string) ([]redcap.Record, fileOutcome, error) {
		recs, err := e.fetchComplete(ctx, r, ids, list, short)
		if err != nil {
			return nil, fileOutcome{}, err
		}
		files, err := e.attachFiles(ctx, r, recs)
		return recs, files, err
	})
	done := 0
	for b := range results {
		if b.err != nil {
			return exported, same, fmt.Errorf("site %s: export batch %d (records %d-%d of %d): %w", site.ID, b.index+1, b.from+1, b.from+b.count, len(todo), b.err)
		}
		for _, rec := range b.records {
			if _, ok := current[rec.ID]; !ok {
				continue // created after the ID list; the next run takes it
			}
			files := b.files.files[rec.ID]
			// The content without the ID: unchanged records, and renamed ones.
			h := messages.HashContent(rec.Rows, files, r.compiled.RecordIDField())
			if unchanged(prev, rec.ID, h, r.plan.Force) {
				same++
				continue
			}
			m := messages.RecordExported{
				V: messages.V, Site: site.ID, RunID: r.req.RunID, RecordID: rec.ID, Version: r.version(),
				Hash: h, MetadataHash: r.snap.Hash, Rows: rec.Rows, Files: files, ExportedAt: r.start, Repair: r.req.Repair(),
			}
			if _, known := prev[rec.ID]; !known && *held != nil && len(*held) < maxHeldNew {
				*held = append(*held, heldRecord{msg: m, content: h})
			} else if err := r.pub.Add(ctx, messages.RecordsRawSubject(site.ID), m.MsgID(), broker.Route{Site: site.ID, Run: r.req.RunID, Record: rec.ID}, m); err != nil {
				return exported, same, err
			}
			next[rec.ID] = shortHash(h)
			if b.files.failed[rec.ID] {
				// A file did not make it: export the record again next run.
				next[rec.ID] = ""
			}
			exported++
		}
		done += b.count
		if (b.index+1)%50 == 0 {
			e.log.Info("export progress", "site", site.ID, "run", r.req.RunID, "records_done", done, "of", len(todo))
		}
		// Backpressure: a site must not flood RECORDS_RAW faster than the
		// transformers drain it (memory, disk, and the raw data's exposure).
		if err := e.waitForTransformers(ctx); err != nil {
			return exported, same, err
		}
	}
	return exported, same, nil
}

// checkRawStream fails the run while RECORDS_RAW or the transformers'
// consumer is missing. Without the check an incremental run would find every
// record unchanged (the known-record set says it was sent) and succeed, while
// the records lost with the stream never reach the destination.
func (e *Exporter) checkRawStream(ctx context.Context) error {
	_, err := e.d.Store.RawBacklog(ctx)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return fmt.Errorf("stream %s is not on the NATS server %s", messages.StreamRecordsRaw, broker.MissingStreamRemedy)
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		return fmt.Errorf("the transformers' consumer %s on %s is missing: run `relay provision`", topology.Transform.Consumer, messages.StreamRecordsRaw)
	}
	return nil // readable, or not readable to this user: backpressure copes
}

// waitForTransformers pauses the export while the transformers' backlog is
// above the limit.
func (e *Exporter) waitForTransformers(ctx context.Context) error {
	for time.Now().UnixNano() >= e.backpressureOffUntil.Load() {
		n, err := e.d.Store.RawBacklog(ctx)
		if err != nil {
			// Backpressure is a courtesy: never stop or slow an export for
			// it. Try again in a few minutes (NATS may have been restarting).
			e.backpressureOffUntil.Store(time.Now().Add(5 * time.Minute).UnixNano())
			e.log.Warn("cannot read the transformers' backlog; exporting without backpressure for 5 minutes (on a permissions error: the exporter's NATS user needs $JS.API.CONSUMER.INFO.RECORDS_RAW.transformer)", "err", err)
			return nil
		}
		if n < uint64(e.d.MaxRawBacklog) {
			return nil
		}
		t := time.NewTimer(200 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}

// checkServerClock compares the site's REDCap clock with the zone the
// network file gives it, on full runs (an incremental run stays at its few
// calls). A wrong server_time_zone silently shifts every changed-since
// window; it needs the Logging right, and without it nothing is said.
func (e *Exporter) checkServerClock(ctx context.Context, r *siteRun) string {
	reading, err := r.client.ReadServerClock(ctx)
	if err != nil {
		e.log.Debug("site clock not checked (no Logging right?)", "site", r.site.ID, "err", err)
		return ""
	}
	warn := redcap.ClockMismatch(reading, r.site.ServerLocation(), r.site.ServerTimeZone)
	if warn != "" {
		e.log.Warn("site's REDCap clock disagrees with server_time_zone", "site", r.site.ID, "run", r.req.RunID, "problem", warn)
	}
	return warn
}
