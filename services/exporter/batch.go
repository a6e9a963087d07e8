package exporter

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/pipeline/retry"
	"github.com/redcap-relay/relay/services/internal/redcap"
)

// Every batch answer is checked against what was asked: each record must
// come back with every row the record-ID list shows for it (in the events
// the policy exports). A short answer is asked again for the short records
// only, and what comes back is merged by row, up to maxBatchTries answers;
// a record that still lacks rows fails the run rather than being published
// without them. A record that no longer comes back at all, and that a
// direct ID-list export no longer finds either, was deleted during the run:
// it is skipped, and the next run sees it gone.
const maxBatchTries = 8

// batchResult is one batch's complete records, with their files.
type batchResult struct {
	index, from, count int
	records            []redcap.Record
	files              fileOutcome
	err                error
}

// exportBatches fetches the batches with at most conc calls in flight and
// delivers each result on the channel (in completion order). After the
// first error it starts no new call.
func exportBatches(ctx context.Context, ids []string, size, conc int, fetch func([]string) ([]redcap.Record, fileOutcome, error)) <-chan batchResult {
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
				recs, files, err := fetch(part)
				if err != nil {
					cancel()
				}
				out <- batchResult{index: n, from: i, count: len(part), records: recs, files: files, err: err}
			}(i, n)
		}
		wg.Wait()
	}()
	return out
}

// fetchComplete exports one batch of records until every record asked for
// has the rows the ID list expects, and returns the records found.
func (e *Exporter) fetchComplete(ctx context.Context, r *siteRun, ids []string, list *idList, short *atomic.Int64) ([]redcap.Record, error) {
	idField := r.compiled.RecordIDField()
	fields, events := r.compiled.ExportFields(), r.compiled.ExportEvents()
	var eventSet map[string]bool
	if len(events) > 0 {
		eventSet = make(map[string]bool, len(events))
		for _, ev := range events {
			eventSet[ev] = true
		}
	}
	got := make(map[string]map[rowKey]messages.Row, len(ids))
	order := make(map[string][]rowKey, len(ids)) // rows in the order REDCap first gave them
	ask := ids
	for try := 1; len(ask) > 0; try++ {
		rows, err := retry.Value(ctx, r.retry, func() ([]messages.Row, error) {
			return r.client.ExportRecords(ctx, redcap.ExportParams{Records: ask, Fields: fields, Events: events,
				ExportSurveyFields: r.compiled.SurveyTimestamps(), ExportDataAccessGroups: r.compiled.NeedsSiteDAG()})
		})
		if err != nil && r.compiled.NeedsSiteDAG() && isDAGRightMissing(err) {
			return nil, retry.Permanent(fmt.Errorf("site %s: policy %s maps the site's data access groups (site_dags), so the exporter asks for each record's DAG, and the site's token may not export them: grant the token's user the 'Data Access Groups' right, or remove site_dags: %w", r.site.ID, r.site.Policy, err))
		}
		if err != nil {
			return nil, err
		}
		for _, row := range rows {
			id := row[idField]
			if got[id] == nil {
				got[id] = map[rowKey]messages.Row{}
			}
			k := keyOf(row)
			if _, seen := got[id][k]; !seen {
				order[id] = append(order[id], k)
			}
			got[id][k] = row // a later answer's row wins
		}
		incomplete := shortRecords(ask, got, list, eventSet)
		if len(incomplete) == 0 {
			break
		}
		short.Add(1)
		if try == maxBatchTries {
			gone, err := e.deletedDuringRun(ctx, r, incomplete, got)
			if err != nil {
				return nil, err
			}
			if len(gone) < len(incomplete) {
				return nil, fmt.Errorf("site %s: REDCap's answers for %d record(s) (destination IDs %s) stayed incomplete after %d tries: rows the record-ID list shows did not come back; nothing of them was published",
					r.site.ID, len(incomplete)-len(gone), sample(incomplete, gone, r.compiled.DestRecordID), maxBatchTries)
			}
			break
		}
		ask = incomplete
	}
	return assemble(ids, got, order), nil
}

// isDAGRightMissing is REDCap refusing exportDataAccessGroups to a token
// without the Data Access Groups right.
func isDAGRightMissing(err error) bool {
	var e *redcap.Error
	return errors.As(err, &e) && e.Status == 403 && strings.Contains(e.Message, "Data Access Groups")
}

// shortRecords lists the records asked for that lack rows the list expects
// (or that came back with no row at all).
func shortRecords(ask []string, got map[string]map[rowKey]messages.Row, list *idList, events map[string]bool) []string {
	var out []string
	for _, id := range ask {
		have := got[id]
		want := list.expected(id, events)
		if len(have) == 0 && (want == nil || len(want) > 0) {
			out = append(out, id)
			continue
		}
		for k := range want {
			if _, ok := have[k]; !ok {
				out = append(out, id)
				break
			}
		}
	}
	return out
}

// deletedDuringRun are the incomplete records that came back with nothing
// and that two more direct ID-list exports no longer find.
func (e *Exporter) deletedDuringRun(ctx context.Context, r *siteRun, incomplete []string, got map[string]map[rowKey]messages.Row) (map[string]bool, error) {
	var empty []string
	for _, id := range incomplete {
		if len(got[id]) == 0 {
			empty = append(empty, id)
		}
	}
	gone := map[string]bool{}
	if len(empty) == 0 {
		return gone, nil
	}
	for _, id := range empty {
		gone[id] = true
	}
	for i := 0; i < 2; i++ {
		found, err := e.confirmCandidates(ctx, r, empty)
		if err != nil {
			return nil, err
		}
		for id := range found {
			delete(gone, id)
		}
	}
	return gone, nil
}

// assemble returns the records in the order asked, each with its rows in
// the order REDCap gave them, so an answer that was complete at once gives
// exactly the record (and content hash) it always did.
func assemble(ids []string, got map[string]map[rowKey]messages.Row, order map[string][]rowKey) []redcap.Record {
	out := make([]redcap.Record, 0, len(ids))
	for _, id := range ids {
		rows := got[id]
		if len(rows) == 0 {
			continue
		}
		rec := redcap.Record{ID: id, Rows: make([]messages.Row, 0, len(rows))}
		for _, k := range order[id] {
			rec.Rows = append(rec.Rows, rows[k])
		}
		out = append(out, rec)
	}
	return out
}

// sample names a few of the records still incomplete, as the destination
// knows them (never a site ID the policy hides).
func sample(incomplete []string, gone map[string]bool, dest func(string) string) string {
	var names []string
	for _, id := range incomplete {
		if !gone[id] {
			names = append(names, dest(id))
		}
	}
	if len(names) > 5 {
		return strings.Join(names[:5], ", ") + fmt.Sprintf(" and %d more", len(names)-5)
	}
	return strings.Join(names, ", ")
}
