package exporter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/pipeline/broker"
	"github.com/redcap-relay/relay/services/internal/pipeline/retry"
	"github.com/redcap-relay/relay/services/internal/pipeline/router"
	"github.com/redcap-relay/relay/services/internal/pipeline/sitemeta"
	"github.com/redcap-relay/relay/services/internal/pipeline/telemetry"
	"github.com/redcap-relay/relay/services/internal/policy"
	"github.com/redcap-relay/relay/services/internal/redcap"
)

// ErrSiteBusy means another run of the site still holds its lease.
var ErrSiteBusy = errors.New("another run of this site is still in progress")

// Export runs one export request to the end. A permanent failure (bad token,
// policy refusal, schema drift) is reported as a failed run and a dead letter
// and the request is acked; a transient one is returned so the request is
// redelivered later, with the same run ID and so the same message IDs.
func (e *Exporter) Export(ctx context.Context, req messages.ExportRequested) error {
	site, ok := e.d.Network.Site(req.Site)
	if !ok {
		return router.Permanent(fmt.Errorf("export request for unknown site %q: it is not in the network file %s", req.Site, e.d.Network.Path()))
	}
	log := e.log.With("site", site.ID, "run", req.RunID)
	release, err := e.lease(ctx, site.ID, req.RunID)
	if errors.Is(err, ErrSiteBusy) {
		log.Warn("run skipped: the previous run of this site is still in progress")
		telemetry.Runs.WithLabelValues(site.ID, "skipped").Inc()
		e.runEvent(ctx, messages.RunEvent{Site: site.ID, RunID: req.RunID, Phase: messages.PhaseFailed, Error: "skipped: " + err.Error()})
		return nil
	}
	if err != nil {
		return err
	}
	defer release()

	e.runEvent(ctx, messages.RunEvent{Site: site.ID, RunID: req.RunID, Phase: messages.PhaseStarted, Full: req.Full})
	start := time.Now()
	res, err := e.run(ctx, site, req)
	ev := messages.RunEvent{Site: site.ID, RunID: req.RunID, Full: res.full, Exported: res.exported, Deleted: res.deleted, Unchanged: res.unchanged, Calls: res.calls}
	if err != nil {
		ev.Phase, ev.Error = messages.PhaseFailed, err.Error()
		e.runEvent(ctx, ev)
		telemetry.Runs.WithLabelValues(site.ID, "failed").Inc()
		if router.IsPermanent(err) {
			log.Error("run failed; fix the cause, then run `relay sync --site "+site.ID+"`", "err", err)
			if dlErr := broker.DeadLetter(ctx, e.d.JS, messages.DeadLetter{
				Stage: messages.StageExport, Site: site.ID, RunID: req.RunID, Error: err.Error(), Attempts: 1,
				Subject: messages.ExportRequestedSubject(site.ID), MsgID: req.MsgID(), Payload: mustJSON(req),
			}); dlErr != nil {
				return dlErr
			}
			return nil
		}
		log.Warn("run failed on a transient error; the request will be redelivered", "err", err)
		return err
	}
	ev.Phase = messages.PhaseExported
	e.runEvent(ctx, ev)
	telemetry.Runs.WithLabelValues(site.ID, "exported").Inc()
	telemetry.LastRun.WithLabelValues(site.ID).SetToCurrentTime()
	log.Info("run exported", "full", res.full, "records", res.exported, "unchanged", res.unchanged,
		"deleted", res.deleted, "api_calls", res.calls, "seconds", time.Since(start).Round(time.Millisecond).Seconds())
	return nil
}

type result struct {
	full                         bool
	exported, deleted, unchanged int
	calls                        int
}

