// Package vlmd is HEAL's variable-level metadata (VLMD) data dictionary:
// the document a HEAL study submits to the HEAL Data Platform, in its JSON
// and CSV forms (schema version 0.3.2, heal-vlmd/ holds HEAL's schemas), the
// mapping from a REDCap data dictionary to it, and validation against the
// official schemas.
package vlmd

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
)

// SchemaVersion is the version of HEAL's VLMD schema this package writes and
// validates against (heal-vlmd/schemas).
const SchemaVersion = "0.3.2"

// Dictionary is one VLMD data dictionary (the JSON root).
type Dictionary struct {
	Title         string  `json:"title"`
	Description   string  `json:"description,omitempty"`
	SchemaVersion string  `json:"schemaVersion,omitempty"`
	Version       string  `json:"version,omitempty"`
	Custom        Pairs   `json:"custom,omitempty"`
	Fields        []Field `json:"fields"`
}

// Field is one variable.
type Field struct {
	Section           string             `json:"section,omitempty"`
	Name              string             `json:"name"`
	Title             string             `json:"title,omitempty"`
	Description       string             `json:"description"`
	Type              string             `json:"type,omitempty"`
	Format            string             `json:"format,omitempty"`
	Constraints       *Constraints       `json:"constraints,omitempty"`
	EnumLabels        Pairs              `json:"enumLabels,omitempty"`
	MissingValues     []string           `json:"missingValues,omitempty"`
	Custom            Pairs              `json:"custom,omitempty"`
	StandardsMappings []StandardsMapping `json:"standardsMappings,omitempty"`
}

// Constraints are the field's value constraints. The schema types minimum
// and maximum as integers: decimal or date bounds go to Custom instead.
type Constraints struct {
	Required  bool     `json:"required,omitempty"`
	MaxLength *int     `json:"maxLength,omitempty"`
	Enum      []string `json:"enum,omitempty"`
	Pattern   string   `json:"pattern,omitempty"`
	Maximum   *int64   `json:"maximum,omitempty"`
	Minimum   *int64   `json:"minimum,omitempty"`
}

func (c *Constraints) empty() bool {
	return c == nil || !c.Required && c.MaxLength == nil && len(c.Enum) == 0 && c.Pattern == "" && c.Maximum == nil && c.Minimum == nil
}

// StandardsMapping links a field to a standard instrument and item (a HEAL
// CDE): source "heal-cde" for HEAL's own.
type StandardsMapping struct {
	Instrument *Ref `json:"instrument,omitempty"`
	Item       *Ref `json:"item,omitempty"`
}

// Ref is an instrument or item of a standard.
type Ref struct {
	URL    string `json:"url,omitempty"`
	Source string `json:"source,omitempty"`
	Title  string `json:"title,omitempty"`
	ID     string `json:"id,omitempty"`
}

// SourceHEALCDE is the schema's one controlled source name for instruments.
const SourceHEALCDE = "heal-cde"

// Pair is one key and value of an ordered map.
type Pair struct{ Key, Value string }

// Pairs is a JSON object whose keys keep their order (choice order for
// enumLabels), so the output is deterministic and reads like REDCap's.
type Pairs []Pair

// MarshalJSON writes the pairs as one object in order.
func (ps Pairs) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, p := range ps {
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(p.Key)
		v, _ := json.Marshal(p.Value)
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// UnmarshalJSON reads an object of strings, keeping the key order.
func (ps *Pairs) UnmarshalJSON(b []byte) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return fmt.Errorf("vlmd: expected an object of strings")
	}
	*ps = nil
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			return err
		}
		var v string
		if err := dec.Decode(&v); err != nil {
			return fmt.Errorf("vlmd: key %v: %w", k, err)
		}
		*ps = append(*ps, Pair{k.(string), v})
	}
	_, err := dec.Token()
	return err
}

// Get returns the value of key.
func (ps Pairs) Get(key string) (string, bool) {
	for _, p := range ps {
		if p.Key == key {
			return p.Value, true
		}
	}
	return "", false
}

// Set replaces key's value or appends it.
func (ps *Pairs) Set(key, value string) {
	for i := range *ps {
		if (*ps)[i].Key == key {
			(*ps)[i].Value = value
			return
		}
	}
	*ps = append(*ps, Pair{key, value})
}

// Finish drops empty constraints; call it after editing a field.
func (f *Field) Finish() {
	if f.Constraints.empty() {
		f.Constraints = nil
	}
}

// Cons returns the field's constraints, creating them.
func (f *Field) Cons() *Constraints {
	if f.Constraints == nil {
		f.Constraints = &Constraints{}
	}
	return f.Constraints
}

// WriteJSON writes the dictionary as indented JSON.
func (d *Dictionary) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(d)
}
