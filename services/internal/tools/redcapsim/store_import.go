package redcapsim

import (
	"fmt"
	"strings"
)

// writeOpts say how planned rows are written: blanks erase (overwrite), who
// and when for the change log, and silent for changes that bypass it.
type writeOpts struct {
	overwrite bool
	user      string
	ts        int64
	silent    bool // no change-log entry (SetValuesSilently)
}

// applyPlan writes planned rows. Callers hold p.mu (write).
func (p *project) applyPlan(plan []plannedRow, wo writeOpts) {
	overwrite := wo.overwrite
	ncols := len(p.cols)
	type change struct {
		created bool
		details []string
	}
	changes := map[string]*change{}
	var order []string
	for i := range plan {
		pr := &plan[i]
		rec := p.records[pr.rec]
		ch := changes[pr.rec]
		if ch == nil {
			ch = &change{created: rec == nil}
			changes[pr.rec] = ch
			order = append(order, pr.rec)
		}
		if rec == nil {
			rec = &record{id: pr.rec, dag: -1}
			p.addRecord(rec)
			p.noteDAGName(pr.rec)
		}
		if pr.dagSet {
			rec.dag = pr.dag
		}
		inst := pr.inst
		if pr.newInst {
			inst = 1
			for _, r := range rec.rows {
				if int(r.ev) == pr.ev && int(r.rep) == pr.rep && int(r.inst) >= inst {
					inst = int(r.inst) + 1
				}
			}
		}
		// A repeating row of a new record also gets its event's base row, as
		// REDCap stores the record ID there.
		if pr.rep >= 0 && rec.findRow(pr.ev, repNone, 0) < 0 && ch.created {
			rec.rows = append(rec.rows, row{ev: int16(pr.ev), rep: repNone})
			rec.rows[len(rec.rows)-1].data, rec.rows[len(rec.rows)-1].offs = packRow(make([]string, ncols))
		}
		idx := rec.findRow(pr.ev, pr.rep, inst)
		var vals []string
		if idx < 0 {
			vals = make([]string, ncols)
		} else {
			vals = rec.rows[idx].cells(ncols)
		}
		for _, cv := range pr.vals {
			if cv.val == "" && !overwrite {
				continue
			}
			if vals[cv.col] != cv.val {
				if len(ch.details) < 8 {
					ch.details = append(ch.details, fmt.Sprintf("%s = '%s'", p.cols[cv.col].name, truncate(cv.val, 40)))
				}
				vals[cv.col] = cv.val
			}
		}
		data, offs := packRow(vals)
		if idx < 0 {
			rec.rows = append(rec.rows, row{ev: int16(pr.ev), rep: int16(pr.rep), inst: int32(inst), data: data, offs: offs})
			rec.sortRows()
		} else {
			rec.rows[idx].data, rec.rows[idx].offs = data, offs
		}
	}
	p.settleOrder()
	if wo.silent {
		return
	}
	for _, id := range order {
		ch := changes[id]
		action := "Update record (import) " + id
		if ch.created {
			action = "Create record (import) " + id
		}
		p.log = append(p.log, logEntry{ts: wo.ts, user: wo.user, action: action, record: id, details: strings.Join(ch.details, ", "), kind: logData})
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// importInto validates and applies rows, all or nothing, and persists them.
func (s *Server) importInto(p *project, rows []inRow, o importOpts) (*importResult, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	o.dag = p.dagIndexOf(o.dagName)
	plan, res, err := p.planImport(rows, o)
	if err != nil {
		return nil, err
	}
	wo := writeOpts{overwrite: o.overwrite, user: o.user, ts: s.now().Unix(), silent: o.silent}
	p.applyPlan(plan, wo)
	s.recImported.Add(int64(len(res.ids)))
	s.persistImport(p, plan, wo)
	return res, nil
}
