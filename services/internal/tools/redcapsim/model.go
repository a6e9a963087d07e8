package redcapsim

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redcap-relay/relay/messages"
)

// Column kinds of the storage layout.
const (
	colPlain    = iota // one field, one cell
	colCheckbox        // one checkbox choice (field___code)
	colComplete        // <form>_complete
)

type column struct {
	name  string // export name: field, field___code or form_complete
	field int    // index into project.fields; -1 for <form>_complete
	form  int
	kind  int
	code  string // checkbox choice code (raw)
	label string // checkbox choice label
}

type choice struct{ code, label string }

type fieldInfo struct {
	messages.Field
	form       int
	choices    []choice
	choiceSet  map[string]string // code -> label
	cols       []int
	validation string // normalised validation name (float→number, int→integer)
}

type formInfo struct {
	name, label string
	fields      []int // data fields (descriptive excluded)
	cols        []int // storage columns, complete included
	completeCol int
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

type logEntry struct {
	ts      int64 // unix seconds
	user    string
	action  string
	record  string
	details string
	kind    uint8 // logKind*
}

const (
	logData uint8 = iota + 1
	logExport
	logManage
	logDelete
)

// project is one simulated REDCap project.
type project struct {
	mu sync.RWMutex

	id           int
	title        string
	fields       []messages.Field
	instruments  []messages.Instrument
	arms         []messages.Arm
	events       []messages.Event
	fem          []messages.FormEvent
	repeating    []messages.RepeatingForm
	dags         []messages.DAG
	longitudinal bool
	surveys      bool
	autonumber   bool
	purpose      int
	created      time.Time
	nextEventID  int
	dagSeq       map[int]int // DAG id -> last n used for <dagId>-<n> names
	dataDir      string      // "" when memory only
	persistErr   error
	logFile      *appendLog
	gen          int // snapshot generation (names the change file)

	// derived from the metadata by rebuild
	finfo       []fieldInfo
	fieldByName map[string]int
	forms       []formInfo
	formByName  map[string]int
	cols        []column
	colByName   map[string]int
	eventByName map[string]int
	designated  [][]bool // [event][form]
	repForm     [][]bool // [event][form]: the form repeats in the event
	repEv       []bool   // [event]: the whole event repeats
	hasRepeat   bool
	dagByName   map[string]int
	armFirstEv  map[int]int // arm number -> first event index

	records map[string]*record
	order   []*record
	sorted  bool
	log     []logEntry
}

var uniqueNameRE = regexp.MustCompile(`[^a-z0-9_]+`)

// uniqueDAGName derives REDCap's unique group name from a DAG label:
// lower case, spaces to underscores, other punctuation dropped.
func uniqueDAGName(label string) string {
	s := strings.ToLower(strings.TrimSpace(label))
	s = strings.ReplaceAll(s, " ", "_")
	s = uniqueNameRE.ReplaceAllString(s, "")
	if len(s) > 18 {
		s = s[:18]
	}
	return s
}

var eventNameRE = regexp.MustCompile(`[^a-z0-9]+`)

// uniqueEventName derives REDCap's unique event name from a label and arm.
func uniqueEventName(label string, arm int, taken map[string]bool) string {
	s := eventNameRE.ReplaceAllString(strings.ToLower(label), "_")
	s = strings.Trim(s, "_")
	if len(s) > 18 {
		s = s[:18]
	}
	base := fmt.Sprintf("%s_arm_%d", s, arm)
	name := base
	for c := 'b'; taken[name] && c <= 'z'; c++ {
		name = base + string(c)
	}
	return name
}

// parseChoices parses "1, one | 2, two" (spaces optional).
func parseChoices(s string) []choice {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil
	}
	var out []choice
	for _, part := range strings.Split(s, "|") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		code, label, ok := strings.Cut(part, ",")
		if !ok {
			out = append(out, choice{code: strings.TrimSpace(part), label: strings.TrimSpace(part)})
			continue
		}
		out = append(out, choice{code: strings.TrimSpace(code), label: strings.TrimSpace(label)})
	}
	return out
}

var checkboxCodeRE = regexp.MustCompile(`[^a-z0-9]`)

// checkboxColumn builds the export name of one checkbox choice.
func checkboxColumn(field, code string) string {
	return field + "___" + checkboxCodeRE.ReplaceAllString(strings.ToLower(code), "_")
}

func normValidation(v string) string {
	switch v {
	case "float":
		return "number"
	case "int":
		return "integer"
	}
	return v
}

func hasChoices(ft string) bool {
	switch ft {
	case "radio", "dropdown", "checkbox":
		return true
	}
	return false
}

