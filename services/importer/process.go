package importer

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/pipeline/router"
	"github.com/redcap-relay/relay/services/internal/pipeline/telemetry"
	"github.com/redcap-relay/relay/services/internal/redcap"
)

// process handles one fetched batch to the end: every message is acked
// (imported, stale, or dead-lettered) or handed back for a later try.
func (im *Importer) process(ctx context.Context, msgs []router.Msg) {
	p := planBatch(msgs, im.vers.get, im.claim)
	for _, m := range p.Malformed {
		m.msg.DeadLetter(ctx, messages.DeadLetter{Site: m.rec.Site, RunID: m.rec.RunID, Error: m.reason})
	}
	for _, it := range p.Stale {
		im.ackStale(it)
	}
	for _, it := range p.Busy {
		it.msg.Retry(time.Second)
	}
	defer func() {
		for _, it := range append(p.Upserts, p.Deletes...) {
			im.unclaim(it.rec.DestRecordID)
		}
	}()
	for _, it := range p.Upserts {
		if it.rec.RenamedFrom != "" && it.rec.RenamedFrom != it.rec.DestRecordID {
			im.renameAtDestination(ctx, it)
		}
	}
	if len(p.Upserts) > 0 {
		im.importItems(ctx, p.Upserts)
	}
	if len(p.Deletes) > 0 {
		im.deleteItems(ctx, p.Deletes)
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
		res, err := im.d.Destination.ImportRecords(ctx, rows, redcap.ImportParams{Overwrite: im.d.Settings.OverwriteBlanks})
		if err == nil {
			im.markUp()
			im.sizer.observe(len(items), time.Since(start))
			items = im.confirm(ctx, items, res)
			continue // the ones REDCap did not confirm, once more
		}
		if redcap.IsOverload(err) && len(items) > 1 {
			// REDCap ran out of memory or time on this batch: smaller
			// batches from now on, and this one in halves after a pause.
			im.sizer.overload(len(items))
			im.log.Warn("destination overloaded by an import batch; halving it", "records", len(items), "next_batch", im.sizer.Size(), "err", err)
			sleep(ctx, im.overloadPause)
			half := len(items) / 2
			im.importItems(ctx, items[:half])
			items = items[half:]
			continue
		}
		if !isValidation(err) {
			// An outage, a ban, a revoked destination token: wait for the
			// destination, keep the records.
			im.waitForDestination(ctx, err)
			continue
		}
		bad, rest := splitRejected(err, items)
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
		for _, it := range bad {
			im.deadLetterItem(ctx, it, err)
		}
		items = rest
	}
}

// splitRejected separates the items REDCap's problem lines name from the rest.
func splitRejected(err error, items []*item) (bad, rest []*item) {
	named := map[string]bool{}
	for _, p := range redcap.Problems(err) {
		named[p.Record] = true
	}
	for _, it := range items {
		if named[it.rec.DestRecordID] {
			bad = append(bad, it)
		} else {
			rest = append(rest, it)
		}
	}
	return bad, rest
}

