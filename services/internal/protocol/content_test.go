package protocol

import (
	"strings"
	"testing"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/testfixtures"
)

var phq8Names = map[string]string{
	"phq8_i1_s1_r1_e1": "phq_interest", "phq8_i2_s1_r1_e1": "phq_down", "phq8_i3_s1_r1_e1": "phq_sleep",
	"phq8_i4_s1_r1_e1": "phq_tired", "phq8_i5_s1_r1_e1": "phq_appetite", "phq8_i6_s1_r1_e1": "phq_failure",
	"phq8_i7_s1_r1_e1": "phq_concentr", "phq8_i8_s1_r1_e1": "phq_slow",
}

func heal(t testing.TB) *Protocol {
	t.Helper()
	p, err := HEALAdult()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// phq8Site is a conformant HEAL site whose PHQ-2 is the exported PHQ-8
// form instead, designated at the planned events.
func phq8Site(t testing.TB, p *Protocol) *messages.MetadataSnapshot {
	t.Helper()
	fields, err := ParseDictionary(strings.NewReader(testfixtures.PHQ8Export))
	if err != nil {
		t.Fatal(err)
	}
	m := SiteSnapshot(p, "phq8-site")
	var keep []messages.Field
	for _, f := range m.Fields {
		if f.FormName == "phq2" {
			continue
		}
		keep = append(keep, f)
	}
	m.Fields = append(keep, fields...)
	for i := range m.Instruments {
		if m.Instruments[i].InstrumentName == "phq2" {
			m.Instruments[i] = InstrumentsOf(fields)[0] // labelled like its form, as a dictionary alone gives it
		}
	}
	for i := range m.FormEventMapping {
		if m.FormEventMapping[i].Form == "phq2" {
			m.FormEventMapping[i].Form = "phq8_s1_r1_e1"
		}
	}
	m.ComputeHash()
	return m
}

func kinds(r *Report) map[string]int {
	out := map[string]int{}
	for _, f := range r.Findings {
		out[f.Kind]++
	}
	return out
}

// The real PHQ-8 export as a site: found as PHQ-2's allowed substitute by
// content, every item renamed to the library's name, nothing else wrong.
func TestPHQ8ExportFoundByContent(t *testing.T) {
	p := heal(t)
	r := Check(p, "phq8-site", phq8Site(t, p), nil)
	in := instrument(r, "phq2")
	if in.Status != messages.InstrumentSubstituted || in.Substitute != "phq8" || in.MatchedBy != "content" || in.Form != "phq8_s1_r1_e1" ||
		in.FieldsOK != 8 || in.FieldsExpected != 8 || len(in.EventsMapped) != 4 {
		t.Fatalf("phq2: %+v", in)
	}
	renamed := findings(r, KindFieldRenamed)
	if len(renamed) != 8 {
		t.Fatalf("%d renamed: %+v", len(renamed), renamed)
	}
	for _, f := range renamed {
		if phq8Names[f.SiteField] != f.Field || f.Match == nil || f.Match.By != "content" || f.Match.Score < 0.99 {
			t.Errorf("rename %s -> %s (%+v)", f.SiteField, f.Field, f.Match)
		}
	}
	want := map[string]int{KindFieldRenamed: 8, KindSubstituted: 1, KindMatchedByFields: 1}
	if got := kinds(r); !equalCounts(got, want) {
		t.Errorf("findings %v, want %v", got, want)
	}
	if r.Status != messages.ProtocolConformant || *r.Score != 100 {
		t.Errorf("status %s score %v", r.Status, *r.Score)
	}
	// Labelled "PHQ-8" in the project, the form is found by that alias
	// (HEAL's CRF table); its items are still found by content.
	m := phq8Site(t, p)
	for i := range m.Instruments {
		if m.Instruments[i].InstrumentName == "phq8_s1_r1_e1" {
			m.Instruments[i].InstrumentLabel = "PHQ-8"
		}
	}
	r = Check(p, "phq8-site", m, nil)
	if in := instrument(r, "phq2"); in.MatchedBy != "alias" || in.Substitute != "phq8" || in.FieldsOK != 8 || len(findings(r, KindFieldRenamed)) != 8 {
		t.Errorf("labelled PHQ-8: %+v", in)
	}
}

func equalCounts(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// Wording is compared without case, HTML, punctuation, spacing and item
// numbering.
func TestNormWording(t *testing.T) {
	for in, want := range map[string]string{
		"<b>1.</b> Little interest or pleasure in doing things?": "little interest or pleasure in doing things",
		"Q2: Feeling down,&nbsp;depressed, or hopeless":          "feeling down depressed or hopeless",
		"PFA11: household chores":                                "household chores",
		"PCS item 1: worry whether pain will end":                "worry whether pain will end",
		"(3) Trouble   relaxing":                                 "trouble relaxing",
		"a) Trouble relaxing":                                    "trouble relaxing",
		"Sleep109: sleep quality, past 7 days":                   "sleep quality past 7 days",
		"3 months: pain":                                         "3 months pain",
		"Age in years":                                           "age in years",
		"12":                                                     "12",
	} {
		if got := normWording(in); got != want {
			t.Errorf("normWording(%q) = %q, want %q", in, got, want)
		}
	}
}

// setPHQ2 replaces the site's phq_down with the given fields.
func setPHQ2(m *messages.MetadataSnapshot, add ...messages.Field) {
	var out []messages.Field
	for _, f := range m.Fields {
		if f.FieldName == "phq_down" {
			for _, a := range add {
				a.FormName = "phq2"
				out = append(out, a)
			}
			continue
		}
		out = append(out, f)
	}
	m.Fields = out
}

func phqDown(p *Protocol) messages.Field {
	for _, f := range p.Instrument("phq2").Fields {
		if f.FieldName == "phq_down" {
			return f
		}
	}
	panic("no phq_down")
}

// Bad input: two site items that fit one library item equally, and an
// item with the library's wording but other answers, are reported with
// every candidate; nothing is picked, renamed or suggested.
func TestAmbiguousAndConflictingItems(t *testing.T) {
	p := heal(t)
	t.Run("two site items fit one library item", func(t *testing.T) {
		m := SiteSnapshot(p, "s")
		a, b := phqDown(p), phqDown(p)
		a.FieldName, b.FieldName = "phq2_2", "phq2_2_copy"
		setPHQ2(m, a, b)
		r := Check(p, "s", m, nil)
		fs := findings(r, KindFieldAmbiguous)
		if len(fs) != 1 || fs[0].Field != "phq_down" || fs[0].Severity != messages.SeverityError ||
			strings.Join(fs[0].Match.Candidates, ",") != "phq2_2,phq2_2_copy" || !strings.Contains(fs[0].Message, "phq2_2 and phq2_2_copy") {
			t.Fatalf("%+v", r.Findings)
		}
		if got := kinds(r); !equalCounts(got, map[string]int{KindFieldAmbiguous: 1}) {
			t.Errorf("findings %v", got)
		}
		s := Suggest(r)
		if len(s.Renames) != 0 || len(s.Notes) != 1 || !strings.Contains(s.Notes[0], "phq_down") {
			t.Errorf("suggestion %+v", s)
		}
	})
	t.Run("wording fits, answers conflict", func(t *testing.T) {
		m := SiteSnapshot(p, "s")
		c := phqDown(p)
		c.FieldName, c.SelectChoicesOrCalculations = "phq2_down", "1, Yes | 0, No"
		setPHQ2(m, c)
		r := Check(p, "s", m, nil)
		fs := findings(r, KindFieldConflict)
		if len(fs) != 1 || fs[0].Field != "phq_down" || strings.Join(fs[0].Match.Candidates, ",") != "phq2_down" ||
			!strings.Contains(fs[0].Actual, "1, Yes | 0, No") || !strings.Contains(fs[0].Expected, "3, Nearly every day") {
			t.Fatalf("%+v", r.Findings)
		}
		if got := kinds(r); !equalCounts(got, map[string]int{KindFieldConflict: 1}) {
			t.Errorf("findings %v", got)
		}
		if len(findings(r, KindFieldRenamed)) != 0 || instrument(r, "phq2").FieldsOK != 1 {
			t.Errorf("a conflict was matched: %+v", instrument(r, "phq2"))
		}
	})
	t.Run("one site item fits two library items", func(t *testing.T) {
		ref := SiteSnapshot(p, "ref")
		// a reference project with the same question twice (morning and evening forms merged)
		for i := range ref.Fields {
			if ref.Fields[i].FieldName == "gad2feelnervscl" {
				ref.Fields[i].FieldLabel = "Feeling down, depressed, or hopeless"
				ref.Fields[i].SelectChoicesOrCalculations = phqDown(p).SelectChoicesOrCalculations
				ref.Fields[i].FormName = "phq2"
			}
		}
		pr := FromSnapshot("ref", "1", ref)
		m := clone(ref)
		var out []messages.Field
		for _, f := range m.Fields {
			switch f.FieldName {
			case "gad2feelnervscl":
				continue
			case "phq_down":
				f.FieldName = "down"
			}
			out = append(out, f)
		}
		m.Fields = out
		r := Check(pr, "s", m, nil)
		fs := findings(r, KindFieldAmbiguous)
		if len(fs) != 2 {
			t.Fatalf("%+v", r.Findings)
		}
		for _, f := range fs {
			if strings.Join(f.Match.Candidates, ",") != "down" || !strings.Contains(f.Message, "equally") {
				t.Errorf("%+v", f)
			}
		}
	})
}

// Severity follows the data: the README's rule table, case by case.
func TestTypeChangeSeverity(t *testing.T) {
	yn := "1, Yes | 0, No"
	for _, c := range []struct {
		libType, libChoices, siteType, siteChoices string
		keeps                                      bool
		recode                                     string
	}{
		{"radio", yn, "dropdown", yn, true, ""},
		{"dropdown", yn, "radio", yn, true, ""},
		{"yesno", "", "radio", yn, true, ""},
		{"radio", yn, "yesno", "", true, ""},
		{"yesno", "", "dropdown", "0, No | 1, Yes", true, ""},
		{"truefalse", "", "radio", "1, True | 0, False", true, ""},
		{"yesno", "", "truefalse", "", true, ""},
		{"yesno", "", "radio", "1, Yes | 2, No", false, "2 → 0"},
		{"radio", "1, Yes | 0, No", "yesno", "", true, ""},
		{"radio", "1, Often | 2, Never", "yesno", "", false, ""},
		{"radio", yn, "checkbox", yn, false, ""},
		{"checkbox", yn, "dropdown", yn, false, ""},
		{"text", "", "notes", "", true, ""},
		{"radio", yn, "text", "", false, ""},
	} {
		lib := messages.Field{FieldName: "x", FieldType: c.libType, SelectChoicesOrCalculations: c.libChoices}
		site := messages.Field{FieldName: "x", FieldType: c.siteType, SelectChoicesOrCalculations: c.siteChoices}
		tc := typeChange(lib, site)
		if tc.keepsCodes != c.keeps || recodeString(tc.recode) != c.recode {
			t.Errorf("%s %q -> %s %q: keeps %v recode %q (%s)", c.libType, c.libChoices, c.siteType, c.siteChoices, tc.keepsCodes, recodeString(tc.recode), tc.why)
		}
		fs := compareField(lib, site, true, func(s string) string { return s })
		want := messages.SeverityError
		if c.keeps {
			want = messages.SeverityWarning
		}
		if len(fs) != 1 || fs[0].Kind != KindTypeDiffers || fs[0].Severity != want {
			t.Errorf("%s -> %s: findings %+v", c.libType, c.siteType, fs)
		}
	}
}

// A HEAL site that renamed its baseline event (same label) is reported
// once, and still conforms.
func TestHEALEventRenamedByLabel(t *testing.T) {
	p := heal(t)
	m := SiteSnapshot(p, "s")
	m.Events[0].UniqueEventName = "visit_a_arm_1"
	for i := range m.FormEventMapping {
		if m.FormEventMapping[i].UniqueEventName == "baseline_arm_1" {
			m.FormEventMapping[i].UniqueEventName = "visit_a_arm_1"
		}
	}
	r := Check(p, "s", m, nil)
	fs := findings(r, KindEventRenamed)
	if len(fs) != 1 || fs[0].Event != "baseline" || fs[0].Actual != "visit_a_arm_1" || len(r.Findings) != 1 {
		t.Fatalf("%+v", r.Findings)
	}
	if r.Status != messages.ProtocolConformant || *r.Score != 100 {
		t.Errorf("status %s score %v", r.Status, *r.Score)
	}
}

// PHQ-2 and GAD-2 on one page: both found in the merged form, nothing
// extra, every event checked against that form.
func TestMergedInstruments(t *testing.T) {
	p := heal(t)
	m := SiteSnapshot(p, "s")
	renameForm(m, "phq2", "mood", "Mood")
	for i := range m.Fields {
		if m.Fields[i].FormName == "gad2" {
			m.Fields[i].FormName = "mood"
		}
	}
	var fem []messages.FormEvent
	for _, fe := range m.FormEventMapping {
		if fe.Form != "gad2" {
			fem = append(fem, fe)
		}
	}
	m.FormEventMapping = fem
	r := Check(p, "s", m, nil)
	for _, name := range []string{"phq2", "gad2"} {
		in := instrument(r, name)
		if in.Form != "mood" || in.FieldsOK != 2 || len(in.EventsMapped) != 4 {
			t.Errorf("%s: %+v", name, in)
		}
	}
	if got := kinds(r); !equalCounts(got, map[string]int{KindMatchedByFields: 2}) {
		t.Errorf("findings %v: %+v", got, r.Findings)
	}
}

// One site field that two instruments' items both fit: the better fit
// keeps it; a tie is ambiguous for both.
func TestSiteFieldSharedByTwoInstruments(t *testing.T) {
	q := "How would you rate your health today?"
	scale := "1, Poor | 2, Fair | 3, Good | 4, Very good"
	ref := &messages.MetadataSnapshot{V: messages.V, Site: "ref", Fields: []messages.Field{
		{FieldName: "record_id", FormName: "a", FieldType: "text", FieldLabel: "Record ID"},
		{FieldName: "a_health", FormName: "a", FieldType: "radio", FieldLabel: q, SelectChoicesOrCalculations: scale},
		{FieldName: "a_mood", FormName: "a", FieldType: "radio", FieldLabel: "How is your mood?", SelectChoicesOrCalculations: scale},
		{FieldName: "b_health", FormName: "b", FieldType: "radio", FieldLabel: q, SelectChoicesOrCalculations: scale},
		{FieldName: "b_sleep", FormName: "b", FieldType: "radio", FieldLabel: "How did you sleep?", SelectChoicesOrCalculations: scale},
	}}
	ref.Instruments = InstrumentsOf(ref.Fields)
	site := func(bLabel string) *messages.MetadataSnapshot {
		m := clone(ref)
		var out []messages.Field
		for _, f := range m.Fields {
			switch f.FieldName {
			case "a_health":
				f.FieldName = "health"
			case "b_health":
				continue
			}
			out = append(out, f)
		}
		m.Fields = out
		return m
	}
	p := FromSnapshot("ref", "1", ref)
	r := Check(p, "s", site(q), nil)
	fs := findings(r, KindFieldAmbiguous)
	if len(fs) != 2 || len(findings(r, KindFieldRenamed)) != 0 {
		t.Fatalf("a tie: %+v", r.Findings)
	}
	for _, f := range fs {
		if strings.Join(f.Match.Candidates, ",") != "health" {
			t.Errorf("%+v", f)
		}
	}
	// b's question worded a little differently: a keeps the field, b's item is missing
	for i := range ref.Fields {
		if ref.Fields[i].FieldName == "b_health" {
			ref.Fields[i].FieldLabel = "How would you rate your overall health today?"
		}
	}
	p = FromSnapshot("ref", "1", ref)
	r = Check(p, "s", site(q), nil)
	ren, miss := findings(r, KindFieldRenamed), findings(r, KindFieldMissing)
	if len(ren) != 1 || ren[0].Field != "a_health" || len(miss) != 1 || miss[0].Field != "b_health" || len(findings(r, KindFieldAmbiguous)) != 0 {
		t.Fatalf("the better fit: %+v", r.Findings)
	}
}