// rebuild derives the lookup structures from the metadata. It returns an
// error when the metadata is inconsistent (so a bad project never loads).
func (p *project) rebuild() error {
	if len(p.fields) == 0 {
		return fmt.Errorf("project %d: the data dictionary has no fields; the first field must be the record ID", p.id)
	}
	p.fieldByName = map[string]int{}
	p.formByName = map[string]int{}
	p.forms = nil
	// Forms in instrument order if given, else in order of first appearance.
	if len(p.instruments) == 0 {
		seen := map[string]bool{}
		for _, f := range p.fields {
			if !seen[f.FormName] {
				seen[f.FormName] = true
				p.instruments = append(p.instruments, messages.Instrument{InstrumentName: f.FormName, InstrumentLabel: f.FormName})
			}
		}
	}
	for i, in := range p.instruments {
		if _, dup := p.formByName[in.InstrumentName]; dup {
			return fmt.Errorf("project %d: instrument %q is listed twice", p.id, in.InstrumentName)
		}
		p.formByName[in.InstrumentName] = i
		p.forms = append(p.forms, formInfo{name: in.InstrumentName, label: in.InstrumentLabel, completeCol: -1})
	}
	p.finfo = make([]fieldInfo, len(p.fields))
	for i, f := range p.fields {
		if f.FieldName == "" {
			return fmt.Errorf("project %d: field %d has no name", p.id, i+1)
		}
		if _, dup := p.fieldByName[f.FieldName]; dup {
			return fmt.Errorf("project %d: field %q is defined twice", p.id, f.FieldName)
		}
		fi, ok := p.formByName[f.FormName]
		if !ok {
			p.formByName[f.FormName] = len(p.forms)
			fi = len(p.forms)
			p.forms = append(p.forms, formInfo{name: f.FormName, label: f.FormName, completeCol: -1})
			p.instruments = append(p.instruments, messages.Instrument{InstrumentName: f.FormName, InstrumentLabel: f.FormName})
		}
		p.fieldByName[f.FieldName] = i
		info := fieldInfo{Field: f, form: fi, validation: normValidation(f.TextValidationTypeOrShowSlider)}
		switch f.FieldType {
		case "yesno":
			info.choices = []choice{{"1", "Yes"}, {"0", "No"}}
		case "truefalse":
			info.choices = []choice{{"1", "True"}, {"0", "False"}}
		default:
			if hasChoices(f.FieldType) {
				info.choices = parseChoices(f.SelectChoicesOrCalculations)
			}
		}
		if info.choices != nil {
			info.choiceSet = map[string]string{}
			for _, c := range info.choices {
				info.choiceSet[c.code] = c.label
			}
		}
		p.finfo[i] = info
	}
	if p.fields[0].FieldType == "descriptive" || p.fields[0].FieldType == "checkbox" {
		return fmt.Errorf("project %d: the first field %q must be a text field (the record ID)", p.id, p.fields[0].FieldName)
	}
	// Storage columns: fields in form order as the data dictionary lists them,
	// each form followed by its status column.
	p.cols = nil
	p.colByName = map[string]int{}
	add := func(c column) error {
		if _, dup := p.colByName[c.name]; dup {
			return fmt.Errorf("project %d: column %q would appear twice (a field clashes with a checkbox choice or form status)", p.id, c.name)
		}
		p.colByName[c.name] = len(p.cols)
		p.cols = append(p.cols, c)
		return nil
	}
	byForm := make([][]int, len(p.forms))
	for i := range p.finfo {
		byForm[p.finfo[i].form] = append(byForm[p.finfo[i].form], i)
	}
	// Dictionary order decides the form order of columns when the
	// instruments list is absent; otherwise the instrument order does.
	for fi := range p.forms {
		for _, i := range byForm[fi] {
			info := &p.finfo[i]
			switch info.FieldType {
			case "descriptive":
				continue
			case "checkbox":
				for _, c := range info.choices {
					info.cols = append(info.cols, len(p.cols))
					if err := add(column{name: checkboxColumn(info.FieldName, c.code), field: i, form: fi, kind: colCheckbox, code: c.code, label: c.label}); err != nil {
						return err
					}
				}
			default:
				info.cols = append(info.cols, len(p.cols))
				if err := add(column{name: info.FieldName, field: i, form: fi, kind: colPlain}); err != nil {
					return err
				}
			}
			p.forms[fi].fields = append(p.forms[fi].fields, i)
		}
		p.forms[fi].completeCol = len(p.cols)
		if err := add(column{name: p.forms[fi].name + "_complete", field: -1, form: fi, kind: colComplete}); err != nil {
			return err
		}
		for c := range p.cols {
			if p.cols[c].form == fi {
				p.forms[fi].cols = append(p.forms[fi].cols, c)
			}
		}
	}
	// The record-ID field's form must come first so the ID column leads.
	if p.cols[0].name != p.fields[0].FieldName {
		return fmt.Errorf("project %d: the record ID field %q must be on the first instrument", p.id, p.fields[0].FieldName)
	}

	// Events.
	if len(p.events) > 0 {
		p.longitudinal = true
	}
	p.eventByName = map[string]int{}
	p.armFirstEv = map[int]int{}
	evs := p.events
	if !p.longitudinal {
		evs = []messages.Event{{EventName: "Event 1", ArmNum: 1, UniqueEventName: "event_1_arm_1"}}
	}
	for i, e := range evs {
		if _, dup := p.eventByName[e.UniqueEventName]; dup {
			return fmt.Errorf("project %d: event %q is listed twice", p.id, e.UniqueEventName)
		}
		p.eventByName[e.UniqueEventName] = i
		if _, ok := p.armFirstEv[e.ArmNum]; !ok {
			p.armFirstEv[e.ArmNum] = i
		}
	}
	nev := len(evs)
	p.designated = make([][]bool, nev)
	p.repForm = make([][]bool, nev)
	p.repEv = make([]bool, nev)
	for i := range p.designated {
		p.designated[i] = make([]bool, len(p.forms))
		p.repForm[i] = make([]bool, len(p.forms))
		if !p.longitudinal {
			for f := range p.designated[i] {
				p.designated[i][f] = true
			}
		}
	}
	if p.longitudinal {
		for _, m := range p.fem {
			e, ok := p.eventByName[m.UniqueEventName]
			if !ok {
				return fmt.Errorf("project %d: form-event mapping names unknown event %q", p.id, m.UniqueEventName)
			}
			f, ok := p.formByName[m.Form]
			if !ok {
				return fmt.Errorf("project %d: form-event mapping names unknown form %q", p.id, m.Form)
			}
			p.designated[e][f] = true
		}
	}
	p.hasRepeat = len(p.repeating) > 0
	for _, r := range p.repeating {
		e := 0
		if p.longitudinal {
			var ok bool
			if e, ok = p.eventByName[r.EventName]; !ok {
				return fmt.Errorf("project %d: repeating setup names unknown event %q", p.id, r.EventName)
			}
		}
		if r.FormName == "" {
			p.repEv[e] = true
			continue
		}
		f, ok := p.formByName[r.FormName]
		if !ok {
			return fmt.Errorf("project %d: repeating setup names unknown form %q", p.id, r.FormName)
		}
		p.repForm[e][f] = true
	}
	p.dagByName = map[string]int{}
	for i, d := range p.dags {
		p.dagByName[d.Unique] = i
	}
	if p.records == nil {
		p.records = map[string]*record{}
	}
	if p.dagSeq == nil {
		p.dagSeq = map[int]int{}
	}
	return nil
}

