package redcapsim

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/tools/redcapsim/odm"
)

// Column kinds of the storage layout.
const (
	colPlain    = iota // one field, one cell
	colCheckbox        // one checkbox choice (field___code)
	colComplete        // <form>_complete
	colFile            // a file-upload or signature field: the cell holds the doc_id
	colSurveyTS        // <form>_timestamp of a survey: only with exportSurveyFields
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
	logRename // a record renamed: a data change of the new name
	logFile   // a file uploaded to or deleted from a record's field
	logUser   // a user or role created, updated or deleted
)

// isRecordChange: the entry created or changed a record (what dateRangeBegin
// and logtype=record see).
func (l *logEntry) isRecordChange() bool {
	return l.kind == logData || l.kind == logRename || l.kind == logFile
}

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

	docs      map[int]*doc // stored files by doc_id (store_files.go)
	nextDocID int
	folders   []*repoFolder // File Repository folders

	surveyForms  []survey          // survey-enabled instruments
	surveyQueue  bool              // the project has a survey queue
	surveyIdents map[string]string // record -> participant identifier (redcap_survey_identifier)
	surveyOf     []*survey         // [form]: its survey, derived

	users map[string]*user // by username
	roles []*role          // in creation order

	records map[string]*record
	order   recordOrder // maintained on every change (store_order.go)
	log     []logEntry
}

// survey is one survey-enabled instrument.
type survey = odm.Survey

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
	p.surveyOf = make([]*survey, len(p.forms))
	for i := range p.surveyForms {
		if fi, ok := p.formByName[p.surveyForms[i].Form]; ok && p.surveys {
			p.surveyOf[fi] = &p.surveyForms[i]
		}
	}
	// Dictionary order decides the form order of columns when the
	// instruments list is absent; otherwise the instrument order does.
	// A survey's <form>_timestamp column comes before its first field
	// (after the record ID on the first instrument).
	addTS := func(fi int) error {
		return add(column{name: p.forms[fi].name + "_timestamp", field: -1, form: fi, kind: colSurveyTS})
	}
	for fi := range p.forms {
		if p.surveyOf[fi] != nil && fi > 0 {
			if err := addTS(fi); err != nil {
				return err
			}
		}
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
				kind := colPlain
				if info.FieldType == "file" {
					kind = colFile
				}
				if err := add(column{name: info.FieldName, field: i, form: fi, kind: kind}); err != nil {
					return err
				}
			}
			p.forms[fi].fields = append(p.forms[fi].fields, i)
			if fi == 0 && i == 0 && p.surveyOf[0] != nil {
				if err := addTS(0); err != nil {
					return err
				}
			}
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
	if p.users == nil {
		p.users = map[string]*user{}
	}
	if p.docs == nil {
		p.docs = map[int]*doc{}
	}
	if p.surveyIdents == nil {
		p.surveyIdents = map[string]string{}
	}
	if p.dagSeq == nil {
		p.dagSeq = map[int]int{}
	}
	return nil
}

// dagIndexOf finds a unique DAG name (-1 for "" or unknown). Callers hold p.mu.
func (p *project) dagIndexOf(unique string) int {
	if unique == "" {
		return -1
	}
	if i, ok := p.dagByName[unique]; ok {
		return i
	}
	return -1
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

func (p *project) info() (header []string, vals []string, ints map[string]bool) {
	b := func(v bool) string {
		if v {
			return "1"
		}
		return "0"
	}
	ct := p.created.Format("2006-01-02 15:04:05")
	kv := [][2]string{
		{"project_id", strconv.Itoa(p.id)}, {"project_title", p.title}, {"creation_time", ct},
		{"production_time", ""}, {"in_production", "0"}, {"project_language", "English"},
		{"purpose", strconv.Itoa(p.purpose)}, {"purpose_other", ""}, {"project_notes", ""},
		{"custom_record_label", ""}, {"secondary_unique_field", ""},
		{"is_longitudinal", b(p.longitudinal)}, {"has_repeating_instruments_or_events", b(p.hasRepeat)},
		{"surveys_enabled", b(p.surveys)}, {"scheduling_enabled", "0"},
		{"record_autonumbering_enabled", b(p.autonumber)}, {"randomization_enabled", "0"},
		{"ddp_enabled", "0"}, {"project_irb_number", ""}, {"project_grant_number", ""},
		{"project_pi_firstname", ""}, {"project_pi_lastname", ""}, {"display_today_now_button", "1"},
		{"missing_data_codes", ""}, {"external_modules", ""}, {"bypass_branching_erase_field_prompt", "0"},
	}
	ints = map[string]bool{}
	for _, k := range []string{"project_id", "in_production", "purpose", "is_longitudinal", "has_repeating_instruments_or_events",
		"surveys_enabled", "scheduling_enabled", "record_autonumbering_enabled", "randomization_enabled", "ddp_enabled",
		"display_today_now_button", "bypass_branching_erase_field_prompt"} {
		ints[k] = true
	}
	for _, x := range kv {
		header = append(header, x[0])
		vals = append(vals, x[1])
	}
	return header, vals, ints
}

func (p *project) exportFieldNameRows() []messages.ExportFieldName {
	var out []messages.ExportFieldName
	for fi := range p.forms {
		for _, i := range p.forms[fi].fields {
			info := &p.finfo[i]
			switch info.FieldType {
			case "file", "descriptive":
				continue
			case "checkbox":
				for _, ch := range info.choices {
					out = append(out, messages.ExportFieldName{OriginalFieldName: info.FieldName, ChoiceValue: ch.code, ExportFieldName: checkboxColumn(info.FieldName, ch.code)})
				}
			default:
				out = append(out, messages.ExportFieldName{OriginalFieldName: info.FieldName, ExportFieldName: info.FieldName})
			}
		}
		n := p.forms[fi].name + "_complete"
		out = append(out, messages.ExportFieldName{OriginalFieldName: n, ExportFieldName: n})
	}
	return out
}

func newToken() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return strings.ToUpper(hex.EncodeToString(b))
}

func (p *project) repName(rep int16) string {
	switch {
	case rep == repEvent:
		return "*"
	case rep >= 0:
		return p.forms[rep].name
	}
	return ""
}

func (p *project) repIndex(name string) (int, bool) {
	switch name {
	case "":
		return repNone, true
	case "*":
		return repEvent, true
	}
	f, ok := p.formByName[name]
	return f, ok
}

func (p *project) evIndex(name string) (int, bool) {
	if !p.longitudinal {
		return 0, true
	}
	e, ok := p.eventByName[name]
	return e, ok
}
