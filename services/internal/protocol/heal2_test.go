package protocol

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redcap-relay/relay/messages"
)

func findings(r *Report, kind string) []messages.ProtocolFinding {
	var out []messages.ProtocolFinding
	for _, f := range r.Findings {
		if f.Kind == kind {
			out = append(out, f)
		}
	}
	return out
}

func instrument(r *Report, name string) messages.ProtocolInstrument {
	for _, in := range r.Instruments {
		if in.Instrument == name {
			return in
		}
	}
	return messages.ProtocolInstrument{}
}

// renameForm moves a form (fields, instrument list, designation) to a new name.
func renameForm(m *messages.MetadataSnapshot, old, name, label string) {
	for i := range m.Fields {
		if m.Fields[i].FormName == old {
			m.Fields[i].FormName = name
		}
	}
	for i := range m.Instruments {
		if m.Instruments[i].InstrumentName == old {
			m.Instruments[i] = messages.Instrument{InstrumentName: name, InstrumentLabel: label}
		}
	}
	for i := range m.FormEventMapping {
		if m.FormEventMapping[i].Form == old {
			m.FormEventMapping[i].Form = name
		}
	}
}

// replaceForm swaps a required form for a substitute's fields.
func replaceForm(p *Protocol, m *messages.MetadataSnapshot, old, subst, name, label string) {
	var keep []messages.Field
	at := -1
	for _, f := range m.Fields {
		if f.FormName == old && f.FieldName != "record_id" {
			if at < 0 {
				at = len(keep)
			}
			continue
		}
		keep = append(keep, f)
	}
	var add []messages.Field
	for _, f := range p.Instrument(subst).Fields {
		f.FormName = name
		add = append(add, f)
	}
	m.Fields = append(keep[:at:at], append(add, keep[at:]...)...)
	renameForm(m, old, name, label)
}

func TestHEALSubstitutesAliasesAndCorrections(t *testing.T) {
	p, err := HEALAdult()
	if err != nil {
		t.Fatal(err)
	}
	m := SiteSnapshot(p, "site-b")
	// PHQ-9 under the name the CDE file uses (an alias in heal-crf-ids.csv).
	replaceForm(p, m, "phq2", "phq9", "cde_phq901", "PHQ-9")
	// GAD-7 as "GAD 7" form label, with the misspelt GAD-2 item name that the
	// corrections table lists for GAD-7.
	replaceForm(p, m, "gad2", "gad7", "gad_7", "GAD 7")
	for i := range m.Fields {
		if m.Fields[i].FieldName == "gad2notstopwryscl" {
			m.Fields[i].FieldName = "gad2notstopwryscale"
		}
	}
	// BPI instead of PEG.
	replaceForm(p, m, "peg", "bpi", "bpi", "Brief Pain Inventory")
	// PCS-6 named by its CRF alias.
	renameForm(m, "pcs6", "pcs6_scale", "PCS6")
	r := Check(p, "site-b", m, nil)
	for _, f := range r.Findings {
		t.Logf("%s %s %s %s %s", f.Severity, f.Kind, f.Instrument, f.Field, f.Message)
	}
	if r.Status != messages.ProtocolConformant || *r.Score != 100 {
		t.Fatalf("status %s score %v", r.Status, *r.Score)
	}
	for name, want := range map[string]string{"phq2": "phq9", "gad2": "gad7", "peg": "bpi"} {
		in := instrument(r, name)
		if in.Status != messages.InstrumentSubstituted || in.Substitute != want {
			t.Errorf("%s: %+v", name, in)
		}
	}
	if in := instrument(r, "pcs6"); in.Status != messages.InstrumentPresent || in.Form != "pcs6_scale" || in.MatchedBy != "alias" {
		t.Errorf("pcs6: %+v", in)
	}
	ren := findings(r, KindFieldRenamed)
	if len(ren) != 1 || ren[0].Field != "gad2notstopwryscl" || ren[0].SiteField != "gad2notstopwryscale" {
		t.Errorf("field renames: %+v", ren)
	}
	if n := len(findings(r, KindInstrumentRenamed)); n != 3 { // cde_phq901, gad_7, pcs6_scale
		t.Errorf("instrument renames: %d", n)
	}
}

