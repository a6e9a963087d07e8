package redcapsim

import "sort"

// recordOrder keeps a project's records in export order. Every change
// updates it under the project's write lock, so exports, which hold only
// the read lock, never sort or write shared state (two exports at once used
// to sort the same slice). A new record whose ID sorts after the last one
// (sequential and auto-numbered IDs) is appended; others wait in pending and
// are merged in once, when the change settles.
type recordOrder struct {
	all     []*record
	pending []*record
	removed bool
}

// addRecord stores a new record. Callers hold p.mu (write) and call
// settleOrder before releasing it.
func (p *project) addRecord(rec *record) {
	p.records[rec.id] = rec
	o := &p.order
	if len(o.pending) == 0 && (len(o.all) == 0 || lessRecordID(o.all[len(o.all)-1].id, rec.id)) {
		o.all = append(o.all, rec)
		return
	}
	o.pending = append(o.pending, rec)
}

// removeRecord drops a record. Callers hold p.mu (write) and call
// settleOrder before releasing it.
func (p *project) removeRecord(id string) {
	if _, ok := p.records[id]; !ok {
		return
	}
	delete(p.records, id)
	p.order.removed = true
}

// settleOrder folds the pending additions and removals into the order.
// Callers hold p.mu (write).
func (p *project) settleOrder() {
	o := &p.order
	if !o.removed && len(o.pending) == 0 {
		return
	}
	kept := o.all
	if o.removed {
		kept = make([]*record, 0, len(o.all))
		for _, r := range o.all {
			if p.records[r.id] == r {
				kept = append(kept, r)
			}
		}
	}
	var add []*record
	for _, r := range o.pending {
		if p.records[r.id] == r {
			add = append(add, r)
		}
	}
	sort.Slice(add, func(i, j int) bool { return lessRecordID(add[i].id, add[j].id) })
	o.all = mergeOrdered(kept, add)
	o.pending, o.removed = nil, false
}

func mergeOrdered(a, b []*record) []*record {
	if len(b) == 0 {
		return a
	}
	out := make([]*record, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) && j < len(b) {
		if lessRecordID(b[j].id, a[i].id) {
			out = append(out, b[j])
			j++
		} else {
			out = append(out, a[i])
			i++
		}
	}
	out = append(out, a[i:]...)
	return append(out, b[j:]...)
}

// resetRecords replaces every record at once (design changes, loading).
// Callers hold p.mu (write).
func (p *project) resetRecords(recs map[string]*record) {
	p.records = recs
	all := make([]*record, 0, len(recs))
	for _, r := range recs {
		all = append(all, r)
	}
	sort.Slice(all, func(i, j int) bool { return lessRecordID(all[i].id, all[j].id) })
	p.order = recordOrder{all: all}
}

// sortedRecords returns the records in export order: numeric IDs
// numerically, then the others (DAG-prefixed IDs by prefix and number).
// It only reads, so the read lock is enough.
func (p *project) sortedRecords() []*record { return p.order.all }
