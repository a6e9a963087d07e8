package policy

import (
	"bytes"
	"encoding/csv"
	"strings"
	"testing"

	"github.com/redcap-relay/relay/messages"
)

var testKey = []byte("test-pseudonym-key-0123456789abcdef")

// fld builds a dictionary row: name, form, type, then optional validation,
// choices, identifier flag ("y").
func fld(name, form, typ string, more ...string) messages.Field {
	f := messages.Field{FieldName: name, FormName: form, FieldType: typ}
	if len(more) > 0 {
		f.TextValidationTypeOrShowSlider = more[0]
	}
	if len(more) > 1 {
		f.SelectChoicesOrCalculations = more[1]
	}
	if len(more) > 2 {
		f.Identifier = more[2]
	}
	return f
}

func snap(fields ...messages.Field) *messages.MetadataSnapshot {
	s := &messages.MetadataSnapshot{V: messages.V, Site: "site_a", Fields: fields}
	seen := map[string]bool{}
	for _, f := range fields {
		if !seen[f.FormName] {
			s.Instruments = append(s.Instruments, messages.Instrument{InstrumentName: f.FormName, InstrumentLabel: f.FormName})
			seen[f.FormName] = true
		}
	}
	s.ComputeHash()
	return s
}

func mustParse(t testing.TB, y string) *Policy {
	t.Helper()
	p, err := Parse("test.yaml", []byte(y))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return p
}

func mustCompile(t testing.TB, y string, meta *messages.MetadataSnapshot, opts Options) *Compiled {
	t.Helper()
	c, err := Compile(mustParse(t, y), meta, opts)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	return c
}

func opts() Options { return Options{Site: "site_a", Namespace: "A", DAG: "site_a", Key: testKey} }

// parseDictionaryCSV reads a REDCap UI data dictionary (the "Variable /
// Field Name, Form Name, ..." CSV) into API metadata rows.
func parseDictionaryCSV(t testing.TB, b []byte) []messages.Field {
	t.Helper()
	recs, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	var out []messages.Field
	for _, r := range recs[1:] {
		for len(r) < 18 {
			r = append(r, "")
		}
		out = append(out, messages.Field{
			FieldName: r[0], FormName: r[1], SectionHeader: r[2], FieldType: r[3], FieldLabel: r[4],
			SelectChoicesOrCalculations: r[5], FieldNote: r[6], TextValidationTypeOrShowSlider: r[7],
			TextValidationMin: r[8], TextValidationMax: r[9], Identifier: r[10], BranchingLogic: r[11],
			RequiredField: r[12], CustomAlignment: r[13], QuestionNumber: r[14], MatrixGroupName: r[15],
			MatrixRanking: r[16], FieldAnnotation: strings.TrimSpace(r[17]),
		})
	}
	return out
}
