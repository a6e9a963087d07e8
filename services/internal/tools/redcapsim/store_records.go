package redcapsim

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

func sortRecords(recs []*record) {
	// insertion-friendly: requests are small
	for i := 1; i < len(recs); i++ {
		for j := i; j > 0 && lessRecordID(recs[j].id, recs[j-1].id); j-- {
			recs[j], recs[j-1] = recs[j-1], recs[j]
		}
	}
}

// row is one record × event × repeat instance. Cells are packed into one
// string with end offsets, which keeps a million records in a few hundred MB.
type row struct {
	ev   int16 // event index (0 in classic projects)
	rep  int16 // form index of a repeating instrument; repNone; repEvent
	inst int32 // 0 on non-repeating rows
	data string
	offs []uint32 // end offset of each cell
}

const (
	repNone  = -1
	repEvent = -2
)

func (r *row) cell(i int) string {
	var start uint32
	if i > 0 {
		start = r.offs[i-1]
	}
	return r.data[start:r.offs[i]]
}

func (r *row) cells(n int) []string {
	out := make([]string, n)
	if r.offs == nil {
		return out
	}
	for i := 0; i < n && i < len(r.offs); i++ {
		out[i] = r.cell(i)
	}
	return out
}

func packRow(vals []string) (string, []uint32) {
	n := 0
	for _, v := range vals {
		n += len(v)
	}
	var b strings.Builder
	b.Grow(n)
	offs := make([]uint32, len(vals))
	for i, v := range vals {
		b.WriteString(v)
		offs[i] = uint32(b.Len())
	}
	return b.String(), offs
}

type record struct {
	id   string
	dag  int // index into project.dags, -1 none
	rows []row
}

func (r *record) findRow(ev, rep, inst int) int {
	for i := range r.rows {
		if int(r.rows[i].ev) == ev && int(r.rows[i].rep) == rep && int(r.rows[i].inst) == inst {
			return i
		}
	}
	return -1
}

func (r *record) sortRows() {
	sort.SliceStable(r.rows, func(i, j int) bool {
		a, b := r.rows[i], r.rows[j]
		if a.ev != b.ev {
			return a.ev < b.ev
		}
		// The non-repeating row first, then instruments in form order, then instance.
		ar, br := a.rep, b.rep
		if ar == repNone {
			ar = -100
		}
		if br == repNone {
			br = -100
		}
		if ar != br {
			return ar < br
		}
		return a.inst < b.inst
	})
}

// noteDAGName remembers the largest n used in a "<dagId>-<n>" record name,
// so that generated names never reuse one. Callers hold p.mu (write).
func (p *project) noteDAGName(id string) {
	if k, a, b := recordKey(id); k == 1 {
		for _, d := range p.dags {
			if int64(d.ID) == a && int(b) > p.dagSeq[d.ID] {
				p.dagSeq[d.ID] = int(b)
			}
		}
	}
}

func lessRecordID(a, b string) bool {
	ak, an, ar := recordKey(a)
	bk, bn, br := recordKey(b)
	if ak != bk {
		return ak < bk
	}
	if ak == 0 {
		if an != bn {
			return an < bn
		}
		return a < b
	}
	if ak == 1 {
		if an != bn {
			return an < bn
		}
		if ar != br {
			return ar < br
		}
	}
	return a < b
}

// recordKey classifies an ID: 0 numeric, 1 <n>-<m>, 2 other.
func recordKey(s string) (kind int, n, m int64) {
	if v, err := strconv.ParseInt(s, 10, 64); err == nil && s != "" && s[0] != '+' {
		return 0, v, 0
	}
	if a, b, ok := strings.Cut(s, "-"); ok {
		x, err1 := strconv.ParseInt(a, 10, 64)
		y, err2 := strconv.ParseInt(b, 10, 64)
		if err1 == nil && err2 == nil {
			return 1, x, y
		}
	}
	return 2, 0, 0
}

// nextRecordName is REDCap's Generate Next Record Name: the largest numeric
// ID plus one; for a DAG user "<dagId>-<n>".
func (p *project) nextRecordName(dag int) string {
	if dag >= 0 {
		id := p.dags[dag].ID
		n := p.dagSeq[id]
		for _, r := range p.records {
			if k, a, b := recordKey(r.id); k == 1 && a == int64(id) && int(b) > n {
				n = int(b)
			}
		}
		return fmt.Sprintf("%d-%d", id, n+1)
	}
	var max int64
	for _, r := range p.records {
		if k, v, _ := recordKey(r.id); k == 0 && v > max {
			max = v
		}
	}
	return strconv.FormatInt(max+1, 10)
}