func (e *Exporter) run(ctx context.Context, site *config.Site, req messages.ExportRequested) (res result, err error) {
	token, err := site.Token.Read()
	if err != nil {
		return res, router.Permanent(fmt.Errorf("site %s: token (%s): %w", site.ID, site.Token, err))
	}
	client, err := redcap.New(redcap.Options{
		Site: site.ID, URL: site.URL, Token: token, CAFile: site.CAFile,
		CallsPerMinute: site.CallsPerMinute, Timeout: site.Timeout.D(), Logger: e.log,
	})
	if err != nil {
		return res, router.Permanent(fmt.Errorf("site %s: %w", site.ID, err))
	}
	defer func() { res.calls = int(client.Calls()) }()
	if err := e.checkRawStream(ctx); err != nil {
		return res, err
	}
	st, err := loadState(ctx, e.d.JS, site.ID)
	if err != nil {
		return res, err
	}
	runStart := time.Now().UTC()

	// 1. Metadata: one call tells whether the dictionary changed; only then
	// (or on a full run) is the whole snapshot taken again.
	fields, err := retry.Value(ctx, e.retry, func() ([]messages.Field, error) { return client.ExportMetadata(ctx) })
	if err != nil {
		return res, err
	}
	var snap *messages.MetadataSnapshot
	if !req.Full && st.SnapshotHash != "" && sitemeta.FieldsHash(fields) == st.FieldsHash {
		snap, _ = e.loadSnapshot(ctx, site.ID, st.SnapshotHash)
	}
	if snap == nil {
		snap, err = sitemeta.Fetch(ctx, client, site.ID, e.retry)
		if err != nil {
			return res, err
		}
	}
	snap.RunID = req.RunID
	snap.TakenAt = runStart
	if err := e.publishSnapshot(ctx, snap); err != nil {
		return res, err
	}

	// 2. The transfer policy, compiled against this very dictionary.
	compiled, err := e.compile(ctx, site, snap)
	if err != nil {
		return res, err
	}

	// 3. Full or changed-since.
	metaChanged := snap.Hash != st.SnapshotHash || compiled.Version() != st.PolicyVersion
	res.full = req.Full || st.Cursor.IsZero() || metaChanged || runStart.Sub(st.LastFull) > site.FullEvery.D()
	// Republish everything when asked to, or when the dictionary or policy
	// changed (the cleaned output may differ for unchanged site data).
	force := req.Full || metaChanged

	idField := compiled.RecordIDField()
	all, err := retry.Value(ctx, e.retry, func() ([]string, error) { return client.ExportRecordIDs(ctx, idField, time.Time{}) })
	if err != nil {
		return res, err
	}
	todo := all
	if !res.full {
		// REDCap reads dateRangeBegin in the server's local time.
		since := st.Cursor.Add(-site.Overlap.D()).In(site.ServerLocation())
		todo, err = retry.Value(ctx, e.retry, func() ([]string, error) { return client.ExportRecordIDs(ctx, idField, since) })
		if err != nil {
			return res, err
		}
	}
	prev, err := loadKnown(ctx, e.d.JS, site.ID)
	if err != nil {
		return res, err
	}
	next := make(known, len(all))
	current := make(map[string]struct{}, len(all))
	for _, id := range all {
		current[id] = struct{}{}
		if h, ok := prev[id]; ok {
			next[id] = h
		}
	}

	// 4. Records, batch by batch: up to ExportConcurrency calls at once
	// (REDCap's per-call overhead dominates small batches), processed here
	// one batch at a time as they arrive.
	version := req.RequestedAt.UnixMilli()
	batch := broker.NewBatch(e.d.JS)
	fieldsWanted, eventsWanted := compiled.ExportFields(), compiled.ExportEvents()
	results := exportBatches(ctx, todo, site.BatchSize, site.ExportConcurrency, func(ids []string) ([]messages.Row, error) {
		return retry.Value(ctx, e.retry, func() ([]messages.Row, error) {
			return client.ExportRecords(ctx, redcap.ExportParams{Records: ids, Fields: fieldsWanted, Events: eventsWanted})
		})
	})
	done := 0
	for r := range results {
		if r.err != nil {
			return res, fmt.Errorf("site %s: export batch %d (records %d-%d of %d): %w", site.ID, r.index+1, r.from+1, r.from+r.count, len(todo), r.err)
		}
		for _, rec := range redcap.GroupRecords(r.rows, idField) {
			if _, ok := current[rec.ID]; !ok {
				continue // created after the ID list; the next run takes it
			}
			h := messages.HashRows(rec.Rows)
			if !force && prev[rec.ID] == shortHash(h) {
				res.unchanged++
				continue
			}
			m := messages.RecordExported{
				V: messages.V, Site: site.ID, RunID: req.RunID, RecordID: rec.ID, Version: version,
				Hash: h, MetadataHash: snap.Hash, Rows: rec.Rows, ExportedAt: runStart,
			}
			if err := batch.Add(ctx, messages.RecordsRawSubject(site.ID), m.MsgID(), broker.Route{Site: site.ID, Run: req.RunID, Record: rec.ID}, m); err != nil {
				return res, err
			}
			next[rec.ID] = shortHash(h)
			res.exported++
		}
		done += r.count
		if (r.index+1)%50 == 0 {
			e.log.Info("export progress", "site", site.ID, "run", req.RunID, "records_done", done, "of", len(todo))
		}
		// Backpressure: a site must not flood RECORDS_RAW faster than the
		// transformers drain it (memory, disk, and the raw data's exposure).
		if err := e.waitForTransformers(ctx); err != nil {
			return res, err
		}
	}

	// 5. Deletions: known before, gone now.
	for id := range prev {
		if _, ok := current[id]; ok {
			continue
		}
		if site.PropagateDeletions {
			m := messages.RecordExported{V: messages.V, Site: site.ID, RunID: req.RunID, RecordID: id, Version: version,
				Hash: "deleted", MetadataHash: snap.Hash, Deleted: true, ExportedAt: runStart}
			if err := batch.Add(ctx, messages.RecordsRawSubject(site.ID), m.MsgID(), broker.Route{Site: site.ID, Run: req.RunID, Record: id}, m); err != nil {
				return res, err
			}
		}
		res.deleted++
	}

	// 6. Only when everything is stored does the site's state move on.
	if err := batch.Wait(ctx); err != nil {
		return res, err
	}
	if err := saveKnown(ctx, e.d.JS, site.ID, next); err != nil {
		return res, err
	}
	st.Cursor, st.FieldsHash, st.SnapshotHash = runStart, sitemeta.FieldsHash(snap.Fields), snap.Hash
	st.PolicyVersion, st.LastRun, st.Records = compiled.Version(), req.RunID, len(all)
	if res.full {
		st.LastFull = runStart
	}
	telemetry.Records.WithLabelValues(messages.StageExport, site.ID, "exported").Add(float64(res.exported))
	telemetry.Records.WithLabelValues(messages.StageExport, site.ID, "unchanged").Add(float64(res.unchanged))
	telemetry.Records.WithLabelValues(messages.StageExport, site.ID, "deleted").Add(float64(res.deleted))
	return res, saveState(ctx, e.d.JS, site.ID, st)
}

