package vlmd

import (
	"bytes"
	"embed"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// HEAL's schemas, unchanged (heal-vlmd/README.md gives source and licence).
//
//go:embed heal-vlmd/schemas/data-dictionary.json heal-vlmd/schemas/csvtemplate/fields.json
var schemaFS embed.FS

const (
	dictSchemaURL = "https://heal.example/vlmd/schemas/data-dictionary.json"
	rowSchemaURL  = "https://heal.example/vlmd/schemas/csvtemplate/fields.json"
)

// Violation is one place where a document breaks the schema.
type Violation struct {
	Where   string // JSON pointer, or "row N (field NAME)"
	Message string
}

func (v Violation) String() string { return v.Where + ": " + v.Message }

// Validator checks dictionaries against HEAL's official schemas (draft-07).
type Validator struct {
	dict, row *jsonschema.Schema
}

// NewValidator compiles the embedded schemas.
func NewValidator() (*Validator, error) {
	c := jsonschema.NewCompiler()
	for url, file := range map[string]string{dictSchemaURL: "heal-vlmd/schemas/data-dictionary.json", rowSchemaURL: "heal-vlmd/schemas/csvtemplate/fields.json"} {
		b, err := schemaFS.ReadFile(file)
		if err != nil {
			return nil, err
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("vlmd: schema %s: %w", file, err)
		}
		repairRootMappings(doc)
		if err := c.AddResource(url, doc); err != nil {
			return nil, fmt.Errorf("vlmd: schema %s: %w", file, err)
		}
	}
	v := &Validator{}
	var err error
	if v.dict, err = c.Compile(dictSchemaURL); err != nil {
		return nil, fmt.Errorf("vlmd: compile the JSON schema: %w", err)
	}
	if v.row, err = c.Compile(rowSchemaURL); err != nil {
		return nil, fmt.Errorf("vlmd: compile the CSV template schema: %w", err)
	}
	return v, nil
}

// repairRootMappings drops the one entry of HEAL's data-dictionary.json
// (0.3.2) that is not a schema: the root standardsMappings items list
// "type": "object" among their properties (a keyword where a subschema
// belongs), which draft-07's metaschema rejects, so no conforming
// validator compiles the file as it is. Only that string entry goes, in
// memory; the file stays unchanged. It constrains nothing HEAL's own
// validator could check (given a "type" key there, it cannot evaluate
// "object" as a schema either), and this package never writes root
// standardsMappings. Reports whether it repaired anything.
func repairRootMappings(doc any) bool {
	m, ok := dig(doc, "properties", "standardsMappings", "items", "properties")
	if !ok {
		return false
	}
	if s, isString := m["type"].(string); isString && s == "object" {
		delete(m, "type")
		return true
	}
	return false
}

func dig(v any, keys ...string) (map[string]any, bool) {
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		v = m[k]
	}
	m, ok := v.(map[string]any)
	return m, ok
}

// JSON validates a JSON data dictionary. The error is for input that is
// not JSON at all.
func (v *Validator) JSON(r io.Reader) ([]Violation, error) {
	doc, err := jsonschema.UnmarshalJSON(r)
	if err != nil {
		return nil, fmt.Errorf("not valid JSON: %w", err)
	}
	return violations(v.dict.Validate(doc), ""), nil
}

// CSV validates a CSV data dictionary the way HEAL's own tests read one:
// every row against csvtemplate/fields.json, after dropping the row's empty
// (and pandas "NA"-like) cells and typing each column as pandas'
// read_csv + convert_dtypes would (a column of whole numbers becomes
// integers, of true/false booleans). So a column HEAL would read as numbers
// where the schema wants text fails here too.
func (v *Validator) CSV(r io.Reader) ([]Violation, error) {
	rows, err := ReadCSVLikeHEAL(r)
	if err != nil {
		return nil, err
	}
	var out []Violation
	for i, row := range rows {
		name, _ := row["name"].(string)
		where := fmt.Sprintf("row %d", i+2)
		if name != "" {
			where += " (field " + name + ")"
		}
		out = append(out, violations(v.row.Validate(row), where)...)
	}
	return out, nil
}

