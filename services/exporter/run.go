package exporter

import (
	"context"
	"errors"
	"fmt"
	"sync"
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
}

// siteRun is one run's working set.
type siteRun struct {
	site     *config.Site
	req      messages.ExportRequested
	client   REDCap
	start    time.Time // when the run began: the next cursor
	snap     *messages.MetadataSnapshot
	compiled *policy.Compiled
	plan     runPlan
	pub      Publisher
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

	// 1. Metadata, and the transfer policy compiled against this very
	// dictionary.
	if r.snap, err = e.snapshot(ctx, r, st); err != nil {
		return res, err
	}
	if r.compiled, err = e.compile(ctx, r); err != nil {
		return res, err
	}

	// 2. Full or changed-since.
	r.plan = planRun(req, st, r.snap.Hash, r.compiled.Version(), r.start, site.FullEvery.D())
	res.full = r.plan.Full
	all, todo, err := e.listIDs(ctx, r, st)
	if err != nil {
		return res, err
	}
	prev, err := e.d.Store.Known(ctx, site.ID)
	if err != nil {
		return res, err
	}
	next, current := carryKnown(prev, all)

	// 3. Records, batch by batch.
	if res.exported, res.unchanged, err = e.exportRecords(ctx, r, todo, prev, next, current); err != nil {
		return res, err
	}

	// 4. Deletions: known before, gone now.
	for _, id := range gone(prev, current) {
		if site.PropagateDeletions {
			m := messages.RecordExported{V: messages.V, Site: site.ID, RunID: req.RunID, RecordID: id, Version: r.version(),
				Hash: "deleted", MetadataHash: r.snap.Hash, Deleted: true, ExportedAt: r.start}
			if err := r.pub.Add(ctx, messages.RecordsRawSubject(site.ID), m.MsgID(), broker.Route{Site: site.ID, Run: req.RunID, Record: id}, m); err != nil {
				return res, err
			}
		}
		res.deleted++
	}

	// 5. Only when everything is stored does the site's state move on.
	if err := r.pub.Wait(ctx); err != nil {
		return res, err
	}
	if err := e.d.Store.SaveKnown(ctx, site.ID, next); err != nil {
		return res, err
	}
	st.Cursor, st.FieldsHash, st.SnapshotHash = r.start, sitemeta.FieldsHash(r.snap.Fields), r.snap.Hash
	st.PolicyVersion, st.LastRun, st.Records = r.compiled.Version(), req.RunID, len(all)
	if res.full {
		st.LastFull = r.start
	}
	telemetry.Records.WithLabelValues(messages.StageExport, site.ID, "exported").Add(float64(res.exported))
	telemetry.Records.WithLabelValues(messages.StageExport, site.ID, "unchanged").Add(float64(res.unchanged))
	telemetry.Records.WithLabelValues(messages.StageExport, site.ID, "deleted").Add(float64(res.deleted))
	return res, e.d.Store.SaveState(ctx, site.ID, st)
}

