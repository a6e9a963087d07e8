package importer

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/pipeline/broker"
	"github.com/redcap-relay/relay/services/internal/pipeline/telemetry"
	"github.com/redcap-relay/relay/services/internal/redcap"
)

// item is one fetched message with its decoded record.
type item struct {
	msg jetstream.Msg
	rec messages.RecordCleaned
}

// process handles one fetched batch to the end: every message is acked
// (imported, stale, or dead-lettered) or nacked for a later try.
func (im *Importer) process(ctx context.Context, msgs []jetstream.Msg) {
	// Keep the messages ours while we wait on a slow or down destination.
	stop := im.keepInProgress(msgs)
	defer stop()

	latest := map[string]*item{}
	var work []*item
	for _, m := range msgs {
		var rec messages.RecordCleaned
		if err := json.Unmarshal(m.Data(), &rec); err != nil || rec.V != messages.V || rec.DestRecordID == "" {
			im.deadLetter(ctx, m, rec, fmt.Sprintf("malformed cleaned record (%d bytes): not the expected JSON contract v%d", len(m.Data()), messages.V), nil)
			continue
		}
		it := &item{msg: m, rec: rec}
		// Within one batch only the newest version of a record is imported.
		if prev, ok := latest[rec.DestRecordID]; ok {
			if prev.rec.Version > rec.Version {
				im.ackStale(it)
				continue
			}
			im.ackStale(prev)
		}
		latest[rec.DestRecordID] = it
	}
	for _, it := range latest {
		id := it.rec.DestRecordID
		if it.rec.Version < im.vers.get(id) {
			im.ackStale(it)
			continue
		}
		if !im.claim(id) {
			// Another worker is importing this record: let it finish first.
			_ = it.msg.NakWithDelay(time.Second)
			continue
		}
		work = append(work, it)
	}
	defer func() {
		for _, it := range work {
			im.unclaim(it.rec.DestRecordID)
		}
	}()
	var upserts, deletes []*item
	for _, it := range work {
		if it.rec.Deleted {
			deletes = append(deletes, it)
		} else {
			upserts = append(upserts, it)
		}
	}
	if len(upserts) > 0 {
		im.importItems(ctx, upserts)
	}
	if len(deletes) > 0 {
		im.deleteItems(ctx, deletes)
	}
}

// importItems imports records, splitting the batch around records REDCap
// rejects. It returns only when every item is acked, dead-lettered, or ctx
// ends (then they are redelivered).
func (im *Importer) importItems(ctx context.Context, items []*item) {
	for len(items) > 0 && ctx.Err() == nil {
		var rows []messages.Row
		for _, it := range items {
			rows = append(rows, it.rec.Rows...)
		}
		start := time.Now()
		res, err := im.client.ImportRecords(ctx, rows, redcap.ImportParams{Overwrite: im.dest.OverwriteBlanks})
		telemetry.REDCapCalls.WithLabelValues("destination", "import records").Observe(time.Since(start).Seconds())
		if err == nil {
			im.markUp()
			items = im.confirm(ctx, items, res)
			if len(items) == 0 {
				return
			}
			continue // the ones REDCap did not confirm, once more
		}
		if !redcap.IsPermanent(err) || !isValidation(err) {
			// An outage, a ban, a revoked destination token: wait for the
			// destination, keep the records.
			im.waitForDestination(ctx, err)
			continue
		}
		bad := badRecords(err, items)
		if len(bad) == 0 {
			if len(items) == 1 {
				im.deadLetterItem(ctx, items[0], err)
				return
			}
			// REDCap named no record we sent: halve until it does.
			half := len(items) / 2
			im.importItems(ctx, items[:half])
			items = items[half:]
			continue
		}
		var rest []*item
		for _, it := range items {
			if bad[it.rec.DestRecordID] {
				im.deadLetterItem(ctx, it, err)
			} else {
				rest = append(rest, it)
			}
		}
		items = rest
	}
}