// confirm acks the items REDCap reported back and returns the others.
func (im *Importer) confirm(ctx context.Context, items []*item, res redcap.ImportResult) []*item {
	done, missing := splitConfirmed(items, res.IDs)
	if len(missing) > 0 {
		im.log.Warn("destination did not confirm every record sent; importing them again", "confirmed", len(done), "missing", len(missing))
	}
	if len(done) > 0 && im.transferFiles(ctx, done) && im.replaceOldRecords(ctx, done) {
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

func splitConfirmed(items []*item, ids []string) (done, missing []*item) {
	got := make(map[string]bool, len(ids))
	for _, id := range ids {
		got[id] = true
	}
	for _, it := range items {
		if got[it.rec.DestRecordID] {
			done = append(done, it)
		} else {
			missing = append(missing, it)
		}
	}
	return done, missing
}

// deleteItems deletes records the site deleted (propagation is the site's
// setting; the exporter sends a deletion only once it is confirmed). Each
// record's destination rows are kept first, for streams.deleted_retention,
// so an operator can restore it.
func (im *Importer) deleteItems(ctx context.Context, items []*item) {
	for _, it := range items {
		if !im.keepBeforeDeleting(ctx, it) {
			continue
		}
		for ctx.Err() == nil {
			_, err := im.d.Destination.DeleteRecords(ctx, []string{it.rec.DestRecordID})
			if err == nil || isMissingRecord(err) {
				im.markUp()
				im.finish(ctx, []*item{it}, true)
				break
			}
			if isValidation(err) {
				im.deadLetterItem(ctx, it, err)
				break
			}
			im.waitForDestination(ctx, err)
		}
	}
}

// keepBeforeDeleting exports the record's rows from the destination and
// keeps them. It reports false when the deletion must wait (the delivery is
// then handed back).
func (im *Importer) keepBeforeDeleting(ctx context.Context, it *item) bool {
	p := redcap.ExportParams{Records: []string{it.rec.DestRecordID}, ExportDataAccessGroups: it.rec.DAG != ""}
	for ctx.Err() == nil {
		rows, err := im.d.Destination.ExportRecords(ctx, p)
		if err != nil && p.ExportDataAccessGroups && redcap.IsPermanent(err) {
			// A token without DAG rights: keep the rows without their DAG.
			p.ExportDataAccessGroups = false
			continue
		}
		if err != nil {
			im.waitForDestination(ctx, err)
			continue
		}
		im.markUp()
		if len(rows) == 0 {
			return true // not at the destination: nothing to keep
		}
		rec := messages.DeletedRecord{V: messages.V, Site: it.rec.Site, DestRecordID: it.rec.DestRecordID, Run: it.rec.RunID, DeletedAt: time.Now().UTC(), Rows: rows}
		if err := im.d.Store.KeepDeleted(ctx, rec); err != nil {
			im.log.Warn("deleted record's rows not kept yet; the deletion waits", "site", it.rec.Site, "record", it.rec.DestRecordID, "err", err)
			it.msg.Retry(5 * time.Second)
			return false
		}
		return true
	}
	return false
}

// finish records versions, writes the audit (one record per site and run,
// so operators can count a run's imports), then acks.
func (im *Importer) finish(ctx context.Context, items []*item, deleted bool) {
	upd := make(map[string]int64, len(items))
	for _, it := range items {
		upd[it.rec.DestRecordID] = it.rec.Version
	}
	if err := im.vers.set(ctx, upd); err != nil {
		// Redelivered and imported again, which is harmless.
		im.log.Warn("versions not stored; records will be imported again", "err", err)
		retryAll(items)
		return
	}
	for _, a := range audits(items, deleted, time.Now().UTC()) {
		// The same records of the same run give the same ID: a re-import
		// after a lost ack is not audited twice (within the dedupe window).
		id := fmt.Sprintf("import.%s.%s.%s", a.Site, a.Runs[0], messages.HashJSON([2][]string{a.Records, a.Deleted})[:16])
		if err := im.d.Store.Audit(ctx, id, a); err != nil {
			im.log.Warn("audit record not published; records will be imported again", "site", a.Site, "err", err)
			retryAll(items)
			return
		}
		outcome := "imported"
		if deleted {
			outcome = "deleted"
		}
		telemetry.Records.WithLabelValues(messages.StageImport, a.Site, outcome).Add(float64(len(a.Records) + len(a.Deleted)))
	}
	for _, it := range items {
		it.msg.Ack()
	}
}

// audits groups imported items into one audit record per site and run.
func audits(items []*item, deleted bool, at time.Time) []messages.ImportDone {
	type key struct{ site, run string }
	byKey := map[key]*messages.ImportDone{}
	fields := map[key]map[string]bool{}
	var order []key
	for _, it := range items {
		r := it.rec
		k := key{r.Site, r.RunID}
		a := byKey[k]
		if a == nil {
			a = &messages.ImportDone{V: messages.V, Site: r.Site, PolicyVersion: r.PolicyVersion, Runs: []string{r.RunID}, At: at}
			byKey[k], fields[k] = a, map[string]bool{}
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
		a.Files = append(a.Files, it.files...)
		if it.renamed || it.replaceOld {
			a.Renamed = append(a.Renamed, r.RenamedFrom+" -> "+r.DestRecordID)
		}
	}
	out := make([]messages.ImportDone, 0, len(order))
	for _, k := range order {
		a := byKey[k]
		for f := range fields[k] {
			a.Fields = append(a.Fields, f)
		}
		sort.Strings(a.Fields)
		out = append(out, *a)
	}
	return out
}

// retryAll hands items back for an early redelivery (NATS was unreachable
// for a moment); without it they would wait out the ack wait.
func retryAll(items []*item) {
	for _, it := range items {
		it.msg.Retry(time.Second)
	}
}

func (im *Importer) ackStale(it *item) {
	telemetry.Records.WithLabelValues(messages.StageImport, it.rec.Site, "skipped_stale").Inc()
	it.msg.Ack()
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
	it.msg.DeadLetter(ctx, messages.DeadLetter{Site: it.rec.Site, RunID: it.rec.RunID, RecordID: it.rec.DestRecordID, Error: reason, Details: details})
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
		_, err := im.d.Destination.ExportVersion(ctx)
		return err
	}, backoff.WithContext(b, ctx))
}

// markUp notes a call to the destination that succeeded.
func (im *Importer) markUp() {
	im.mu.Lock()
	wasDown, first := !im.up, !im.confirmed
	im.up, im.confirmed = true, true
	im.mu.Unlock()
	if wasDown || first {
		telemetry.DestinationUp.Set(1)
	}
	if wasDown {
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

// isValidation is a 400 about the data, as opposed to a token or rights
// problem (403) that an operator must fix while the records wait.
func isValidation(err error) bool {
	var e *redcap.Error
	return redcap.IsPermanent(err) && errors.As(err, &e) && e.Status == 400
}

func isMissingRecord(err error) bool {
	var e *redcap.Error
	return errors.As(err, &e) && e.Status == 400 && strings.Contains(strings.ToLower(e.Message), "do not exist")
}

// renameAtDestination renames the destination's record as the site renamed
// its own, so the record keeps its history. Without the destination
// token's Rename Record right (or when the new ID is taken) the old record
// is deleted once the new one is imported instead.
func (im *Importer) renameAtDestination(ctx context.Context, it *item) {
	for ctx.Err() == nil {
		err := im.d.Destination.RenameRecord(ctx, it.rec.RenamedFrom, it.rec.DestRecordID, 0)
		var e *redcap.Error
		switch {
		case err == nil:
			im.markUp()
			it.renamed = true
			return
		case errors.As(err, &e) && e.Status == 403:
			im.log.Warn("the destination token may not rename records: the renamed record is created anew and the old one deleted (its rows are kept for restore)",
				"site", it.rec.Site, "from", it.rec.RenamedFrom, "to", it.rec.DestRecordID)
			it.replaceOld = true
			return
		case isValidation(err) && strings.Contains(strings.ToLower(e.Message), "exist"):
			// The old one is not there (never imported), or the new ID is
			// taken already: import the new one, and delete the old one
			// if it is there.
			it.replaceOld = true
			return
		case isValidation(err):
			it.replaceOld = true
			return
		}
		im.waitForDestination(ctx, err)
	}
}

// replaceOldRecords deletes the old records of renames the destination
// could not carry out; false when ctx ended first.
func (im *Importer) replaceOldRecords(ctx context.Context, items []*item) bool {
	for _, it := range items {
		if !it.replaceOld {
			continue
		}
		old := &item{msg: it.msg, rec: messages.RecordCleaned{Site: it.rec.Site, RunID: it.rec.RunID, DestRecordID: it.rec.RenamedFrom, DAG: it.rec.DAG}}
		if !im.keepBeforeDeleting(ctx, old) {
			return false
		}
		for ctx.Err() == nil {
			_, err := im.d.Destination.DeleteRecords(ctx, []string{old.rec.DestRecordID})
			if err == nil || isMissingRecord(err) || isValidation(err) {
				break
			}
			im.waitForDestination(ctx, err)
		}
	}
	return ctx.Err() == nil
}

// overloadPause lets a destination that ran out of memory or time recover
// before the halves of the batch are sent.
const overloadPause = 2 * time.Second

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
