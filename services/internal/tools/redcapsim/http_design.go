package redcapsim

import (
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/redcap-relay/relay/messages"
)

var metadataHeader = []string{"field_name", "form_name", "section_header", "field_type", "field_label",
	"select_choices_or_calculations", "field_note", "text_validation_type_or_show_slider_number",
	"text_validation_min", "text_validation_max", "identifier", "branching_logic", "required_field",
	"custom_alignment", "question_number", "matrix_group_name", "matrix_ranking", "field_annotation"}

func fieldRow(f messages.Field) []string {
	return []string{f.FieldName, f.FormName, f.SectionHeader, f.FieldType, f.FieldLabel,
		f.SelectChoicesOrCalculations, f.FieldNote, f.TextValidationTypeOrShowSlider,
		f.TextValidationMin, f.TextValidationMax, f.Identifier, f.BranchingLogic, f.RequiredField,
		f.CustomAlignment, f.QuestionNumber, f.MatrixGroupName, f.MatrixRanking, f.FieldAnnotation}
}

func fieldFromRow(r map[string]string) messages.Field {
	return messages.Field{
		FieldName: strings.TrimSpace(r["field_name"]), FormName: strings.TrimSpace(r["form_name"]),
		SectionHeader: r["section_header"], FieldType: strings.TrimSpace(r["field_type"]),
		FieldLabel: r["field_label"], SelectChoicesOrCalculations: r["select_choices_or_calculations"],
		FieldNote: r["field_note"], TextValidationTypeOrShowSlider: strings.TrimSpace(r["text_validation_type_or_show_slider_number"]),
		TextValidationMin: r["text_validation_min"], TextValidationMax: r["text_validation_max"],
		Identifier: r["identifier"], BranchingLogic: r["branching_logic"], RequiredField: r["required_field"],
		CustomAlignment: r["custom_alignment"], QuestionNumber: r["question_number"],
		MatrixGroupName: r["matrix_group_name"], MatrixRanking: r["matrix_ranking"], FieldAnnotation: r["field_annotation"],
	}
}

func (c *call) exportMetadata(w http.ResponseWriter) error {
	p := c.proj
	p.mu.RLock()
	defer p.mu.RUnlock()
	fields := c.p.array("fields", true)
	forms := c.p.array("forms", true)
	var bad []string
	wantF := map[string]bool{}
	for _, f := range fields {
		if _, ok := p.fieldByName[f]; !ok {
			bad = append(bad, f)
		}
		wantF[f] = true
	}
	if len(bad) > 0 {
		return errorf(400, `The following values in the parameter "fields" are not valid: `+quoteList(bad))
	}
	wantForm := map[string]bool{}
	for _, f := range forms {
		if !p.isForm(f) {
			bad = append(bad, f)
		}
		wantForm[f] = true
	}
	if len(bad) > 0 {
		return errorf(400, `The following values in the parameter "forms" are not valid: `+quoteList(bad))
	}
	t := &table{header: metadataHeader}
	for _, f := range p.fields {
		if (len(fields) > 0 || len(forms) > 0) && !wantF[f.FieldName] && !wantForm[f.FormName] {
			continue
		}
		t.rows = append(t.rows, fieldRow(f))
	}
	t.write(w, c.p.format())
	return nil
}

func (c *call) importMetadata(w http.ResponseWriter) error {
	rows, err := c.parseDesign()
	if err != nil {
		return err
	}
	fields := make([]messages.Field, 0, len(rows))
	for _, r := range rows {
		fields = append(fields, fieldFromRow(r))
	}
	p := c.proj
	p.mu.Lock()
	defer p.mu.Unlock()
	err = c.s.redesign(p, func(q *project) {
		q.fields = fields
		// Keep the labels of forms that still exist, add new forms.
		labels := map[string]string{}
		for _, in := range q.instruments {
			labels[in.InstrumentName] = in.InstrumentLabel
		}
		q.instruments = nil
		seen := map[string]bool{}
		for _, f := range fields {
			if !seen[f.FormName] {
				seen[f.FormName] = true
				l := labels[f.FormName]
				if l == "" {
					l = f.FormName
				}
				q.instruments = append(q.instruments, messages.Instrument{InstrumentName: f.FormName, InstrumentLabel: l})
			}
		}
		var fem []messages.FormEvent
		for _, m := range q.fem {
			if seen[m.Form] {
				fem = append(fem, m)
			}
		}
		q.fem = fem
		var rep []messages.RepeatingForm
		for _, r := range q.repeating {
			if r.FormName == "" || seen[r.FormName] {
				rep = append(rep, r)
			}
		}
		q.repeating = rep
	})
	if err != nil {
		return err
	}
	writeCount(w, c.rf, len(fields))
	return nil
}

