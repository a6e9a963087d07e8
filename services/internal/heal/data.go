package heal

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/pipeline/retry"
	"github.com/redcap-relay/relay/services/internal/redcap"
)

// The data file is written as the destination is read: record IDs first,
// then records in batches (a few Export Records calls at once), each
// batch's rows written as soon as it and every batch before it arrived.
// Memory holds the ID list and the batches in flight, whatever the
// number of records.

// dataStats counts what the data file holds (never values).
type dataStats struct {
	Records, Rows int
	PerSite       map[string]int // records per site ID
	Unknown       int            // destination records of no network site: left out
	Unchosen      int            // records of network sites not chosen with --site
	// Withheld counts, per site and destination column, values the
	// destination holds that the site's policy does not release (written
	// as empty cells).
	Withheld map[string]map[string]int
}

type exportJob struct {
	ids  []string
	rows chan batchResult
}

type batchResult struct {
	rows []messages.Row
	err  error
}

// writeData exports the destination's records of the chosen sites and
// writes one CSV row per record x event x repeat instance, with exactly the
// layout's columns. A cell the record's site does not release is written
// empty and counted.
func writeData(ctx context.Context, w io.Writer, c *redcap.Client, L *layout, x *siteIndex, batch, conc int, rp retry.Policy) (*dataStats, error) {
	ids, err := retry.Value(ctx, rp, func() ([]string, error) { return c.ExportRecordIDs(ctx, L.idField, zeroTime) })
	if err != nil {
		return nil, destErr("export the record IDs", err)
	}
	st := &dataStats{PerSite: map[string]int{}, Withheld: map[string]map[string]int{}}
	keep := ids[:0:0]
	for _, id := range ids {
		s, known := x.of(id)
		switch {
		case !known:
			st.Unknown++
		case s == nil:
			st.Unchosen++
		default:
			keep = append(keep, id)
		}
	}
	cw := csv.NewWriter(w)
	header := make([]string, len(L.fields))
	for i, f := range L.fields {
		header[i] = f.Name
	}
	if err := cw.Write(header); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	jobs := make(chan exportJob, conc)
	order := make(chan exportJob, conc)
	var wg sync.WaitGroup
	for i := 0; i < conc; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				rows, err := retry.Value(ctx, rp, func() ([]messages.Row, error) {
					return c.ExportRecords(ctx, redcap.ExportParams{Records: j.ids, Fields: L.exportFields, ExportDataAccessGroups: L.dags})
				})
				j.rows <- batchResult{rows, err}
			}
		}()
	}
	go func() {
		defer close(order)
		defer close(jobs)
		for i := 0; i < len(keep); i += batch {
			j := exportJob{ids: keep[i:min(i+batch, len(keep))], rows: make(chan batchResult, 1)}
			select {
			case order <- j:
			case <-ctx.Done():
				return
			}
			select {
			case jobs <- j:
			case <-ctx.Done():
				return
			}
		}
	}()
	defer func() { cancel(); wg.Wait() }()
	rec := make([]string, len(header))
	for j := range order {
		var res batchResult
		select {
		case res = <-j.rows:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if res.err != nil {
			return nil, destErr(fmt.Sprintf("export records (a batch of %d)", len(j.ids)), res.err)
		}
		if err := writeRows(cw, res.rows, j.ids, header, rec, L, x, st); err != nil {
			return nil, err
		}
		cw.Flush()
		if err := cw.Error(); err != nil {
			return nil, err
		}
	}
	return st, nil
}

// writeRows writes one batch in record-ID order (REDCap's order within a
// record: events, repeats).
func writeRows(cw *csv.Writer, rows []messages.Row, ids, header, rec []string, L *layout, x *siteIndex, st *dataStats) error {
	byID := map[string][]messages.Row{}
	for _, r := range rows {
		id := r[L.idField]
		byID[id] = append(byID[id], r)
	}
	for _, id := range ids {
		rs := byID[id]
		if len(rs) == 0 {
			continue // deleted since the ID list was read
		}
		s, _ := x.of(id)
		st.Records++
		st.PerSite[s.cfg.ID]++
		for _, r := range rs {
			for i, col := range header {
				v := r[col]
				if v != "" && !s.releases(col) {
					cnt := st.Withheld[s.cfg.ID]
					if cnt == nil {
						cnt = map[string]int{}
						st.Withheld[s.cfg.ID] = cnt
					}
					cnt[col]++
					v = ""
				}
				rec[i] = v
			}
			if err := cw.Write(rec); err != nil {
				return err
			}
			st.Rows++
		}
	}
	return nil
}

// releases reports whether the site's policy writes a column (REDCap's own
// columns are always the site's: event, repeat, DAG).
func (s *site) releases(col string) bool {
	switch col {
	case colEvent, colRepeat, colInstance, colDAG:
		return true
	}
	return s.released[col]
}

func (st *dataStats) withheldText() []string {
	var out []string
	for _, site := range sortedKeys(st.Withheld) {
		cols := st.Withheld[site]
		n := 0
		names := make([]string, 0, len(cols))
		for c, k := range cols {
			n += k
			names = append(names, c)
		}
		sort.Strings(names)
		out = append(out, fmt.Sprintf("site %s: %d value(s) the destination holds in field(s) its policy does not release were left out (empty cells): %s", site, n, strings.Join(names, ", ")))
	}
	return out
}