// snapshot takes the site's metadata. One call tells whether the dictionary
// changed; only then (or on a full run) is the whole snapshot taken again.
func (e *Exporter) snapshot(ctx context.Context, r *siteRun, st messages.SiteState) (*messages.MetadataSnapshot, error) {
	fields, err := retry.Value(ctx, e.retry, func() ([]messages.Field, error) { return r.client.ExportMetadata(ctx) })
	if err != nil {
		return nil, err
	}
	var snap *messages.MetadataSnapshot
	if !r.req.Full && st.SnapshotHash != "" && sitemeta.FieldsHash(fields) == st.FieldsHash {
		snap, _ = e.d.Store.Snapshot(ctx, messages.MetadataKey(r.site.ID, st.SnapshotHash))
	}
	if snap == nil {
		if snap, err = sitemeta.Fetch(ctx, r.client, r.site.ID, e.retry); err != nil {
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
	if dest, err := e.d.Store.Snapshot(ctx, messages.DestinationMetadataKey); err == nil && dest != nil {
		if err := compiled.CheckDestination(dest.Fields); err != nil {
			return nil, retry.Permanent(fmt.Errorf("site %s: the destination cannot take what policy %s writes: %w", r.site.ID, r.site.Policy, err))
		}
	}
	return compiled, nil
}

// listIDs asks for every record ID and, on an incremental run, for those
// changed since the cursor (minus the overlap, in the server's time zone:
// REDCap reads dateRangeBegin as server-local time).
func (e *Exporter) listIDs(ctx context.Context, r *siteRun, st messages.SiteState) (all, todo []string, err error) {
	idField := r.compiled.RecordIDField()
	all, err = retry.Value(ctx, e.retry, func() ([]string, error) { return r.client.ExportRecordIDs(ctx, idField, time.Time{}) })
	if err != nil || r.plan.Full {
		return all, all, err
	}
	since := st.Cursor.Add(-r.site.Overlap.D()).In(r.site.ServerLocation())
	todo, err = retry.Value(ctx, e.retry, func() ([]string, error) { return r.client.ExportRecordIDs(ctx, idField, since) })
	return all, todo, err
}

// exportRecords exports the records to do in batches (up to
// ExportConcurrency calls at once: REDCap's per-call overhead dominates
// small batches) and publishes those whose content changed.
func (e *Exporter) exportRecords(ctx context.Context, r *siteRun, todo []string, prev, next Known, current map[string]struct{}) (exported, same int, err error) {
	site, idField := r.site, r.compiled.RecordIDField()
	fields, events := r.compiled.ExportFields(), r.compiled.ExportEvents()
	results := exportBatches(ctx, todo, site.BatchSize, site.ExportConcurrency, func(ids []string) ([]messages.Row, error) {
		return retry.Value(ctx, e.retry, func() ([]messages.Row, error) {
			return r.client.ExportRecords(ctx, redcap.ExportParams{Records: ids, Fields: fields, Events: events})
		})
	})
	done := 0
	for b := range results {
		if b.err != nil {
			return exported, same, fmt.Errorf("site %s: export batch %d (records %d-%d of %d): %w", site.ID, b.index+1, b.from+1, b.from+b.count, len(todo), b.err)
		}
		for _, rec := range redcap.GroupRecords(b.rows, idField) {
			if _, ok := current[rec.ID]; !ok {
				continue // created after the ID list; the next run takes it
			}
			h := messages.HashRows(rec.Rows)
			if unchanged(prev, rec.ID, h, r.plan.Force) {
				same++
				continue
			}
			m := messages.RecordExported{
				V: messages.V, Site: site.ID, RunID: r.req.RunID, RecordID: rec.ID, Version: r.version(),
				Hash: h, MetadataHash: r.snap.Hash, Rows: rec.Rows, ExportedAt: r.start,
			}
			if err := r.pub.Add(ctx, messages.RecordsRawSubject(site.ID), m.MsgID(), broker.Route{Site: site.ID, Run: r.req.RunID, Record: rec.ID}, m); err != nil {
				return exported, same, err
			}
			next[rec.ID] = shortHash(h)
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

type batchResult struct {
	index, from, count int
	rows               []messages.Row
	err                error
}

// exportBatches fetches the batches with at most conc calls in flight and
// delivers each result on the channel (in completion order). After the
// first error it starts no new call.
func exportBatches(ctx context.Context, ids []string, size, conc int, fetch func([]string) ([]messages.Row, error)) <-chan batchResult {
	out := make(chan batchResult, conc)
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		defer close(out)
		defer cancel()
		sem := make(chan struct{}, max(conc, 1))
		var wg sync.WaitGroup
		for i, n := 0, 0; i < len(ids); i, n = i+size, n+1 {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
			}
			if ctx.Err() != nil {
				break
			}
			wg.Add(1)
			go func(i, n int) {
				defer wg.Done()
				defer func() { <-sem }()
				part := ids[i:min(i+size, len(ids))]
				rows, err := fetch(part)
				if err != nil {
					cancel()
				}
				out <- batchResult{index: n, from: i, count: len(part), rows: rows, err: err}
			}(i, n)
		}
		wg.Wait()
	}()
	return out
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