// parseDesign decodes a design import's data (json, csv or xml) as rows.
// JSON objects nested in a user's or role's "forms" come through as
// "f1:1,f2:0", as in CSV.
func (c *call) parseDesign() ([]map[string]string, error) {
	data := c.p.str("data")
	if c.p.format() == "json" {
		data = flattenFormObjects(data)
	}
	rows, notArray, err := parseData(data, c.p.format(), "flat", c.p.csvDelimiter())
	if err != nil {
		return nil, err
	}
	if notArray {
		return nil, errorf(400, "The data being imported is not formatted correctly. The JSON must be in an array, as in [{ ... }].")
	}
	out := make([]map[string]string, len(rows))
	for i, r := range rows {
		out[i] = r
	}
	return out, nil
}

func (c *call) exportInstruments(w http.ResponseWriter) error {
	p := c.proj
	p.mu.RLock()
	defer p.mu.RUnlock()
	t := &table{header: []string{"instrument_name", "instrument_label"}}
	for _, in := range p.instruments {
		t.rows = append(t.rows, []string{in.InstrumentName, in.InstrumentLabel})
	}
	t.write(w, c.p.format())
	return nil
}

func (c *call) armFilter() (map[int]bool, error) {
	arms := c.p.array("arms", false)
	if len(arms) == 0 {
		return nil, nil
	}
	out := map[int]bool{}
	for _, a := range arms {
		n, err := strconv.Atoi(a)
		if err != nil {
			return nil, errorf(400, `The following values in the parameter "arms" are not valid: `+quoteList([]string{a}))
		}
		out[n] = true
	}
	return out, nil
}

func (c *call) exportDesign(w http.ResponseWriter, content string) error {
	p := c.proj
	p.mu.RLock()
	defer p.mu.RUnlock()
	if !p.longitudinal {
		what := map[string]string{"arm": "arms", "event": "events", "formEventMapping": "form/event mappings"}[content]
		return errorf(400, "You cannot export "+what+" for classic projects")
	}
	arms, err := c.armFilter()
	if err != nil {
		return err
	}
	in := func(n int) bool { return arms == nil || arms[n] }
	var t *table
	switch content {
	case "arm":
		t = &table{header: []string{"arm_num", "name"}, ints: map[string]bool{"arm_num": true}}
		used := map[int]bool{}
		for _, e := range p.events {
			used[e.ArmNum] = true
		}
		for _, a := range p.arms {
			if in(a.ArmNum) && used[a.ArmNum] {
				t.rows = append(t.rows, []string{strconv.Itoa(a.ArmNum), a.Name})
			}
		}
	case "event":
		t = &table{header: []string{"event_name", "arm_num", "unique_event_name", "custom_event_label", "event_id"},
			ints: map[string]bool{"arm_num": true, "event_id": true}}
		for _, e := range p.events {
			if in(e.ArmNum) {
				t.rows = append(t.rows, []string{e.EventName, strconv.Itoa(e.ArmNum), e.UniqueEventName, e.CustomEventLabel, strconv.Itoa(e.EventID)})
			}
		}
	default:
		t = &table{header: []string{"arm_num", "unique_event_name", "form"}, ints: map[string]bool{"arm_num": true}}
		for ei, e := range p.events {
			if !in(e.ArmNum) {
				continue
			}
			for fi, f := range p.forms {
				if p.designated[ei][fi] {
					t.rows = append(t.rows, []string{strconv.Itoa(e.ArmNum), e.UniqueEventName, f.name})
				}
			}
		}
	}
	t.write(w, c.p.format())
	return nil
}

func atoiDefault(s string, def int) int {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return def
	}
	return n
}