func TestHEALDeviationsAndScore(t *testing.T) {
	p, _ := HEALAdult()
	m := SiteSnapshot(p, "site-c")
	var keep []messages.Field
	for _, f := range m.Fields {
		switch f.FormName {
		case "whoqol2": // instrument dropped entirely
			continue
		}
		if f.FieldName == "sd6a_sleep72" { // one item missing
			continue
		}
		if f.FieldName == "dem_age" {
			f.TextValidationMax = "99" // range changed
		}
		if f.FieldName == "pgicscl" {
			f.FieldType = "dropdown" // display change only: a warning
		}
		if f.FieldName == "taps1drugscl" {
			f.SelectChoicesOrCalculations = "0, Never | 1, Less than monthly | 2, Monthly | 3, Weekly | 4, Daily" // labels only
		}
		keep = append(keep, f)
	}
	m.Fields = keep
	var fem []messages.FormEvent
	for _, fe := range m.FormEventMapping {
		if fe.Form == "opioid_mme" && fe.UniqueEventName == "month_6_arm_1" {
			continue
		}
		fem = append(fem, fe)
	}
	m.FormEventMapping = fem
	m.Repeating = []messages.RepeatingForm{{EventName: "baseline_arm_1", FormName: "demographics"}}
	r := Check(p, "site-c", m, nil)
	got := map[string]string{}
	for _, f := range r.Findings {
		got[f.Kind+"/"+f.Instrument+"/"+f.Field+"/"+f.Event] = f.Severity
	}
	want := map[string]string{
		"instrument_missing/whoqol2//":                "error",
		"field_missing/promis_sleep_6a/sd6a_sleep72/": "error",
		"range_differs/demographics/dem_age/":         "error",
		"type_differs/pgic/pgicscl/":                  "warning",
		"choice_labels_differ/taps1/taps1drugscl/":    "warning",
		"event_not_designated/opioid_mme//month_6":    "error",
		"repeating_differs/demographics//":            "warning",
		"field_extra/demographics/record_id/":         "", // never: the record ID is not extra
	}
	delete(want, "field_extra/demographics/record_id/")
	for k, sev := range want {
		if got[k] != sev {
			t.Errorf("%s: severity %q, want %q", k, got[k], sev)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected finding %s", k)
		}
	}
	// score: 12 instruments; whoqol 0; sleep 6a 0.8*5/6+0.2; demographics 0.8*7/8+0.2; opioid 0.8+0.2*3/4
	want100 := 100 * (8 + (0.8*5/6 + 0.2) + (0.8*7/8 + 0.2) + (0.8 + 0.2*3/4)) / 12
	if d := *r.Score - want100; d > 0.051 || d < -0.051 {
		t.Errorf("score %v, want %.1f", *r.Score, want100)
	}
	if r.Status != messages.ProtocolDeviations || r.Errors != 4 || r.Warnings != 3 {
		t.Errorf("status %s errors %d warnings %d", r.Status, r.Errors, r.Warnings)
	}
}

func TestClassicProjectAgainstLongitudinalProtocol(t *testing.T) {
	p, _ := HEALAdult()
	m := SiteSnapshot(p, "classic")
	m.Events, m.FormEventMapping, m.Arms, m.Project.IsLongitudinal = nil, nil, nil, 0
	r := Check(p, "classic", m, nil)
	if n := len(findings(r, KindNotLongitudinal)); n != 1 {
		t.Errorf("not_longitudinal findings: %d", n)
	}
	if r.Errors != 1 || *r.Score >= 100 {
		t.Errorf("errors %d score %v", r.Errors, *r.Score)
	}
}