// violations flattens a validation error to its leaves.
func violations(err error, prefix string) []Violation {
	if err == nil {
		return nil
	}
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return []Violation{{Where: prefix, Message: err.Error()}}
	}
	var out []Violation
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) == 0 {
			loc := "/" + strings.Join(e.InstanceLocation, "/")
			where := loc
			if prefix != "" {
				where = prefix
				if loc != "/" {
					where += " column " + strings.Join(e.InstanceLocation, "/")
				}
			}
			out = append(out, Violation{Where: where, Message: leafMessage(e)})
			return
		}
		for _, c := range e.Causes {
			walk(c)
		}
	}
	walk(ve)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Where < out[j].Where })
	return out
}

// pandasNA are the cells pandas' read_csv reads as missing by default.
var pandasNA = map[string]bool{
	"": true, "#N/A": true, "#N/A N/A": true, "#NA": true, "-1.#IND": true, "-1.#QNAN": true, "-NaN": true,
	"-nan": true, "1.#IND": true, "1.#QNAN": true, "<NA>": true, "N/A": true, "NA": true, "NULL": true,
	"NaN": true, "None": true, "n/a": true, "nan": true, "null": true,
}

// ReadCSVLikeHEAL reads a CSV dictionary into one object per row as HEAL's
// tests see it: missing cells dropped, columns typed as a whole.
func ReadCSVLikeHEAL(r io.Reader) ([]map[string]any, error) {
	cr := csv.NewReader(r)
	recs, err := cr.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("not valid CSV: %w", err)
	}
	if len(recs) == 0 {
		return nil, errors.New("empty CSV: no header row")
	}
	header := recs[0]
	kinds := make([]string, len(header))
	for j := range header {
		var col []string
		for _, rec := range recs[1:] {
			if j < len(rec) && !pandasNA[rec[j]] {
				col = append(col, rec[j])
			}
		}
		kinds[j] = columnKind(col)
	}
	out := make([]map[string]any, 0, len(recs)-1)
	for _, rec := range recs[1:] {
		row := map[string]any{}
		for j, h := range header {
			if j >= len(rec) || pandasNA[rec[j]] || h == "" {
				continue
			}
			row[h] = typed(kinds[j], rec[j])
		}
		out = append(out, row)
	}
	return out, nil
}

func columnKind(cells []string) string {
	if len(cells) == 0 {
		return "string"
	}
	all := func(ok func(string) bool) bool {
		for _, c := range cells {
			if !ok(c) {
				return false
			}
		}
		return true
	}
	switch {
	case all(isBool):
		return "boolean"
	case all(func(s string) bool { _, err := strconv.ParseInt(s, 10, 64); return err == nil }):
		return "integer"
	case all(func(s string) bool { _, err := strconv.ParseFloat(s, 64); return err == nil }):
		// convert_dtypes turns a float column of whole numbers into integers.
		if all(func(s string) bool { f, _ := strconv.ParseFloat(s, 64); return f == math.Trunc(f) && !math.IsInf(f, 0) }) {
			return "integer"
		}
		return "number"
	}
	return "string"
}

func isBool(s string) bool {
	switch s {
	case "True", "TRUE", "true", "False", "FALSE", "false":
		return true
	}
	return false
}

func typed(kind, s string) any {
	switch kind {
	case "boolean":
		return strings.EqualFold(s, "true")
	case "integer":
		f, _ := strconv.ParseFloat(s, 64)
		return json.Number(strconv.FormatInt(int64(f), 10))
	case "number":
		return json.Number(s)
	}
	return s
}

// leafMessage is the error text of one leaf without its location prefix.
func leafMessage(e *jsonschema.ValidationError) string {
	s := strings.TrimSpace(e.Error())
	if strings.HasPrefix(s, "at '") {
		if i := strings.Index(s, "': "); i >= 0 {
			return s[i+3:]
		}
	}
	return s
}
