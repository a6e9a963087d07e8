package protocol

import (
	"strings"
	"testing"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/policy"
	"github.com/redcap-relay/relay/services/internal/testfixtures"
)

// transform compiles a site policy (its approved forms plus the check's
// suggested rules) and runs one record through it, as the transformer
// and relay dry-run do.
func transform(t *testing.T, meta *messages.MetadataSnapshot, head string, s *Suggestion, row messages.Row) messages.Row {
	t.Helper()
	y := head + s.YAML(nil, nil)
	t.Logf("policy:\n%s", y)
	pol, err := policy.Parse("site.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	c, err := policy.Compile(pol, meta, policy.Options{Site: meta.Site})
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.Apply(messages.RecordExported{V: messages.V, Site: meta.Site, RecordID: "7", Version: 1, Rows: []messages.Row{row}})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Rows) != 1 {
		t.Fatalf("rows: %v", out.Rows)
	}
	return out.Rows[0]
}

// The PHQ-8 export as a site project: relay check --suggest-policy's rules,
// pasted into the site's policy, make the transfer write the library's
// names (the items and the form status).
func TestSuggestedRenamesHarmonisePHQ8(t *testing.T) {
	p := heal(t)
	fields, err := ParseDictionary(strings.NewReader(testfixtures.PHQ8Export))
	if err != nil {
		t.Fatal(err)
	}
	id := messages.Field{FieldName: "record_id", FormName: "phq8_s1_r1_e1", FieldType: "text", FieldLabel: "Record ID"}
	meta := &messages.MetadataSnapshot{V: messages.V, Site: "fiu", Fields: append([]messages.Field{id}, fields...)}
	meta.Instruments = InstrumentsOf(meta.Fields)
	meta.ComputeHash()
	r := CheckWith(p, "fiu", meta, nil, Options{EventsUnknown: true})
	s := Suggest(r)
	if len(s.Renames) != 9 || len(s.Notes) != 0 {
		t.Fatalf("suggestion: %+v", s)
	}
	row := messages.Row{"record_id": "7", "phq8_s1_r1_e1_complete": "2"}
	for site := range phq8Names {
		row[site] = "2"
	}
	got := transform(t, meta, "name: fiu\napproved:\n  forms: [phq8_s1_r1_e1]\n", s, row)
	for site, lib := range phq8Names {
		if got[lib] != "2" {
			t.Errorf("%s: destination has %q under %s", site, got[lib], lib)
		}
		if _, ok := got[site]; ok {
			t.Errorf("the site's name %s reached the destination", site)
		}
	}
	if got["phq8_complete"] != "2" {
		t.Errorf("form status: %v", got)
	}
}

// Answer codes that differ from the library's under the same labels are
// recoded by the suggested rules.
func TestSuggestedRecodeHarmonises(t *testing.T) {
	p := heal(t)
	m := SiteSnapshot(p, "s")
	for i := range m.Fields {
		if m.Fields[i].FieldName == "dem_sex" {
			m.Fields[i].SelectChoicesOrCalculations = "2, Male | 1, Female | 3, Intersex | 9, Prefer not to answer"
		}
		if m.Fields[i].FieldName == "opioid_any" {
			m.Fields[i].FieldType, m.Fields[i].SelectChoicesOrCalculations = "radio", "1, Yes | 2, No"
		}
	}
	r := Check(p, "s", m, nil)
	s := Suggest(r)
	if recodeString(s.Recodes["dem_sex"]) != "1 → 2, 2 → 1, 9 → 98" || recodeString(s.Recodes["opioid_any"]) != "2 → 0" {
		t.Fatalf("recodes %v", s.Recodes)
	}
	head := "name: s\napproved:\n  forms: [demographics, opioid_mme]\nrules:\n  - field: dem_age\n    rule: cap_age\n"
	got := transform(t, m, head, s, messages.Row{"record_id": "7", "redcap_event_name": "baseline_arm_1", "dem_sex": "2", "opioid_any": "2", "dem_age": "40"})
	if got["dem_sex"] != "1" || got["opioid_any"] != "0" {
		t.Errorf("recoded row: %v", got)
	}
}

// Suggestions merge with the site's own policy: its rules are kept, and a
// contradicting one is a note, not a silent change.
func TestSuggestionYAMLMergesExistingRules(t *testing.T) {
	s := &Suggestion{Site: "s", Protocol: "p 1", Renames: []Rename{{From: "a1", To: "phq_interest", Why: "x"}, {From: "b2", To: "phq_down", Why: "y"}},
		Recodes: map[string]map[string]string{"dem_sex": {"3": "9"}}}
	y := s.YAML(map[string]string{"record_id": "participant_id", "b2": "mood_down"}, map[string]map[string]string{"dem_sex": {"4": "9"}})
	for _, want := range []string{"record_id: participant_id", "a1: phq_interest", "b2: mood_down", "note: the policy renames b2 to mood_down; the library's name is phq_down",
		`dem_sex: {"4": "9"}`, "note: the policy already recodes dem_sex"} {
		if !strings.Contains(y, want) {
			t.Errorf("YAML lacks %q:\n%s", want, y)
		}
	}
	if _, err := policy.Parse("x.yaml", []byte("name: x\napproved:\n  forms: [f]\n"+y)); err != nil {
		t.Errorf("the merged rules do not parse: %v", err)
	}
}
