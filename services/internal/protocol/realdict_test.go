package protocol

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"path"
	"strings"
	"testing"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/testfixtures"
)

// fixture is a real project (nobody here wrote it) as a metadata snapshot.
type fixture struct {
	name string
	meta *messages.MetadataSnapshot
	rows []messages.Row
}

func readDict(t testing.TB, b []byte) []messages.Field {
	t.Helper()
	fields, err := ParseDictionary(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return fields
}

func fixtureFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := testfixtures.Read(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readRows(t testing.TB, b []byte) []messages.Row {
	t.Helper()
	all, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var out []messages.Row
	for _, rec := range all[1:] {
		r := messages.Row{}
		for i, h := range all[0] {
			r[h] = rec[i]
		}
		out = append(out, r)
	}
	return out
}

func fixtures(t testing.TB) []fixture {
	t.Helper()
	var out []fixture
	for _, d := range testfixtures.Dictionaries() {
		fields := readDict(t, d.CSV)
		m := &messages.MetadataSnapshot{V: messages.V, Site: d.Name, Fields: fields, Instruments: InstrumentsOf(fields)}
		fx := fixture{name: d.Name, meta: m}
		switch {
		case d.Name == "Project1xml":
			// REDCap's own validation-suite project with its instrument designation.
			mapping, err := ParseFormEventMapping(bytes.NewReader(fixtureFile(t, "instrument_designation.csv")))
			if err != nil {
				t.Fatal(err)
			}
			m.Project.IsLongitudinal, m.FormEventMapping = 1, mapping
			arms := map[int]bool{}
			seen := map[string]bool{}
			for _, fe := range mapping {
				if !arms[fe.ArmNum] {
					arms[fe.ArmNum] = true
					m.Arms = append(m.Arms, messages.Arm{ArmNum: fe.ArmNum, Name: fmt.Sprintf("Arm %d", fe.ArmNum)})
				}
				if !seen[fe.UniqueEventName] {
					seen[fe.UniqueEventName] = true
					m.Events = append(m.Events, messages.Event{UniqueEventName: fe.UniqueEventName, ArmNum: fe.ArmNum, EventName: fe.UniqueEventName})
				}
			}
		case testfixtures.Has(path.Join(d.Dir, "event.csv")):
			// REDCapR's longitudinal project (UI-layout dictionary).
			var err error
			if m.Events, err = ParseEvents(bytes.NewReader(fixtureFile(t, path.Join(d.Dir, "event.csv")))); err != nil {
				t.Fatal(err)
			}
			if m.Arms, err = ParseArms(bytes.NewReader(fixtureFile(t, path.Join(d.Dir, "arm.csv")))); err != nil {
				t.Fatal(err)
			}
			m.Project.IsLongitudinal = 1
			// The designation is what the site's data show: a form whose
			// status is exported at an event is designated there.
			fx.rows = readRows(t, fixtureFile(t, path.Join(d.Dir, "data.csv")))
			seen := map[string]bool{}
			for _, ev := range m.Events {
				for _, form := range formsOf(fields) {
					for _, r := range fx.rows {
						k := ev.UniqueEventName + "/" + form
						if r["redcap_event_name"] == ev.UniqueEventName && r[form+"_complete"] != "" && !seen[k] {
							seen[k] = true
							m.FormEventMapping = append(m.FormEventMapping, messages.FormEvent{ArmNum: ev.ArmNum, UniqueEventName: ev.UniqueEventName, Form: form})
						}
					}
				}
			}
		}
		m.ComputeHash()
		out = append(out, fx)
	}
	return out
}

func clone(m *messages.MetadataSnapshot) *messages.MetadataSnapshot {
	c := *m
	c.Fields = append([]messages.Field(nil), m.Fields...)
	c.Instruments = append([]messages.Instrument(nil), m.Instruments...)
	c.FormEventMapping = append([]messages.FormEvent(nil), m.FormEventMapping...)
	c.Events = append([]messages.Event(nil), m.Events...)
	return &c
}

// key names a finding independent of wording and form (a renamed form
// moves PHI findings to the new form name without changing them).
func key(f messages.ProtocolFinding) string {
	return strings.Join([]string{f.Severity, f.Kind, f.Instrument, f.Field, f.Event}, "|")
}

func keys(r *Report) map[string]bool {
	out := map[string]bool{}
	for _, f := range r.Findings {
		out[key(f)] = true
	}
	return out
}

// deviation changes a site in one way and says which findings that must add.
type deviation struct {
	name  string
	apply func(p *Protocol, m *messages.MetadataSnapshot) (want []string, gone string)
}

func isRecodable(f messages.Field) bool {
	if f.FieldType != "radio" && f.FieldType != "dropdown" {
		return false
	}
	cs, err := ParseChoices(f.SelectChoicesOrCalculations)
	return err == nil && len(cs) >= 2
}

var deviations = []deviation{
	{"field dropped", func(p *Protocol, m *messages.MetadataSnapshot) ([]string, string) {
		// the last answer field of the last form that keeps other fields
		perForm := map[string]int{}
		for _, f := range m.Fields {
			perForm[f.FormName]++
		}
		for i := len(m.Fields) - 1; i > 0; i-- {
			f := m.Fields[i]
			if f.FieldType == "descriptive" || f.MatrixGroupName != "" || perForm[f.FormName] < 2 {
				continue
			}
			m.Fields = append(m.Fields[:i:i], m.Fields[i+1:]...)
			return []string{"error|field_missing|" + f.FormName + "|" + f.FieldName + "|"}, f.FieldName
		}
		return nil, ""
	}},
	{"choice recoded", func(p *Protocol, m *messages.MetadataSnapshot) ([]string, string) {
		for i, f := range m.Fields {
			if !isRecodable(f) {
				continue
			}
			cs, _ := ParseChoices(f.SelectChoicesOrCalculations)
			cs[0].Code, cs[1].Code = cs[1].Code, cs[0].Code
			m.Fields[i].SelectChoicesOrCalculations = choicesString(cs)
			return []string{"error|choices_recoded|" + f.FormName + "|" + f.FieldName + "|"}, ""
		}
		return nil, ""
	}},
	{"validation changed", func(p *Protocol, m *messages.MetadataSnapshot) ([]string, string) {
		for i, f := range m.Fields {
			v := normValidation(f.TextValidationTypeOrShowSlider)
			if f.FieldType != "text" || (v != "integer" && v != "number" && !strings.HasPrefix(v, "number_")) {
				continue
			}
			nv := "integer"
			if v == "integer" {
				nv = "number"
			}
			m.Fields[i].TextValidationTypeOrShowSlider = nv
			return []string{"error|validation_differs|" + f.FormName + "|" + f.FieldName + "|"}, ""
		}
		return nil, ""
	}},
	{"instrument renamed to a known alias", func(p *Protocol, m *messages.MetadataSnapshot) ([]string, string) {
		forms := formsOf(m.Fields)
		old := forms[len(forms)-1]
		alias := old + "_v2"
		p.Instrument(old).Aliases = append(p.Instrument(old).Aliases, alias)
		for i := range m.Fields {
			if m.Fields[i].FormName == old {
				m.Fields[i].FormName = alias
			}
		}
		for i := range m.Instruments {
			if m.Instruments[i].InstrumentName == old {
				m.Instruments[i] = messages.Instrument{InstrumentName: alias, InstrumentLabel: alias}
			}
		}
		for i := range m.FormEventMapping {
			if m.FormEventMapping[i].Form == old {
				m.FormEventMapping[i].Form = alias
			}
		}
		return []string{"warning|instrument_renamed|" + old + "||"}, ""
	}},
	{"event mapping removed", func(p *Protocol, m *messages.MetadataSnapshot) ([]string, string) {
		if len(m.FormEventMapping) == 0 {
			return nil, ""
		}
		fe := m.FormEventMapping[len(m.FormEventMapping)-1]
		m.FormEventMapping = m.FormEventMapping[:len(m.FormEventMapping)-1]
		return []string{"error|event_not_designated|" + fe.Form + "||" + fe.UniqueEventName}, ""
	}},
}

// TestRealDictionaryDeviations: the protocol is each real project itself;
// a site derived from it with one deviation (and with all of them) gets
// exactly the findings of those deviations, nothing else.
func TestRealDictionaryDeviations(t *testing.T) {
	for _, fx := range fixtures(t) {
		t.Run(fx.name, func(t *testing.T) {
			base := Check(FromSnapshot("ref", "1", fx.meta), fx.name, fx.meta, nil)
			if base.Errors != 0 || *base.Score != 100 || base.Status != messages.ProtocolConformant {
				for _, f := range base.Findings {
					t.Log(f)
				}
				t.Fatalf("a project checked against itself: %d errors, score %v", base.Errors, *base.Score)
			}
			for _, f := range base.Findings {
				if f.Kind != KindPHI {
					t.Errorf("a project checked against itself has a finding: %+v", f)
				}
			}
			baseKeys := keys(base)
			allWant := map[string]bool{}
			allGone := map[string]bool{}
			pAll := FromSnapshot("ref", "1", fx.meta)
			mAll := clone(fx.meta)
			applied := 0
			for _, d := range deviations {
				p := FromSnapshot("ref", "1", fx.meta)
				m := clone(fx.meta)
				want, gone := d.apply(p, m)
				if want == nil {
					t.Logf("%s: not applicable", d.name)
					continue
				}
				wAll, gAll := d.apply(pAll, mAll)
				applied++
				for _, w := range wAll {
					allWant[w] = true
				}
				if gAll != "" {
					allGone[gAll] = true
				}
				r := Check(p, fx.name, m, nil)
				assertExactly(t, d.name, baseKeys, keys(r), want, map[string]bool{gone: gone != ""})
				if r.Status != messages.ProtocolDeviations && strings.HasPrefix(want[0], "error") {
					t.Errorf("%s: status %s", d.name, r.Status)
				}
			}
			if applied >= 2 {
				var want []string
				for w := range allWant {
					want = append(want, w)
				}
				r := Check(pAll, fx.name, mAll, nil)
				assertExactly(t, "all deviations", baseKeys, keys(r), want, allGone)
				if *r.Score >= 100 {
					t.Errorf("all deviations: score %v", *r.Score)
				}
				t.Logf("%s: %d deviations, score %.1f, %d errors %d warnings", fx.name, applied, *r.Score, r.Errors, r.Warnings)
			}
		})
	}
}

// assertExactly: got = base + want, minus base findings about a dropped field.
func assertExactly(t *testing.T, name string, base, got map[string]bool, want []string, gone map[string]bool) {
	t.Helper()
	wantSet := map[string]bool{}
	for _, w := range want {
		wantSet[w] = true
		if !got[w] {
			t.Errorf("%s: missing finding %s", name, w)
		}
	}
	for k := range got {
		if !base[k] && !wantSet[k] {
			t.Errorf("%s: unexpected finding %s", name, k)
		}
	}
	for k := range base {
		if !got[k] && !gone[strings.Split(k, "|")[3]] {
			t.Errorf("%s: finding disappeared: %s", name, k)
		}
	}
}

// The validation-suite project shows why the Identifier? flag cannot be
// trusted: its SSN, MRN, phone, e-mail and ZIP fields are not flagged.
func TestPHIHygieneOnValidationSuite(t *testing.T) {
	fx := fixtures(t)[0]
	r := Check(FromSnapshot("ref", "1", fx.meta), "p1", fx.meta, nil)
	byField := map[string]string{}
	for _, f := range r.Findings {
		if f.Kind == KindPHI {
			byField[f.Field] = f.Severity + " " + f.Actual
		}
	}
	for _, f := range fx.meta.Fields {
		v := f.TextValidationTypeOrShowSlider
		if f.FieldType == "text" && (v == "ssn" || v == "email" || v == "zipcode" || strings.HasPrefix(v, "phone") || strings.HasPrefix(v, "mrn")) && f.Identifier != "y" {
			if !strings.HasPrefix(byField[f.FieldName], "warning validation") {
				t.Errorf("field %s (validation %s, not flagged) not reported: %q", f.FieldName, v, byField[f.FieldName])
			}
		}
		if f.Identifier == "y" && byField[f.FieldName] != "" {
			t.Errorf("flagged field %s reported", f.FieldName)
		}
	}
	t.Logf("%d PHI hygiene findings", len(byField))
}
