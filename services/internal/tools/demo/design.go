package demo

import (
	"fmt"
	"strings"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/protocol"
)

// The enrollment form holds the identifiers a real site collects: the
// transfer policy must keep every one of them at the site (or transform it).
var enrollment = []messages.Field{
	{FieldName: "record_id", FormName: "enrollment", FieldType: "text", FieldLabel: "Record ID"},
	{FieldName: "first_name", FormName: "enrollment", FieldType: "text", FieldLabel: "First name", Identifier: "y"},
	{FieldName: "last_name", FormName: "enrollment", FieldType: "text", FieldLabel: "Last name", Identifier: "y"},
	{FieldName: "dob", FormName: "enrollment", FieldType: "text", FieldLabel: "Date of birth", TextValidationTypeOrShowSlider: "date_ymd"},
	{FieldName: "email", FormName: "enrollment", FieldType: "text", FieldLabel: "E-mail", TextValidationTypeOrShowSlider: "email"},
	{FieldName: "phone", FormName: "enrollment", FieldType: "text", FieldLabel: "Phone", TextValidationTypeOrShowSlider: "phone"},
	{FieldName: "address", FormName: "enrollment", FieldType: "notes", FieldLabel: "Street address"},
	{FieldName: "zip", FormName: "enrollment", FieldType: "text", FieldLabel: "ZIP code", TextValidationTypeOrShowSlider: "zipcode"},
	{FieldName: "enroll_date", FormName: "enrollment", FieldType: "text", FieldLabel: "Date of enrollment", TextValidationTypeOrShowSlider: "date_ymd"},
}

// The opioid dose log repeats: one instance per medication.
var doseLog = []messages.Field{
	{FieldName: "med_name_code", FormName: "opioid_dose_log", FieldType: "dropdown", FieldLabel: "Opioid", SelectChoicesOrCalculations: "1, Oxycodone | 2, Hydrocodone | 3, Morphine | 4, Buprenorphine | 5, Methadone | 6, Tramadol"},
	{FieldName: "med_mme", FormName: "opioid_dose_log", FieldType: "text", FieldLabel: "Daily dose (MME)", TextValidationTypeOrShowSlider: "number", TextValidationMin: "0", TextValidationMax: "500"},
	{FieldName: "med_start", FormName: "opioid_dose_log", FieldType: "text", FieldLabel: "Start date", TextValidationTypeOrShowSlider: "date_ymd"},
}

// baseDesign is the conformant site: the HEAL adult core library exactly as
// the protocol defines it (fields, events, designations), plus an enrollment
// form with identifiers and a repeating opioid dose log.
func baseDesign() (Design, error) {
	p, err := protocol.HEALAdult()
	if err != nil {
		return Design{}, fmt.Errorf("demo: HEAL core library: %w", err)
	}
	snap := protocol.SiteSnapshot(p, "demo")
	d := Design{Events: snap.Events, RepeatForm: "opioid_dose_log"}
	// REDCap's record ID is the first field of the first form: enrollment.
	idField := enrollment[0]
	idField.FieldName = snap.Fields[0].FieldName
	d.Fields = append(d.Fields, idField)
	d.Fields = append(d.Fields, enrollment[1:]...)
	d.Fields = append(d.Fields, snap.Fields[1:]...)
	d.Fields = append(d.Fields, doseLog...)
	d.FEM = append(d.FEM, messages.FormEvent{ArmNum: 1, UniqueEventName: snap.Events[0].UniqueEventName, Form: "enrollment"})
	d.FEM = append(d.FEM, snap.FormEventMapping...)
	for _, ev := range snap.Events {
		d.FEM = append(d.FEM, messages.FormEvent{ArmNum: ev.ArmNum, UniqueEventName: ev.UniqueEventName, Form: "opioid_dose_log"})
	}
	return d, nil
}