func (e *Exporter) compile(ctx context.Context, site *config.Site, snap *messages.MetadataSnapshot) (*policy.Compiled, error) {
	pol, err := policy.Load(site.Policy)
	if err != nil {
		return nil, router.Permanent(fmt.Errorf("site %s: %w", site.ID, err))
	}
	var key []byte
	if e.d.Network.PseudonymKey.IsSet() {
		k, err := e.d.Network.PseudonymKey.Read()
		if err != nil {
			return nil, router.Permanent(fmt.Errorf("pseudonym_key: %w", err))
		}
		key = []byte(k)
	}
	compiled, err := policy.Compile(pol, snap, policy.Options{Site: site.ID, Namespace: site.Namespace, DAG: site.DAG, Key: key})
	if err != nil {
		return nil, router.Permanent(err) // names the site, the policy file and every field
	}
	if dest, err := sitemeta.Load(ctx, e.d.JS, messages.DestinationMetadataKey); err == nil && dest != nil {
		if err := compiled.CheckDestination(dest.Fields); err != nil {
			return nil, router.Permanent(fmt.Errorf("site %s: the destination cannot take what policy %s writes: %w", site.ID, site.Policy, err))
		}
	}
	return compiled, nil
}

// Lease: a site is exported by one run at a time, even with several
// exporter replicas. A redelivered request of the same run takes it over.
// The lease is renewed while the run goes on.
func (e *Exporter) lease(ctx context.Context, site, runID string) (release func(), err error) {
	kv, err := e.d.JS.KeyValue(ctx, messages.BucketLeases)
	if err != nil {
		return nil, err
	}
	if _, err := kv.Create(ctx, site, []byte(runID)); err != nil {
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, err
		}
		cur, gerr := kv.Get(ctx, site)
		if gerr != nil || string(cur.Value()) != runID {
			return nil, ErrSiteBusy
		}
	}
	// The lease expires export_ack_wait after its last write (a crashed
	// exporter's lease must not block the site for long), so renew it as
	// often as the request's heartbeat.
	stopRenewing := broker.Heartbeat(e.d.Timing.ExportAckWait/4, func() {
		rctx, cancel := context.WithTimeout(ctx, e.d.Timing.ExportAckWait/4)
		_, _ = kv.Put(rctx, site, []byte(runID))
		cancel()
	})
	return func() {
		stopRenewing() // no renewal may land after the delete
		dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = kv.Delete(dctx, site)
	}, nil
}

