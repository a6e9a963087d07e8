package vlmd

import (
	"bytes"
	"os"
	"strings"
	"testing"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/protocol"
)

func byName(fs []Field) map[string]Field {
	m := map[string]Field{}
	for _, f := range fs {
		m[f.Name] = f
	}
	return m
}

// REDCap's validation-suite project (every field type and validation) maps
// to a dictionary HEAL's schemas accept, in both forms.
func TestREDCapValidationProjectMapsToAValidDictionary(t *testing.T) {
	f, err := os.Open("testdata/cde/Project1xml_DataDictionary.csv")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dict, err := protocol.ParseDictionary(f)
	if err != nil {
		t.Fatal(err)
	}
	fields, warns := FromREDCap(dict, protocol.InstrumentsOf(dict))
	got := byName(fields)
	v := validator(t)
	var js bytes.Buffer
	if err := (&Dictionary{Title: "validation project", SchemaVersion: SchemaVersion, Fields: fields}).WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	if vs, err := v.JSON(bytes.NewReader(js.Bytes())); err != nil || len(vs) > 0 {
		t.Fatalf("JSON dictionary invalid: %v %v", err, vs)
	}
	var cs bytes.Buffer
	if err := WriteCSV(&cs, fields); err != nil {
		t.Fatal(err)
	}
	if vs, err := v.CSV(bytes.NewReader(cs.Bytes())); err != nil || len(vs) > 0 {
		t.Fatalf("CSV dictionary invalid: %v %v\n%s", err, vs, cs.String())
	}
	// Every non-descriptive field is there (checkboxes per choice), every
	// form has its _complete, descriptive fields are not.
	for _, d := range dict {
		switch d.FieldType {
		case "descriptive":
			if _, ok := got[d.FieldName]; ok {
				t.Errorf("descriptive field %s must be dropped", d.FieldName)
			}
		case "checkbox":
			for _, c := range strings.Split(d.SelectChoicesOrCalculations, "|") {
				code, _, _ := strings.Cut(c, ",")
				if _, ok := got[d.FieldName+"___"+CheckboxSuffix(strings.TrimSpace(code))]; !ok {
					t.Errorf("checkbox %s has no column for code %s", d.FieldName, code)
				}
			}
		default:
			if _, ok := got[d.FieldName]; !ok {
				t.Errorf("field %s (%s) is missing", d.FieldName, d.FieldType)
			}
		}
		if _, ok := got[d.FormName+"_complete"]; !ok {
			t.Errorf("form %s has no _complete field", d.FormName)
		}
	}
	want := map[string]struct{ typ, format, pattern string }{
		"email": {"string", "email", ""}, "integer": {"integer", "", ""}, "number": {"number", "", ""},
		"date_ymd": {"date", "%Y-%m-%d", ""}, "datetime_mdy_hmss": {"datetime", "%Y-%m-%d %H:%M:%S", ""},
		"ssn": {"string", "", `^[0-9]{3}-[0-9]{2}-[0-9]{4}$`}, "zipcode_us": {"string", "", `^[0-9]{5}(-[0-9]{4})?$`},
		"time_hhmmss": {"time", "%H:%M:%S", ""}, "notesbox": {"string", "", ""}, "calculated_field": {"number", "", ""},
		"radio": {"string", "", ""}, "multiple_dropdown_auto": {"integer", "", ""},
	}
	for name, w := range want {
		g, ok := got[name]
		if !ok {
			t.Errorf("field %s missing", name)
			continue
		}
		pattern := ""
		if g.Constraints != nil {
			pattern = g.Constraints.Pattern
		}
		if g.Type != w.typ || g.Format != w.format || pattern != w.pattern {
			t.Errorf("field %s: got type %q format %q pattern %q, want %+v", name, g.Type, g.Format, pattern, w)
		}
	}
	if c := got["calculated_field"]; !strings.Contains(c.Description, "[Calculation: ") {
		t.Errorf("a calc field's description carries its calculation: %q", c.Description)
	}
	if len(warns) != 0 {
		t.Errorf("every type and validation of REDCap's suite has a mapping, got warnings: %v", warns)
	}
}