// variant derives the deviating sites: "drift" removes one core item and
// recodes a choice list (as a site that edited its copy of the library);
// "partial" stops collecting one instrument at month 6.
func variant(d Design, v string) Design {
	out := Design{Events: d.Events, RepeatForm: d.RepeatForm}
	out.Fields = append([]messages.Field(nil), d.Fields...)
	out.FEM = append([]messages.FormEvent(nil), d.FEM...)
	switch v {
	case "drift":
		// Drop the last item of the first core instrument, recode the first radio.
		core := "peg"
		last := -1
		for i, f := range out.Fields {
			if f.FormName == core {
				last = i
			}
		}
		if last > 0 {
			out.Fields = append(out.Fields[:last], out.Fields[last+1:]...)
		}
		for i, f := range out.Fields {
			if f.FormName != "enrollment" && f.FieldType == "radio" {
				out.Fields[i].SelectChoicesOrCalculations = strings.ReplaceAll(f.SelectChoicesOrCalculations, "0,", "9,")
				break
			}
		}
	case "partial":
		core := "peg"
		var fem []messages.FormEvent
		for _, fe := range out.FEM {
			if fe.Form == core && fe.UniqueEventName == "month_6_arm_1" {
				continue
			}
			fem = append(fem, fe)
		}
		out.FEM = fem
	}
	return out
}

// destinationDesign is what the coordinating center's project holds: the
// approved forms, without the identifiers the policy drops, and ZIP codes as
// 3-digit text.
func destinationDesign(d Design) Project {
	var fields []messages.Field
	for _, f := range d.Fields {
		if f.FormName == "enrollment" && dropped[f.FieldName] {
			continue
		}
		if f.FieldName == "dob" {
			f.TextValidationTypeOrShowSlider = ""
			f.FieldLabel = "Year of birth"
		}
		if f.FieldName == "zip" {
			f.TextValidationTypeOrShowSlider = ""
			f.FieldLabel = "ZIP code (first 3 digits)"
		}
		fields = append(fields, f)
	}
	p := Project{Fields: fields, Events: d.Events, FEM: d.FEM, Arms: []messages.Arm{{ArmNum: 1, Name: "Arm 1"}}}
	for _, e := range d.Events {
		p.Repeating = append(p.Repeating, messages.RepeatingForm{EventName: e.UniqueEventName, FormName: d.RepeatForm})
	}
	return p
}

// dropped are the enrollment identifiers that never leave a site.
var dropped = map[string]bool{"first_name": true, "last_name": true, "email": true, "phone": true, "address": true}

func dagList(names []string) []messages.DAG {
	var out []messages.DAG
	for i, n := range names {
		out = append(out, messages.DAG{Name: n, Unique: n, ID: i + 1})
	}
	return out
}

// policyYAML is the demo IRB policy: every form of the design approved, the
// direct identifiers dropped, dates shifted by a keyed per-participant
// offset, ZIP codes cut to 3 digits, ages of 90 and over capped.
func policyYAML(d Design) string {
	forms := map[string]bool{}
	var list []string
	for _, f := range d.Fields {
		if !forms[f.FormName] {
			forms[f.FormName] = true
			list = append(list, f.FormName)
		}
	}
	var drops []string
	for _, f := range enrollment {
		if dropped[f.FieldName] {
			drops = append(drops, f.FieldName)
		}
	}
	return fmt.Sprintf(`# HEAL core transfer policy (demo). Deny by default: only these forms leave a site.
name: heal-core-demo
description: HEAL adult core instruments; direct identifiers stay at the site.
approved:
  forms: [%s]
record_id: {mode: namespace}
dates: shift            # keyed per-participant shift of 0-364 days, the same on every run
survey_timestamps: shift
free_text: drop         # unvalidated text and notes never leave the site
rules:
  - fields: [%s]
    rule: drop
    note: direct identifiers (HIPAA Safe Harbor)
  - field: dob
    rule: year
    note: HIPAA Safe Harbor keeps the year of birth only
  - field: zip
    rule: zip3
  - field: dem_age
    rule: cap_age
    note: ages of 90 and over are grouped (Safe Harbor)
`, strings.Join(list, ", "), strings.Join(drops, ", "))
}