func (c *call) importDesign(w http.ResponseWriter, content string) error {
	p := c.proj
	var rows []map[string]string
	if c.action == "import" {
		var err error
		if rows, err = c.parseDesign(); err != nil {
			return err
		}
	}
	override := c.p.boolean("override")
	p.mu.Lock()
	defer p.mu.Unlock()
	if content == "formEventMapping" {
		for _, r := range rows {
			if _, ok := p.eventByName[r["unique_event_name"]]; !ok || !p.longitudinal {
				return errorf(400, "The unique event name '"+r["unique_event_name"]+"' is not valid for this project. No mappings were imported.")
			}
			if !p.isForm(r["form"]) {
				return errorf(400, "The form '"+r["form"]+"' is not valid for this project. No mappings were imported.")
			}
		}
	}
	n := len(rows)
	err := c.s.redesign(p, func(q *project) {
		switch {
		case c.action == "delete" && content == "arm":
			del := map[int]bool{}
			for _, a := range c.p.array("arms", false) {
				del[atoiDefault(a, -1)] = true
			}
			n = len(del)
			q.arms = filter(q.arms, func(a messages.Arm) bool { return !del[a.ArmNum] })
			q.events = filter(q.events, func(e messages.Event) bool { return !del[e.ArmNum] })
		case c.action == "delete" && content == "event":
			del := map[string]bool{}
			for _, e := range c.p.array("events", true) {
				del[e] = true
			}
			n = len(del)
			q.events = filter(q.events, func(e messages.Event) bool { return !del[e.UniqueEventName] })
		case content == "arm":
			if override {
				q.arms = nil
			}
			for _, r := range rows {
				a := messages.Arm{ArmNum: atoiDefault(r["arm_num"], 0), Name: r["name"]}
				replaced := false
				for i := range q.arms {
					if q.arms[i].ArmNum == a.ArmNum {
						q.arms[i], replaced = a, true
					}
				}
				if !replaced {
					q.arms = append(q.arms, a)
				}
			}
			sort.SliceStable(q.arms, func(i, j int) bool { return q.arms[i].ArmNum < q.arms[j].ArmNum })
			keep := map[int]bool{}
			for _, a := range q.arms {
				keep[a.ArmNum] = true
			}
			q.events = filter(q.events, func(e messages.Event) bool { return keep[e.ArmNum] })
		case content == "event":
			if override {
				q.events = nil
			}
			for _, r := range rows {
				e := messages.Event{EventName: r["event_name"], ArmNum: atoiDefault(r["arm_num"], 1), UniqueEventName: r["unique_event_name"],
					CustomEventLabel: r["custom_event_label"], DayOffset: atoiDefault(r["day_offset"], 0),
					OffsetMin: atoiDefault(r["offset_min"], 0), OffsetMax: atoiDefault(r["offset_max"], 0)}
				replaced := false
				for i := range q.events {
					if e.UniqueEventName != "" && q.events[i].UniqueEventName == e.UniqueEventName {
						e.EventID = q.events[i].EventID
						q.events[i], replaced = e, true
					}
				}
				if !replaced {
					q.events = append(q.events, e)
				}
			}
			sort.SliceStable(q.events, func(i, j int) bool { return q.events[i].ArmNum < q.events[j].ArmNum })
		default: // formEventMapping: what is sent replaces the whole mapping, every arm
			q.fem = nil
			for _, r := range rows {
				q.fem = append(q.fem, messages.FormEvent{ArmNum: atoiDefault(r["arm_num"], 1), UniqueEventName: r["unique_event_name"], Form: r["form"]})
			}
		}
		// Drop mappings and repeats of events that no longer exist.
		evs := map[string]bool{}
		for _, e := range q.events {
			evs[e.UniqueEventName] = true
		}
		q.fem = filter(q.fem, func(m messages.FormEvent) bool { return evs[m.UniqueEventName] })
		if len(q.events) > 0 {
			q.repeating = filter(q.repeating, func(r messages.RepeatingForm) bool { return evs[r.EventName] })
		}
	})
	if err != nil {
		return err
	}
	writeCount(w, c.rf, n)
	return nil
}

func filter[T any](in []T, keep func(T) bool) []T {
	out := in[:0:0]
	for _, v := range in {
		if keep(v) {
			out = append(out, v)
		}
	}
	return out
}

func (c *call) exportRepeating(w http.ResponseWriter) error {
	p := c.proj
	p.mu.RLock()
	defer p.mu.RUnlock()
	t := &table{header: []string{"form_name", "custom_form_label"}}
	if p.longitudinal {
		t.header = []string{"event_name", "form_name", "custom_form_label"}
	}
	for _, r := range p.repeating {
		if p.longitudinal {
			t.rows = append(t.rows, []string{r.EventName, r.FormName, r.CustomFormLabel})
		} else {
			t.rows = append(t.rows, []string{r.FormName, r.CustomFormLabel})
		}
	}
	t.write(w, c.p.format())
	return nil
}

