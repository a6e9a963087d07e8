package redcapsim

import (
	"fmt"
	"strconv"
	"time"
)

// deleteSel narrows a deletion, as Delete Records' arm, event, instrument
// and repeat_instance do. The zero value (with ev and form at -1) deletes
// whole records.
type deleteSel struct {
	arm  int // > 0: only this arm's rows
	ev   int // >= 0: only this event's data
	form int // >= 0: only this instrument's data
	inst int // repeat instance (1 by default) when ev or form is given
}

func (d deleteSel) whole() bool { return d.ev < 0 && d.form < 0 }

// deleteLocked deletes records or parts of them and returns how many
// records lost data. A record that loses its last row is gone (logged as
// "Delete record"); a narrower deletion is logged as an update. Files of
// deleted cells are removed. Callers hold p.mu (write).
func (s *Server) deleteLocked(p *project, ids []string, sel deleteSel, user string) int {
	ts := s.now().Unix()
	n := 0
	var docs []int
	for _, id := range ids {
		rec := p.records[id]
		if rec == nil {
			continue
		}
		kept, dropped := p.deleteRows(rec, sel)
		if !dropped {
			continue
		}
		n++
		docs = append(docs, p.filesGone(rec.rows, kept)...)
		if len(kept) == 0 {
			p.removeRecord(id)
			delete(p.surveyIdents, id)
			p.log = append(p.log, logEntry{ts: ts, user: user, action: "Delete record " + id, record: id, details: p.recordIDField() + " = '" + id + "'", kind: logDelete})
			continue
		}
		rec.rows = kept
		p.log = append(p.log, logEntry{ts: ts, user: user, action: "Update record (API) " + id, record: id, details: p.deleteDetails(sel), kind: logData})
	}
	p.settleOrder()
	for _, d := range docs {
		s.dropDoc(p, d)
	}
	s.recDeleted.Add(int64(n))
	s.persistDelete(p, ids, sel, user, ts)
	return n
}

// deleteRows works out a record's rows after the deletion and whether
// anything was deleted.
func (p *project) deleteRows(rec *record, sel deleteSel) ([]row, bool) {
	ncols := len(p.cols)
	kept := make([]row, 0, len(rec.rows))
	dropped := false
	for _, r := range rec.rows {
		ev := int(r.ev)
		switch {
		case sel.arm > 0 && p.events[ev].ArmNum != sel.arm:
			kept = append(kept, r)
			continue
		case sel.whole():
			dropped = true
			continue
		case sel.ev >= 0 && ev != sel.ev:
			kept = append(kept, r)
			continue
		}
		instanceRow := r.rep != repNone
		if instanceRow && int(r.inst) != sel.inst {
			kept = append(kept, r)
			continue
		}
		if sel.form < 0 {
			dropped = true // the event's (or event instance's) data
			continue
		}
		if !p.designated[ev][sel.form] || !p.applies(sel.form, &r) {
			kept = append(kept, r)
			continue
		}
		if r.rep >= 0 {
			dropped = true // a repeating instance of this instrument
			continue
		}
		vals := r.cells(ncols)
		changed := false
		for _, ci := range p.forms[sel.form].cols {
			if ci != 0 && vals[ci] != "" {
				vals[ci], changed = "", true
			}
		}
		if changed {
			dropped = true
			r.data, r.offs = packRow(vals)
		}
		kept = append(kept, r)
	}
	return kept, dropped
}

// filesGone lists the doc_ids that were in the old rows' file cells but are
// no longer in the kept ones.
func (p *project) filesGone(old, kept []row) []int {
	still := map[string]bool{}
	for i := range kept {
		for ci, c := range p.cols {
			if c.kind == colFile {
				if v := kept[i].cell(ci); v != "" {
					still[v] = true
				}
			}
		}
	}
	var out []int
	for i := range old {
		for ci, c := range p.cols {
			if c.kind != colFile {
				continue
			}
			if v := old[i].cell(ci); v != "" && !still[v] {
				if id, err := strconv.Atoi(v); err == nil {
					out = append(out, id)
				}
			}
		}
	}
	return out
}

func (p *project) deleteDetails(sel deleteSel) string {
	s := "Deleted data"
	if sel.form >= 0 {
		s += " of instrument '" + p.forms[sel.form].name + "'"
	}
	if sel.ev >= 0 && p.longitudinal {
		s += " in event '" + p.eventUnique(sel.ev) + "'"
	}
	if sel.arm > 0 && sel.whole() {
		s += fmt.Sprintf(" in arm %d", sel.arm)
	}
	if !sel.whole() && (p.hasRepeat) {
		s += fmt.Sprintf(", instance %d", sel.inst)
	}
	return s
}

// replayDelete applies a persisted deletion without logging it again.
func (s *Server) replayDelete(p *project, op *diskChange) {
	sel := deleteSel{arm: op.Arm, ev: -1, form: -1, inst: op.Instance}
	if op.Event != "" {
		if e, ok := p.evIndex(op.Event); ok {
			sel.ev = e
		}
	}
	if op.Instrument != "" {
		if f, ok := p.formByName[op.Instrument]; ok {
			sel.form = f
		}
	}
	saved, now := p.dataDir, s.now
	p.dataDir = ""
	s.now = func() time.Time { return time.Unix(op.TS, 0) }
	s.deleteLocked(p, op.IDs, sel, op.User)
	s.now, p.dataDir = now, saved
}