func TestBadInput(t *testing.T) {
	t.Run("malformed dictionary CSV", func(t *testing.T) {
		for name, in := range map[string]string{
			"wrong columns":  "name,form,type\nx,y,text\n",
			"broken quoting": "field_name,form_name,field_type,field_label\nx,f,text,\"unterminated\n",
			"empty":          "",
			"no form":        "field_name,form_name,field_type,field_label\nx,,text,X\n",
		} {
			_, err := ParseDictionary(strings.NewReader(in))
			if err == nil {
				t.Errorf("%s: no error", name)
				continue
			}
			t.Logf("%s: %v", name, err)
		}
	})
	t.Run("bad choices syntax at a site", func(t *testing.T) {
		p, _ := HEALAdult()
		m := SiteSnapshot(p, "s")
		for i := range m.Fields {
			if m.Fields[i].FieldName == "pgicscl" {
				m.Fields[i].SelectChoicesOrCalculations = "1 No change | 2, Almost the same"
			}
		}
		r := Check(p, "s", m, nil)
		fs := findings(r, KindChoicesMalformed)
		if len(fs) != 1 || fs[0].Field != "pgicscl" || r.Errors != 1 {
			t.Fatalf("%+v", r.Findings)
		}
	})
	t.Run("unknown instrument in the protocol file", func(t *testing.T) {
		dir := t.TempDir()
		src, _ := os.ReadFile("library/heal-adult.yaml")
		y := strings.Replace(string(src), "substitutes: [bpi]", "substitutes: [bpi, koos12]", 1)
		y = strings.Replace(y, "instruments:\n", "instruments:\n  - name: promis_anxiety_4a\n    dictionary: heal-adult/promis_anxiety_4a.csv\n    events: [baseline, month_24]\n", 1)
		os.WriteFile(filepath.Join(dir, "p.yaml"), []byte(y), 0o644)
		os.MkdirAll(filepath.Join(dir, "heal-adult"), 0o755)
		files, _ := filepath.Glob("library/heal-adult/*.csv")
		for _, f := range files {
			b, _ := os.ReadFile(f)
			os.WriteFile(filepath.Join(dir, "heal-adult", filepath.Base(f)), b, 0o644)
		}
		p, err := Load(filepath.Join(dir, "p.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		if p.Err() == nil || len(p.Problems) != 2 {
			t.Fatalf("problems: %v", p.Problems)
		}
		t.Log(p.Err())
		for _, site := range []string{"a", "b"} {
			r := Check(p, site, SiteSnapshot(p, site), nil)
			in := instrument(r, "promis_anxiety_4a")
			if in.Status != messages.InstrumentError || !strings.Contains(in.Error, "promis_anxiety_4a.csv") || !strings.Contains(in.Error, "month_24") {
				t.Errorf("%s: %+v", site, in)
			}
			if peg := instrument(r, "peg"); peg.Status != messages.InstrumentPresent || !strings.Contains(peg.Error, "koos12") {
				t.Errorf("peg: %+v", peg)
			}
			// the other instruments are still checked
			if got := instrument(r, "phq2"); got.Status != messages.InstrumentPresent || got.FieldsOK != 2 {
				t.Errorf("phq2: %+v", got)
			}
			if len(findings(r, KindProtocolEntry)) != 2 {
				t.Errorf("protocol findings: %+v", findings(r, KindProtocolEntry))
			}
		}
	})
	t.Run("no metadata", func(t *testing.T) {
		p, _ := HEALAdult()
		r := Check(p, "s", &messages.MetadataSnapshot{}, nil)
		if r.Status != messages.ProtocolError || r.Score != nil || r.Error == "" {
			t.Fatalf("%+v", r)
		}
	})
}

// Completion from the real longitudinal project's own export.
func TestCompletionFromRealExport(t *testing.T) {
	var fx fixture
	for _, f := range fixtures(t) {
		if f.name == "longitudinal" {
			fx = f
		}
	}
	p := FromSnapshot("ref", "1", fx.meta)
	r := Check(p, "longitudinal", fx.meta, fx.rows)
	if len(r.Completion) == 0 {
		t.Fatal("no completion")
	}
	// recount by hand for every (form, event) cell
	for _, c := range r.Completion {
		recs := map[string]string{}
		for _, row := range fx.rows {
			if row["redcap_event_name"] == c.Event {
				recs[row["study_id"]] = row[c.Form+"_complete"]
			}
		}
		complete := 0
		for _, v := range recs {
			if v == "2" {
				complete++
			}
		}
		if c.Records != len(recs) || c.Complete != complete {
			t.Errorf("%s@%s: records %d complete %d, want %d %d", c.Form, c.Event, c.Records, c.Complete, len(recs), complete)
		}
		if c.Complete+c.Unverified+c.Incomplete+c.Blank != c.Records {
			t.Errorf("%s@%s: counts do not add up: %+v", c.Form, c.Event, c)
		}
	}
	// item missingness is computed where item values came with the rows
	items := 0
	for _, c := range r.Completion {
		items += len(c.Items)
	}
	if items == 0 {
		t.Error("no item missingness")
	}
	// StatusFields asks only for the record ID and status fields
	sf := StatusFields(p, fx.meta)
	if sf[0] != "study_id" {
		t.Errorf("status fields %v", sf)
	}
	for _, f := range sf[1:] {
		if !strings.HasSuffix(f, "_complete") {
			t.Errorf("status field %s", f)
		}
	}
	for _, f := range ItemFields(p, fx.meta) {
		if f == "first_name" || f == "email" || f == "telephone_1" || f == "dob" {
			t.Errorf("item fields include identifier %s", f)
		}
	}
}
