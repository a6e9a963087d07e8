package phi_test

import (
	"bytes"
	"fmt"
	"io/fs"
	"reflect"
	"strings"
	"testing"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/phi"
	"github.com/redcap-relay/relay/services/internal/policy"
	"github.com/redcap-relay/relay/services/internal/protocol"
	"github.com/redcap-relay/relay/services/internal/testfixtures"
)

type dictionary struct {
	name   string
	fields []messages.Field
}

// every fixture dictionary: the real projects, the HEAL library's
// instruments, and the demo's dose log (whose med_name_code once split
// the two detectors).
func dictionaries(t *testing.T) []dictionary {
	var out []dictionary
	for _, d := range testfixtures.Dictionaries() {
		fields, err := protocol.ParseDictionary(bytes.NewReader(d.CSV))
		if err != nil {
			t.Fatalf("%s: %v", d.Name, err)
		}
		out = append(out, dictionary{d.Name, fields})
	}
	lib := protocol.LibraryFS()
	paths, _ := fs.Glob(lib, "heal-adult/*.csv")
	for _, p := range paths {
		b, _ := fs.ReadFile(lib, p)
		fields, err := protocol.ParseDictionary(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		id := messages.Field{FieldName: "record_id", FormName: fields[0].FormName, FieldType: "text"}
		out = append(out, dictionary{p, append([]messages.Field{id}, fields...)})
	}
	out = append(out, dictionary{"demo dose log", []messages.Field{
		{FieldName: "record_id", FormName: "opioid_dose_log", FieldType: "text"},
		{FieldName: "med_name_code", FormName: "opioid_dose_log", FieldType: "dropdown", SelectChoicesOrCalculations: "1, Oxycodone | 2, Morphine"},
		{FieldName: "med_name", FormName: "opioid_dose_log", FieldType: "text"},
		{FieldName: "med_mme", FormName: "opioid_dose_log", FieldType: "text", TextValidationTypeOrShowSlider: "number"},
		{FieldName: "mobile", FormName: "opioid_dose_log", FieldType: "text", TextValidationTypeOrShowSlider: "integer"},
		{FieldName: "cell", FormName: "opioid_dose_log", FieldType: "text"},
	}})
	return out
}

func forms(fields []messages.Field) []string {
	seen := map[string]bool{}
	var out []string
	for _, f := range fields {
		if !seen[f.FormName] {
			seen[f.FormName] = true
			out = append(out, f.FormName)
		}
	}
	return out
}

// TestPolicyAndProtocolAgree runs the transfer policy's explain and the
// protocol check over every fixture dictionary: a field the protocol
// report calls an identifier is one the policy requires a rule for, with
// the same Safe Harbor categories, and a field the policy keeps because
// "no identifier detected" is never called one by the report.
func TestPolicyAndProtocolAgree(t *testing.T) {
	checked, reported := 0, 0
	for _, d := range dictionaries(t) {
		meta := &messages.MetadataSnapshot{V: messages.V, Site: "s", Fields: d.fields, Instruments: protocol.InstrumentsOf(d.fields)}
		meta.ComputeHash()
		pol, err := policy.Parse("all.yaml", []byte(fmt.Sprintf("name: all\napproved:\n  forms: [%s]\n", strings.Join(forms(d.fields), ", "))))
		if err != nil {
			t.Fatal(err)
		}
		decisions := policy.Explain(pol, meta, policy.Options{Site: "s", Key: []byte("k")})
		r := protocol.Check(protocol.FromSnapshot("ref", "1", meta), "s", meta, nil)
		byField := map[string][]string{}
		for _, f := range r.Findings {
			if f.Kind == protocol.KindPHI {
				byField[f.Field] = f.Categories
			}
		}
		for i, dec := range decisions {
			if i == 0 { // the record ID: the policy decides it by record_id, the check does not flag it
				continue
			}
			checked++
			var want []string
			flagged := false
			for _, det := range dec.Detected {
				if det.Category == policy.CatFlagged {
					flagged = true
				}
				if det.Category == policy.CatValidation || det.Category == policy.CatName || det.Category == policy.CatDate {
					for _, c := range det.HIPAA {
						if !contains(want, string(c)) {
							want = append(want, string(c))
						}
					}
				}
			}
			want = inRuleOrder(want)
			if flagged {
				want = nil
			}
			got := byField[dec.Field]
			if got != nil {
				reported++
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s: field %s: protocol report says %v, policy detected %v (%s)", d.name, dec.Field, got, want, strings.Join(dec.Reasons, "; "))
			}
			if strings.Contains(dec.By, "no identifier detected") && got != nil {
				t.Errorf("%s: field %s: policy says no identifier, the report flags it", d.name, dec.Field)
			}
		}
	}
	if reported == 0 {
		t.Fatal("no identifier finding at all: the comparison proves nothing")
	}
	t.Logf("%d fields compared, %d reported as identifiers by both", checked, reported)
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func inRuleOrder(cs []string) []string {
	var out []string
	for _, c := range phi.Categories {
		if contains(cs, string(c)) {
			out = append(out, string(c))
		}
	}
	return out
}