// confirm acks the items REDCap reported back and returns the others.
func (im *Importer) confirm(ctx context.Context, items []*item, res redcap.ImportResult) []*item {
	got := make(map[string]bool, len(res.IDs))
	for _, id := range res.IDs {
		got[id] = true
	}
	var done, missing []*item
	for _, it := range items {
		if got[it.rec.DestRecordID] {
			done = append(done, it)
		} else {
			missing = append(missing, it)
		}
	}
	if len(missing) > 0 {
		im.log.Warn("destination did not confirm every record sent; importing them again", "confirmed", len(done), "missing", len(missing))
	}
	if len(done) > 0 {
		im.finish(ctx, done, false)
	}
	if len(missing) == len(items) {
		// Nothing confirmed at all: something is wrong at the destination
		// (REDCap answered with other IDs). Do not loop hot.
		for _, it := range missing {
			im.deadLetterItem(ctx, it, fmt.Errorf("destination did not report record %s as imported (it answered %d other IDs)", it.rec.DestRecordID, len(res.IDs)))
		}
		return nil
	}
	return missing
}

// deleteItems deletes records the site deleted (propagation is the site's
// setting; the exporter only sends deletions when it is on).
func (im *Importer) deleteItems(ctx context.Context, items []*item) {
	for _, it := range items {
		for ctx.Err() == nil {
			_, err := im.client.DeleteRecords(ctx, []string{it.rec.DestRecordID})
			if err == nil || isMissingRecord(err) {
				im.markUp()
				im.finish(ctx, []*item{it}, true)
				break
			}
			if redcap.IsPermanent(err) && isValidation(err) {
				im.deadLetterItem(ctx, it, err)
				break
			}
			im.waitForDestination(ctx, err)
		}
	}
}

// finish records versions, writes the audit (one record per site and run,
// so operators can count a run's imports), then acks.
func (im *Importer) finish(ctx context.Context, items []*item, deleted bool) {
	upd := make(map[string]int64, len(items))
	type key struct{ site, run string }
	audits := map[key]*messages.ImportDone{}
	fields := map[key]map[string]bool{}
	var order []key
	for _, it := range items {
		r := it.rec
		upd[r.DestRecordID] = r.Version
		k := key{r.Site, r.RunID}
		a := audits[k]
		if a == nil {
			a = &messages.ImportDone{V: messages.V, Site: r.Site, PolicyVersion: r.PolicyVersion, Runs: []string{r.RunID}, At: time.Now().UTC()}
			audits[k], fields[k] = a, map[string]bool{}
			order = append(order, k)
		}
		if deleted {
			a.Deleted = append(a.Deleted, r.DestRecordID)
		} else {
			a.Records = append(a.Records, r.DestRecordID)
		}
		for _, f := range messages.FieldNames(r.Rows) {
			fields[k][f] = true
		}
	}
	if err := im.vers.set(ctx, upd); err != nil {
		// Redelivered and imported again, which is harmless.
		im.log.Warn("versions not stored; records will be imported again", "err", err)
		nakAll(items)
		return
	}
	for _, k := range order {
		a := audits[k]
		for f := range fields[k] {
			a.Fields = append(a.Fields, f)
		}
		sort.Strings(a.Fields)
		// The same records of the same run give the same ID: a re-import
		// after a lost ack is not audited twice (within the dedupe window).
		id := fmt.Sprintf("import.%s.%s.%s", k.site, k.run, messages.HashJSON([2][]string{a.Records, a.Deleted})[:16])
		if err := broker.Publish(ctx, im.d.JS, messages.ImportDoneSubject(k.site), id, broker.Route{Site: k.site, Run: k.run}, a); err != nil {
			im.log.Warn("audit record not published; records will be imported again", "site", k.site, "err", err)
			nakAll(items)
			return
		}
		outcome := "imported"
		if deleted {
			outcome = "deleted"
		}
		telemetry.Records.WithLabelValues(messages.StageImport, k.site, outcome).Add(float64(len(a.Records) + len(a.Deleted)))
	}
	for _, it := range items {
		_ = it.msg.Ack()
	}
}

// nakAll hands items back for an early redelivery (NATS was unreachable
// for a moment); without it they would wait out the ack wait.
func nakAll(items []*item) {
	for _, it := range items {
		_ = it.msg.NakWithDelay(time.Second)
	}
}

func (im *Importer) ackStale(it *item) {
	telemetry.Records.WithLabelValues(messages.StageImport, it.rec.Site, "skipped_stale").Inc()
	_ = it.msg.Ack()
}

