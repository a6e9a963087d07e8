package exporter

import (
	"context"
	"fmt"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/pipeline/retry"
	"github.com/redcap-relay/relay/services/internal/redcap"
)

// REDCap's record-ID list (Export Records with only the record-ID field)
// has one row per record, event and repeat instance. Nothing in one answer
// proves it complete, so the exporter compares answers: on a full run it
// asks twice, on an incremental run it checks that the changed records are
// in the list and that every known record still is (or a direct export
// finds it). When answers disagree the list is built from several until
// they stop adding anything (stabilise); every batch answer is then checked
// against it (batch.go).

// rowKey names one row of a record: its event and repeat instance.
type rowKey struct{ event, instrument, instance string }

func keyOf(r messages.Row) rowKey {
	return rowKey{r["redcap_event_name"], r["redcap_repeat_instrument"], r["redcap_repeat_instance"]}
}

// idList is the site's records, with the rows each has, merged from one or
// more answers.
type idList struct {
	order []string
	rows  map[string]map[rowKey]struct{} // nil map: rows unknown (seen only in a changed-since list)
	// answers is how many ID-list answers were merged; unreliable says the
	// answers disagreed (the list was then stabilised).
	answers    int
	unreliable bool
}

func newIDList() *idList { return &idList{rows: map[string]map[rowKey]struct{}{}} }

// add merges one answer and says how many records, or rows of records
// already listed, were new.
func (l *idList) add(rows []messages.Row, idField string) (added int) {
	l.answers++
	for _, r := range rows {
		id := r[idField]
		ks, known := l.rows[id]
		if !known {
			l.order = append(l.order, id)
			added++
		}
		rowsKnown := ks != nil
		if ks == nil {
			ks = map[rowKey]struct{}{}
			l.rows[id] = ks
		}
		k := keyOf(r)
		if _, dup := ks[k]; !dup {
			ks[k] = struct{}{}
			if rowsKnown {
				added++
			}
		}
	}
	return added
}

// addIDs merges record IDs whose rows are not known (a changed-since list).
func (l *idList) addIDs(ids []string) (added int) {
	for _, id := range ids {
		if _, ok := l.rows[id]; !ok {
			l.order = append(l.order, id)
			l.rows[id] = nil
			added++
		}
	}
	return added
}

func (l *idList) has(id string) bool { _, ok := l.rows[id]; return ok }

// expected are the rows an export restricted to events (nil: all) must
// return for a record; nil when they are not known.
func (l *idList) expected(id string, events map[string]bool) map[rowKey]struct{} {
	ks := l.rows[id]
	if ks == nil {
		return nil
	}
	if events == nil {
		return ks
	}
	out := make(map[rowKey]struct{}, len(ks))
	for k := range ks {
		if events[k.event] {
			out[k] = struct{}{}
		}
	}
	return out
}

// Stabilising: at most this many ID-list answers, done when this many in a
// row add nothing.
const (
	maxIDAnswers   = 12
	quietIDAnswers = 3
)

// exportIDRows is one ID-list answer.
func (e *Exporter) exportIDRows(ctx context.Context, r *siteRun, records []string) ([]messages.Row, error) {
	idField := r.compiled.RecordIDField()
	rows, err := retry.Value(ctx, r.retry, func() ([]messages.Row, error) {
		return r.client.ExportRecords(ctx, redcap.ExportParams{Records: records, Fields: []string{idField}})
	})
	if err != nil {
		return nil, fmt.Errorf("site %s: record-ID list: %w", r.site.ID, err)
	}
	for i, row := range rows {
		if _, ok := row[idField]; !ok {
			return nil, retry.Permanent(fmt.Errorf("site %s: row %d of the record-ID list has no %q column (is it the project's first field?)", r.site.ID, i+1, idField))
		}
	}
	return rows, nil
}

// stabilise asks for the ID list again until quietIDAnswers answers in a row
// add nothing; a list that keeps growing fails the run: the server answers
// incompletely, and nothing may be deleted on its word.
func (e *Exporter) stabilise(ctx context.Context, r *siteRun, l *idList) error {
	l.unreliable = true
	quiet := 0
	for quiet < quietIDAnswers {
		if l.answers >= maxIDAnswers {
			return fmt.Errorf("site %s: the record-ID list answers keep differing (%d answers, the last still adding records or rows): the REDCap server answers incompletely; nothing was exported or deleted", r.site.ID, l.answers)
		}
		rows, err := e.exportIDRows(ctx, r, nil)
		if err != nil {
			return err
		}
		if l.add(rows, r.compiled.RecordIDField()) > 0 {
			r.short++
			quiet = 0
		} else {
			quiet++
		}
	}
	return nil
}

// confirmCandidates exports the candidates directly (records[]=ID, only the
// record-ID field) and returns those the site still has.
func (e *Exporter) confirmCandidates(ctx context.Context, r *siteRun, candidates []string) (map[string][]messages.Row, error) {
	found := map[string][]messages.Row{}
	idField := r.compiled.RecordIDField()
	for i := 0; i < len(candidates); i += r.site.BatchSize {
		part := candidates[i:min(i+r.site.BatchSize, len(candidates))]
		rows, err := e.exportIDRows(ctx, r, part)
		if err != nil {
			return nil, err
		}
		for _, row := range rows {
			found[row[idField]] = append(found[row[idField]], row)
		}
	}
	return found, nil
}