func (e *Exporter) publishSnapshot(ctx context.Context, snap *messages.MetadataSnapshot) error {
	kv, err := e.d.JS.KeyValue(ctx, messages.BucketMetadata)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(snap)
	if _, err := kv.Put(ctx, messages.MetadataKey(snap.Site, snap.Hash), b); err != nil {
		return fmt.Errorf("site %s: store metadata snapshot: %w", snap.Site, err)
	}
	return broker.Publish(ctx, e.d.JS, messages.MetadataSubject(snap.Site), snap.MsgID(), broker.Route{Site: snap.Site, Run: snap.RunID}, snap)
}

func (e *Exporter) loadSnapshot(ctx context.Context, site, hash string) (*messages.MetadataSnapshot, error) {
	return sitemeta.Load(ctx, e.d.JS, messages.MetadataKey(site, hash))
}

func (e *Exporter) runEvent(ctx context.Context, ev messages.RunEvent) {
	ev.V, ev.At = messages.V, time.Now().UTC()
	if err := broker.Publish(ctx, e.d.JS, messages.RunSubject(ev.Site), ev.MsgID(), broker.Route{Site: ev.Site, Run: ev.RunID}, ev); err != nil {
		e.log.Warn("run event not published", "site", ev.Site, "run", ev.RunID, "phase", ev.Phase, "err", err)
	}
}

// shortHash is what the known-record set keeps per record: 16 hex digits
// (64 bits) tell a changed record with ample certainty in a quarter of the memory.
func shortHash(h string) string {
	if len(h) > 16 {
		return h[:16]
	}
	return h
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
	_, err := broker.Backlog(ctx, e.d.JS, messages.StreamRecordsRaw)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		return fmt.Errorf("stream %s is not on the NATS server %s", messages.StreamRecordsRaw, broker.MissingStreamRemedy)
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		return fmt.Errorf("the transformers' consumer %s on %s is missing: run `relay provision`", broker.ConsumerTransformer, messages.StreamRecordsRaw)
	}
	return nil // readable, or not readable to this user: backpressure copes
}

// waitForTransformers pauses the export while the transformers' backlog is
// above the limit.
func (e *Exporter) waitForTransformers(ctx context.Context) error {
	for time.Now().UnixNano() >= e.backpressureOffUntil.Load() {
		n, err := broker.Backlog(ctx, e.d.JS, messages.StreamRecordsRaw)
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

func mustJSON(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}
