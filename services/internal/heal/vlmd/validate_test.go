package vlmd

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

const examples = "testdata/heal-vlmd/examples"

func validator(t *testing.T) *Validator {
	t.Helper()
	v, err := NewValidator()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func validateFile(t *testing.T, v *Validator, path string) []Violation {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var vs []Violation
	if strings.HasSuffix(path, ".json") {
		vs, err = v.JSON(f)
	} else {
		vs, err = v.CSV(f)
	}
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return vs
}

// The schemas --validate uses are HEAL's files, byte for byte.
func TestBundledSchemasAreHEALsUnchanged(t *testing.T) {
	for _, f := range []string{"schemas/data-dictionary.json", "schemas/csvtemplate/fields.json"} {
		embedded, err := schemaFS.ReadFile("heal-vlmd/" + f)
		if err != nil {
			t.Fatal(err)
		}
		copyInTestdata, err := os.ReadFile(filepath.Join("testdata/heal-vlmd", f))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(embedded, copyInTestdata) {
			t.Errorf("%s: the embedded schema differs from HEAL's copy in testdata", f)
		}
	}
	for _, f := range []string{"README.md", "LICENSE"} {
		if _, err := os.Stat(filepath.Join("heal-vlmd", f)); err != nil {
			t.Errorf("the bundled schemas lost their %s: %v", f, err)
		}
	}
}

// HEAL's own examples: what HEAL's tests accept passes, what they reject
// fails, for the reasons the examples were written for.
func TestHEALExamplesThroughTheSameValidator(t *testing.T) {
	v := validator(t)
	valid, _ := filepath.Glob(filepath.Join(examples, "valid", "*"))
	invalid, _ := filepath.Glob(filepath.Join(examples, "invalid", "*"))
	if len(valid) != 4 || len(invalid) != 4 {
		t.Fatalf("expected HEAL's 4 valid and 4 invalid examples, found %d and %d", len(valid), len(invalid))
	}
	for _, p := range valid {
		if vs := validateFile(t, v, p); len(vs) > 0 {
			t.Errorf("%s is one of HEAL's valid examples but fails: %v", filepath.Base(p), vs)
		}
	}
	// Why each invalid example is invalid (a substring of one violation).
	why := map[string][]string{
		"template_submission.json":                  {"missing property 'fields'", "additional properties 'data_dictionary' not allowed"},
		"template_submission_no_array_parsing.json": {"missing property 'fields'"},
		"template_submission.csv":                   {"row 2: missing property 'name'", "'encoding'", "row 3 (field race) column type: value must be one of"},
		"template_submission_minimal.csv":           {"row 4: missing properties 'name', 'description'", "row 2 (field participant_id) column type"},
	}
	for _, p := range invalid {
		vs := validateFile(t, v, p)
		if len(vs) == 0 {
			t.Errorf("%s is one of HEAL's invalid examples but passes", filepath.Base(p))
			continue
		}
		text := ""
		for _, x := range vs {
			text += x.String() + "\n"
		}
		for _, w := range why[filepath.Base(p)] {
			if !strings.Contains(text, w) {
				t.Errorf("%s: expected a violation mentioning %q, got:\n%s", filepath.Base(p), w, text)
			}
		}
	}
}

// The repair drops exactly the one non-schema entry of HEAL's file and
// nothing else; without it the file does not compile as draft-07.
func TestSchemaRepairIsTheOneBrokenEntry(t *testing.T) {
	raw, err := os.ReadFile("testdata/heal-vlmd/schemas/data-dictionary.json")
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	doc, _ := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err := c.AddResource("https://x.example/d.json", doc); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Compile("https://x.example/d.json"); err == nil || !strings.Contains(err.Error(), "/properties/standardsMappings/items/properties/type") {
		t.Fatalf("HEAL's schema as published should fail draft-07's metaschema at that entry (fixed upstream? then drop the repair): %v", err)
	}
	before, _ := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	after, _ := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if !repairRootMappings(after) {
		t.Fatal("repair found nothing to repair")
	}
	m, _ := dig(before, "properties", "standardsMappings", "items", "properties")
	delete(m, "type")
	b1, _ := json.Marshal(before)
	b2, _ := json.Marshal(after)
	if !bytes.Equal(b1, b2) {
		t.Fatal("the repair changed more than the one entry")
	}
	if repairRootMappings(after) {
		t.Fatal("the repair is not idempotent")
	}
}

// The CSV reader types whole columns as HEAL's tests do, so a list column
// whose every cell is one number is read as numbers and fails the schema.
func TestCSVColumnsAreTypedAsHEALReadsThem(t *testing.T) {
	v := validator(t)
	csv := "name,description,type,missingValues,constraints.maximum,constraints.required\n" +
		"a,A,integer,98,10,true\n" +
		"b,B,integer,99,,\n"
	vs, err := v.CSV(strings.NewReader(csv))
	if err != nil {
		t.Fatal(err)
	}
	if len(vs) != 2 || !strings.Contains(vs[0].String(), "missingValues") || !strings.Contains(vs[0].Message, "want string") {
		t.Fatalf("a missingValues column of bare numbers is read as integers and rejected: %v", vs)
	}
	// With a second code (or the empty code) the column is text and passes.
	ok := strings.Replace(csv, ",98,", ",98|,", 1)
	if vs, _ := v.CSV(strings.NewReader(ok)); len(vs) != 0 {
		t.Fatalf("98| is a string: %v", vs)
	}
	// A decimal maximum is rejected (the schema wants integers).
	dec := strings.Replace(ok, ",10,", ",10.5,", 1)
	if vs, _ := v.CSV(strings.NewReader(dec)); len(vs) != 1 || !strings.Contains(vs[0].String(), "constraints.maximum") {
		t.Fatalf("a decimal maximum must fail: %v", vs)
	}
	// pandas' NA spellings are missing cells: a description "NA" is no description.
	na := strings.Replace(ok, "a,A,", "a,NA,", 1)
	if vs, _ := v.CSV(strings.NewReader(na)); len(vs) != 1 || !strings.Contains(vs[0].Message, "missing property 'description'") {
		t.Fatalf("NA is a missing cell: %v", vs)
	}
}