func (p *project) recordIDField() string { return p.fields[0].FieldName }

func (p *project) numEvents() int { return len(p.designated) }

// eventLabel is the label REDCap uses for redcap_event_name in label mode.
func (p *project) eventLabel(ev int) string {
	if !p.longitudinal {
		return ""
	}
	e := p.events[ev]
	if len(p.arms) > 1 {
		armName := ""
		for _, a := range p.arms {
			if a.ArmNum == e.ArmNum {
				armName = a.Name
			}
		}
		return fmt.Sprintf("%s (Arm %d: %s)", e.EventName, e.ArmNum, armName)
	}
	return e.EventName
}

func (p *project) eventUnique(ev int) string {
	if !p.longitudinal {
		return ""
	}
	return p.events[ev].UniqueEventName
}

// applies says whether a column's form belongs to a row: designated for its
// event and matching its repeat context.
func (p *project) applies(form int, r *row) bool {
	ev := int(r.ev)
	if !p.designated[ev][form] {
		return false
	}
	switch {
	case r.rep == repEvent:
		return true
	case r.rep >= 0:
		return int(r.rep) == form
	default:
		return !p.repEv[ev] && !p.repForm[ev][form]
	}
}

// sortedRecords returns the records in export order: numeric IDs
// numerically, then the others (DAG-prefixed IDs by prefix and number).
func (p *project) sortedRecords() []*record {
	if !p.sorted {
		p.order = p.order[:0]
		for _, r := range p.records {
			p.order = append(p.order, r)
		}
		sort.Slice(p.order, func(i, j int) bool { return lessRecordID(p.order[i].id, p.order[j].id) })
		p.sorted = true
	}
	return p.order
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
