package exporter

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/broker"
	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/policy"
	"github.com/redcap-relay/relay/services/internal/redcap"
	"github.com/redcap-relay/relay/services/internal/retry"
	"github.com/redcap-relay/relay/services/internal/router"
	"github.com/redcap-relay/relay/services/internal/sitemeta"
	"github.com/redcap-relay/relay/services/internal/telemetry"
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

	// 4. Records, batch by batch.
	version := req.RequestedAt.UnixMilli()
	batch := broker.NewBatch(e.d.JS)
	fieldsWanted, eventsWanted := compiled.ExportFields(), compiled.ExportEvents()
	for i := 0; i < len(todo); i += site.BatchSize {
		ids := todo[i:min(i+site.BatchSize, len(todo))]
		rows, err := retry.Value(ctx, e.retry, func() ([]messages.Row, error) {
			return client.ExportRecords(ctx, redcap.ExportParams{Records: ids, Fields: fieldsWanted, Events: eventsWanted})
		})
		if err != nil {
			return res, fmt.Errorf("site %s: export batch %d (records %d-%d of %d): %w", site.ID, i/site.BatchSize+1, i+1, i+len(ids), len(todo), err)
		}
		for _, rec := range groupByRecord(rows, idField) {
			if _, ok := current[rec.id]; !ok {
				continue // created after the ID list; the next run takes it
			}
			h := messages.HashRows(rec.rows)
			if !force && prev[rec.id] == h {
				res.unchanged++
				continue
			}
			m := messages.RecordExported{
				V: messages.V, Site: site.ID, RunID: req.RunID, RecordID: rec.id, Version: version,
				Hash: h, MetadataHash: snap.Hash, Rows: rec.rows, ExportedAt: runStart,
			}
			if err := batch.Add(messages.RecordsRawSubject(site.ID), m.MsgID(), broker.Route{Site: site.ID, Run: req.RunID, Record: rec.id}, m); err != nil {
				return res, err
			}
			next[rec.id] = h
			res.exported++
		}
		if n := i/site.BatchSize + 1; n%50 == 0 {
			e.log.Info("export progress", "site", site.ID, "run", req.RunID, "records_done", i+len(ids), "of", len(todo))
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
			if err := batch.Add(messages.RecordsRawSubject(site.ID), m.MsgID(), broker.Route{Site: site.ID, Run: req.RunID, Record: id}, m); err != nil {
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
	if dest, err := e.loadSnapshot(ctx, "destination", "latest"); err == nil && dest != nil {
		if err := compiled.CheckDestination(dest.Fields); err != nil {
			return nil, router.Permanent(fmt.Errorf("site %s: the destination cannot take what policy %s writes: %w", site.ID, site.Policy, err))
		}
	}
	return compiled, nil
}

// Lease: a site is exported by one run at a time, even with several
// exporter replicas. A redelivered request of the same run takes it over.
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
	return func() {
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

type record struct {
	id   string
	rows []messages.Row
}

// groupByRecord keeps REDCap's order; rows of one record are adjacent in an
// export but we do not rely on it.
func groupByRecord(rows []messages.Row, idField string) []record {
	idx := map[string]int{}
	var out []record
	for _, r := range rows {
		id := r[idField]
		i, ok := idx[id]
		if !ok {
			i = len(out)
			idx[id] = i
			out = append(out, record{id: id})
		}
		out[i].rows = append(out[i].rows, r)
	}
	return out
}

func mustJSON(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}
