package bench

import (
	"fmt"
	"strconv"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/tools/demo"
	"github.com/redcap-relay/relay/services/internal/tools/redcapsim"
)

// The benchmark project has 40 fields: an enrollment form (10 fields,
// identifiers among them, collected at baseline) and a visit form (30
// fields, collected at every event). Classic sites have one event; the
// longitudinal site has three (baseline, month 3, month 6), with follow-up
// dropping off (demo.Generate keeps 100%, 85% and 70% of participants), so
// part of its records hold three rows.
var enrollment = []messages.Field{
	{FieldName: "record_id", FormName: "enrollment", FieldType: "text", FieldLabel: "Record ID"},
	{FieldName: "first_name", FormName: "enrollment", FieldType: "text", FieldLabel: "First name", Identifier: "y"},
	{FieldName: "last_name", FormName: "enrollment", FieldType: "text", FieldLabel: "Last name", Identifier: "y"},
	{FieldName: "dob", FormName: "enrollment", FieldType: "text", FieldLabel: "Date of birth", TextValidationTypeOrShowSlider: "date_ymd"},
	{FieldName: "email", FormName: "enrollment", FieldType: "text", FieldLabel: "E-mail", TextValidationTypeOrShowSlider: "email"},
	{FieldName: "phone", FormName: "enrollment", FieldType: "text", FieldLabel: "Phone", TextValidationTypeOrShowSlider: "phone"},
	{FieldName: "zip", FormName: "enrollment", FieldType: "text", FieldLabel: "ZIP code", TextValidationTypeOrShowSlider: "zipcode"},
	{FieldName: "sex", FormName: "enrollment", FieldType: "radio", FieldLabel: "Sex", SelectChoicesOrCalculations: "1, Female | 2, Male | 3, Other"},
	{FieldName: "age", FormName: "enrollment", FieldType: "text", FieldLabel: "Age", TextValidationTypeOrShowSlider: "integer", TextValidationMin: "18", TextValidationMax: "99"},
	{FieldName: "enroll_date", FormName: "enrollment", FieldType: "text", FieldLabel: "Enrollment date", TextValidationTypeOrShowSlider: "date_ymd"},
}

func visitFields() []messages.Field {
	f := func(name, typ, val, lo, hi, choices string) messages.Field {
		return messages.Field{FieldName: name, FormName: "visit", FieldType: typ, FieldLabel: name,
			TextValidationTypeOrShowSlider: val, TextValidationMin: lo, TextValidationMax: hi, SelectChoicesOrCalculations: choices}
	}
	nrs := "0, 0 | 1, 1 | 2, 2 | 3, 3 | 4, 4 | 5, 5 | 6, 6 | 7, 7 | 8, 8 | 9, 9 | 10, 10"
	likert := "1, Never | 2, Rarely | 3, Sometimes | 4, Often | 5, Always"
	out := []messages.Field{f("visit_date", "text", "date_ymd", "", "", "")}
	for i := 1; i <= 10; i++ {
		out = append(out, f(fmt.Sprintf("pain_%d", i), "radio", "", "", "", nrs))
	}
	for i := 1; i <= 8; i++ {
		out = append(out, f(fmt.Sprintf("sleep_%d", i), "radio", "", "", "", likert))
	}
	out = append(out,
		f("weight", "text", "number", "30", "250", ""),
		f("height", "text", "number", "120", "220", ""),
		f("bp_sys", "text", "integer", "80", "200", ""),
		f("bp_dia", "text", "integer", "40", "130", ""),
		f("mme", "text", "number", "0", "500", ""),
		f("pgic", "radio", "", "", "", "1, Much better | 2, Better | 3, A little better | 4, Same | 5, A little worse | 6, Worse | 7, Much worse"),
		f("taps", "yesno", "", "", "", ""),
		f("phq_1", "radio", "", "", "", "0, No | 1, Some days | 2, Most days | 3, Every day"),
		f("phq_2", "radio", "", "", "", "0, No | 1, Some days | 2, Most days | 3, Every day"),
		f("gad_1", "radio", "", "", "", "0, No | 1, Some days | 2, Most days | 3, Every day"),
		f("comments", "notes", "", "", "", ""),
	)
	return out
}

// Fields is the 40-field site dictionary.
func Fields() []messages.Field {
	return append(append([]messages.Field(nil), enrollment...), visitFields()...)
}

var eventNames = []string{"baseline", "month_3", "month_6"}

// Design returns the site design with 1 or 3 events.
func Design(events int) demo.Design {
	d := demo.Design{Fields: Fields()}
	for i := 0; i < events; i++ {
		u := eventNames[i] + "_arm_1"
		d.Events = append(d.Events, messages.Event{EventName: eventNames[i], ArmNum: 1, UniqueEventName: u, EventID: 100 + i, DayOffset: 90 * i})
		if i == 0 {
			d.FEM = append(d.FEM, messages.FormEvent{ArmNum: 1, UniqueEventName: u, Form: "enrollment"})
		}
		d.FEM = append(d.FEM, messages.FormEvent{ArmNum: 1, UniqueEventName: u, Form: "visit"})
	}
	return d
}

// dropped are the identifiers the policy keeps at the site (comments, free
// text, goes too).
var dropped = map[string]bool{"first_name": true, "last_name": true, "email": true, "phone": true, "comments": true}

// destinationSpec is the coordinating center's project: three events, the
// approved fields without the dropped identifiers, dob and zip as text (year
// of birth and 3-digit ZIP arrive).
func destinationSpec(title string) redcapsim.ProjectSpec {
	d := Design(3)
	var fields []messages.Field
	for _, f := range d.Fields {
		if dropped[f.FieldName] {
			continue
		}
		if f.FieldName == "dob" || f.FieldName == "zip" {
			f.TextValidationTypeOrShowSlider = ""
		}
		fields = append(fields, f)
	}
	return redcapsim.ProjectSpec{Title: title, Fields: fields, Arms: []messages.Arm{{ArmNum: 1, Name: "Arm 1"}}, Events: d.Events, FormEventMapping: d.FEM}
}

// PolicyYAML is the transfer policy every benchmark site uses.
const PolicyYAML = `name: bench
description: benchmark policy; both forms approved, direct identifiers stay at the site
approved:
  forms: [enrollment, visit]
record_id: {mode: namespace}
dates: shift
free_text: drop
rules:
  - fields: [first_name, last_name, email, phone]
    rule: drop
  - field: dob
    rule: year
  - field: zip
    rule: zip3
  - field: age
    rule: cap_age
`

// seed fills a site project with n participants, generated in chunks so
// that the generator never holds a big project's rows at once.
func seed(sim *redcapsim.Server, pid int, d demo.Design, n int, seedValue uint64) error {
	const chunk = 5000
	for from := 0; from < n; from += chunk {
		k := min(chunk, n-from)
		p := demo.Generate(d, k, seedValue*1_000_003+uint64(from))
		for _, r := range p.Rows {
			id, _ := strconv.Atoi(r["record_id"])
			r["record_id"] = strconv.Itoa(from + id)
		}
		if err := sim.ImportRows(pid, p.Rows, false); err != nil {
			return fmt.Errorf("seed project %d (records %d-%d): %w", pid, from+1, from+k, err)
		}
	}
	return nil
}