func TestFieldMapping(t *testing.T) {
	dict := []messages.Field{
		{FieldName: "record_id", FormName: "intake", FieldType: "text", FieldLabel: "ID"},
		{FieldName: "age", FormName: "intake", FieldType: "text", FieldLabel: "<b>Age</b> in years", SectionHeader: "<h3>About you</h3>",
			TextValidationTypeOrShowSlider: "integer", TextValidationMin: "18", TextValidationMax: "120", RequiredField: "y"},
		{FieldName: "weight", FormName: "intake", FieldType: "text", FieldLabel: "Weight", TextValidationTypeOrShowSlider: "number_1dp", TextValidationMin: "0.5", TextValidationMax: "300"},
		{FieldName: "visit", FormName: "intake", FieldType: "text", FieldLabel: "Visit", TextValidationTypeOrShowSlider: "date_mdy", TextValidationMin: "2020-01-01"},
		{FieldName: "code", FormName: "intake", FieldType: "text", FieldLabel: "Code", FieldAnnotation: "@HIDDEN @CHARLIMIT='12'"},
		{FieldName: "race", FormName: "intake", FieldType: "checkbox", FieldLabel: "Race", SelectChoicesOrCalculations: "1, White | -2, Other | 98, Prefer not to answer"},
		{FieldName: "smoke", FormName: "intake", FieldType: "yesno", FieldLabel: "Smoker?"},
		{FieldName: "pain", FormName: "intake", FieldType: "slider", FieldLabel: "Pain", SelectChoicesOrCalculations: "None | Some | Worst"},
		{FieldName: "info", FormName: "intake", FieldType: "descriptive", FieldLabel: "Thank you"},
		{FieldName: "mood", FormName: "follow", FieldType: "radio", FieldLabel: "Mood", SelectChoicesOrCalculations: "1, Low | 2, High"},
		{FieldName: "custom", FormName: "follow", FieldType: "text", FieldLabel: "Custom", TextValidationTypeOrShowSlider: "my_regex"},
		{FieldName: "weird", FormName: "follow", FieldType: "hologram", FieldLabel: "Weird"},
	}
	fields, warns := FromREDCap(dict, []messages.Instrument{{InstrumentName: "intake", InstrumentLabel: "Intake"}})
	var names []string
	for _, f := range fields {
		names = append(names, f.Name)
	}
	wantNames := "record_id age weight visit code race___1 race____2 race___98 smoke pain intake_complete mood custom weird follow_complete"
	if strings.Join(names, " ") != wantNames {
		t.Fatalf("columns in export order:\n got %s\nwant %s", strings.Join(names, " "), wantNames)
	}
	m := byName(fields)
	age := m["age"]
	if age.Description != "About you: Age in years" || age.Title != "Age in years" || age.Section != "intake" {
		t.Errorf("HTML stripped, section header carried into the description: %+v", age)
	}
	if c := age.Constraints; c == nil || !c.Required || *c.Minimum != 18 || *c.Maximum != 120 {
		t.Errorf("integer range and required in constraints: %+v", age.Constraints)
	}
	if d := m["weight"].Description; d != "About you: Weight" {
		t.Errorf("section header carried down the form: %q", d)
	}
	w := m["weight"]
	if lo, _ := w.Custom.Get("minimum"); lo != "0.5" || w.Constraints.Minimum != nil || *w.Constraints.Maximum != 300 {
		t.Errorf("a decimal bound goes to custom, a whole one to constraints: %+v %+v", w.Custom, w.Constraints)
	}
	if lo, _ := m["visit"].Custom.Get("minimum"); lo != "2020-01-01" || m["visit"].Type != "date" {
		t.Errorf("a date bound goes to custom: %+v", m["visit"])
	}
	if c := m["code"].Constraints; c == nil || c.MaxLength == nil || *c.MaxLength != 12 {
		t.Errorf("@CHARLIMIT is maxLength: %+v", m["code"].Constraints)
	}
	r := m["race____2"]
	if r.Type != "boolean" || strings.Join(r.Constraints.Enum, ",") != "0,1" || r.Title != "Race: Other" || r.Description != "About you: Race [Other]" {
		t.Errorf("checkbox choice: %+v", r)
	}
	if s := m["smoke"]; s.Type != "boolean" || s.EnumLabels[1] != (Pair{"1", "Yes"}) {
		t.Errorf("yesno: %+v", s)
	}
	if p := m["pain"]; p.Type != "integer" || *p.Constraints.Minimum != 0 || *p.Constraints.Maximum != 100 || p.EnumLabels[1] != (Pair{"50", "Some"}) {
		t.Errorf("slider: %+v", p)
	}
	if mo := m["mood"]; mo.Type != "integer" || mo.Description != "Mood" || len(mo.EnumLabels) != 2 {
		t.Errorf("radio in a new form, no section header carried over: %+v", mo)
	}
	if c := m["follow_complete"]; c.Title != "follow complete?" || c.Type != "integer" {
		t.Errorf("a form without a label: %+v", c)
	}
	got := map[string]string{}
	for _, w := range warns {
		got[w.Field] = w.String()
	}
	if !strings.Contains(got["custom"], `text validation "my_regex" has no VLMD mapping`) || !strings.Contains(got["weird"], `REDCap field type "hologram" has no VLMD mapping`) || len(warns) != 2 {
		t.Errorf("warnings name the field and say what was done: %v", warns)
	}
	if m["weird"].Type != "any" {
		t.Errorf("an unknown type is typed any: %+v", m["weird"])
	}
}