func (im *Importer) deadLetterItem(ctx context.Context, it *item, cause error) {
	var details []messages.FieldProblem
	for _, p := range redcap.Problems(cause) {
		if p.Record == it.rec.DestRecordID || p.Record == "" {
			details = append(details, messages.FieldProblem{Record: p.Record, Field: p.Field, Message: p.Message})
		}
	}
	reason := cause.Error()
	if len(details) > 0 {
		reason = fmt.Sprintf("destination rejected record %s: %s (%s)", it.rec.DestRecordID, details[0].Message, details[0].Field)
	}
	im.deadLetter(ctx, it.msg, it.rec, reason, details)
}

func (im *Importer) deadLetter(ctx context.Context, m jetstream.Msg, rec messages.RecordCleaned, reason string, details []messages.FieldProblem) {
	site := rec.Site
	if site == "" {
		site = messages.SiteFromSubject(m.Subject())
	}
	attempts := 1
	if md, err := m.Metadata(); err == nil {
		attempts = int(md.NumDelivered)
	}
	dl := messages.DeadLetter{
		Stage: messages.StageImport, Site: site, RunID: rec.RunID, RecordID: rec.DestRecordID,
		Error: reason, Details: details, Attempts: attempts, Subject: m.Subject(),
		MsgID: m.Headers().Get(jetstream.MsgIDHeader),
	}
	if json.Valid(m.Data()) {
		dl.Payload = m.Data()
	}
	for ctx.Err() == nil {
		if err := broker.DeadLetter(ctx, im.d.JS, dl); err != nil {
			im.log.Warn("dead letter not stored yet; retrying", "site", site, "err", err)
			time.Sleep(time.Second)
			continue
		}
		telemetry.DeadLetters.WithLabelValues(messages.StageImport, site).Inc()
		im.log.Warn("record dead-lettered", "site", site, "record", rec.DestRecordID, "reason", reason)
		_ = m.Ack()
		return
	}
}

// waitForDestination probes with backoff until the destination answers.
// Every worker that hits the outage waits here; none takes new messages.
func (im *Importer) waitForDestination(ctx context.Context, cause error) {
	im.mu.Lock()
	wasUp := im.up
	im.up = false
	im.mu.Unlock()
	telemetry.DestinationUp.Set(0)
	if wasUp {
		im.log.Error("destination unavailable; holding records in the stream until it answers", "err", cause)
	}
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = 500 * time.Millisecond
	b.MaxInterval = im.d.MaxProbeInterval
	b.MaxElapsedTime = 0
	_ = backoff.Retry(func() error {
		if ctx.Err() != nil {
			return backoff.Permanent(ctx.Err())
		}
		_, err := im.client.ExportVersion(ctx)
		return err
	}, backoff.WithContext(b, ctx))
}

func (im *Importer) markUp() {
	im.mu.Lock()
	wasDown := !im.up
	im.up = true
	im.mu.Unlock()
	if wasDown {
		telemetry.DestinationUp.Set(1)
		im.log.Info("destination answers again; draining the backlog")
	}
}

func (im *Importer) claim(id string) bool {
	im.mu.Lock()
	defer im.mu.Unlock()
	if im.inflight[id] {
		return false
	}
	im.inflight[id] = true
	return true
}

func (im *Importer) unclaim(id string) {
	im.mu.Lock()
	delete(im.inflight, id)
	im.mu.Unlock()
}

// keepInProgress tells JetStream the batch is still being worked on, so a
// long outage does not make the server redeliver it to another worker.
func (im *Importer) keepInProgress(msgs []jetstream.Msg) (stop func()) {
	return broker.Heartbeat(im.d.Timing.ImportAckWait/3, func() {
		for _, m := range msgs {
			_ = m.InProgress()
		}
	})
}

// isValidation is a 400 about the data, as opposed to a token or rights
// problem (403) that an operator must fix while the records wait.
func isValidation(err error) bool {
	var e *redcap.Error
	return errors.As(err, &e) && e.Status == 400
}

func isMissingRecord(err error) bool {
	var e *redcap.Error
	return errors.As(err, &e) && e.Status == 400 && containsFold(e.Message, "do not exist")
}

// badRecords maps REDCap's problem lines to the items they name.
func badRecords(err error, items []*item) map[string]bool {
	sent := map[string]bool{}
	for _, it := range items {
		sent[it.rec.DestRecordID] = true
	}
	bad := map[string]bool{}
	for _, p := range redcap.Problems(err) {
		if sent[p.Record] {
			bad[p.Record] = true
		}
	}
	return bad
}