func (c *call) importRepeating(w http.ResponseWriter) error {
	rows, err := c.parseDesign()
	if err != nil {
		return err
	}
	p := c.proj
	p.mu.Lock()
	defer p.mu.Unlock()
	err = c.s.redesign(p, func(q *project) {
		q.repeating = nil
		for _, r := range rows {
			q.repeating = append(q.repeating, messages.RepeatingForm{EventName: r["event_name"], FormName: r["form_name"], CustomFormLabel: r["custom_form_label"]})
		}
	})
	if err != nil {
		return err
	}
	writeCount(w, c.rf, len(rows))
	return nil
}

func (c *call) exportDAGs(w http.ResponseWriter) error {
	p := c.proj
	p.mu.RLock()
	defer p.mu.RUnlock()
	t := &table{header: []string{"data_access_group_name", "unique_group_name", "data_access_group_id"}, ints: map[string]bool{"data_access_group_id": true}}
	for _, d := range p.dags {
		t.rows = append(t.rows, []string{d.Name, d.Unique, strconv.Itoa(d.ID)})
	}
	t.write(w, c.p.format())
	return nil
}

func (c *call) importDAGs(w http.ResponseWriter) error {
	p := c.proj
	var rows []map[string]string
	if c.action == "import" {
		var err error
		if rows, err = c.parseDesign(); err != nil {
			return err
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	err := c.s.redesign(p, func(q *project) {
		if c.action == "delete" {
			del := map[string]bool{}
			for _, d := range c.p.array("dags", false) {
				del[d] = true
			}
			n = len(del)
			q.dags = filter(q.dags, func(d messages.DAG) bool { return !del[d.Unique] })
			return
		}
		for _, r := range rows {
			n++
			name, uniq := r["data_access_group_name"], r["unique_group_name"]
			found := false
			for i := range q.dags {
				if uniq != "" && q.dags[i].Unique == uniq {
					q.dags[i].Name, found = name, true
				}
			}
			if !found {
				q.dags = append(q.dags, messages.DAG{Name: name})
			}
		}
	})
	if err != nil {
		return err
	}
	writeCount(w, c.rf, n)
	return nil
}

func (c *call) exportProjectInfo(w http.ResponseWriter) error {
	p := c.proj
	p.mu.RLock()
	h, v, ints := p.info()
	p.mu.RUnlock()
	switch c.p.format() {
	case "json":
		buf := []byte{'{'}
		for i := range h {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = appendJSONString(buf, h[i])
			buf = append(buf, ':')
			if ints[h[i]] {
				buf = append(buf, v[i]...)
			} else {
				buf = appendJSONString(buf, v[i])
			}
		}
		buf = append(buf, '}')
		writeBody(w, "json", string(buf))
	case "csv":
		writeBody(w, "csv", csvTable(h, [][]string{v}))
	default:
		var b strings.Builder
		b.WriteString(xmlHeader + "<item>")
		for i := range h {
			b.WriteString("<" + h[i] + ">" + xmlEscape(v[i]) + "</" + h[i] + ">")
		}
		b.WriteString("</item>")
		writeBody(w, "xml", b.String())
	}
	return nil
}

func (c *call) importProjectInfo(w http.ResponseWriter) error {
	rows, err := c.parseDesign()
	if err != nil {
		return err
	}
	p := c.proj
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, r := range rows {
		for k, v := range r {
			switch k {
			case "project_title":
				p.title, n = v, n+1
			case "purpose":
				p.purpose, n = atoiDefault(v, p.purpose), n+1
			case "surveys_enabled":
				p.surveys, n = v == "1", n+1
			case "record_autonumbering_enabled":
				p.autonumber, n = v == "1", n+1
			}
		}
	}
	if err := c.s.snapshotLocked(p); err != nil {
		return err
	}
	writeBody(w, "csv", strconv.Itoa(n))
	return nil
}

func (c *call) exportFieldNames(w http.ResponseWriter) error {
	p := c.proj
	p.mu.RLock()
	defer p.mu.RUnlock()
	only := c.p.str("field")
	if only != "" {
		if _, ok := p.fieldByName[only]; !ok {
			return errorf(400, `The following values in the parameter "field" are not valid: '`+only+`'`)
		}
	}
	t := &table{header: []string{"original_field_name", "choice_value", "export_field_name"}}
	for _, r := range p.exportFieldNameRows() {
		if only == "" || r.OriginalFieldName == only {
			t.rows = append(t.rows, []string{r.OriginalFieldName, r.ChoiceValue, r.ExportFieldName})
		}
	}
	t.write(w, c.p.format())
	return nil
}
