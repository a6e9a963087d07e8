package vlmd

import (
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// The CSV form (HEAL's csvtemplate/fields.json): one row per field, lists
// joined with '|', maps as k=v|k=v, nested keys as columns. Every row
// carries schemaVersion, as the schema asks of CSV dictionaries.

// csvColumns are written in this order; columns no field uses are left out.
var csvColumns = []string{
	"schemaVersion", "section", "name", "title", "description", "type", "format",
	"constraints.required", "constraints.maxLength", "constraints.enum", "constraints.pattern",
	"constraints.maximum", "constraints.minimum", "enumLabels", "missingValues", "custom",
}

// mappingColumns are per standards mapping (index i).
var mappingColumns = []string{"instrument.source", "instrument.title", "instrument.id", "instrument.url", "item.source", "item.id", "item.url"}

// CSVRow flattens one field to its CSV cells by column name.
func CSVRow(f Field) map[string]string {
	r := map[string]string{
		"schemaVersion": SchemaVersion, "section": f.Section, "name": f.Name, "title": f.Title,
		"description": f.Description, "type": f.Type, "format": f.Format,
		"enumLabels": joinPairs(f.EnumLabels), "missingValues": strings.Join(f.MissingValues, "|"),
		"custom": joinPairs(f.Custom),
	}
	if c := f.Constraints; c != nil {
		if c.Required {
			r["constraints.required"] = "true"
		}
		if c.MaxLength != nil {
			r["constraints.maxLength"] = strconv.Itoa(*c.MaxLength)
		}
		r["constraints.enum"] = strings.Join(c.Enum, "|")
		r["constraints.pattern"] = c.Pattern
		if c.Maximum != nil {
			r["constraints.maximum"] = strconv.FormatInt(*c.Maximum, 10)
		}
		if c.Minimum != nil {
			r["constraints.minimum"] = strconv.FormatInt(*c.Minimum, 10)
		}
	}
	for i, m := range f.StandardsMappings {
		p := fmt.Sprintf("standardsMappings[%d].", i)
		if in := m.Instrument; in != nil {
			r[p+"instrument.source"], r[p+"instrument.title"], r[p+"instrument.id"], r[p+"instrument.url"] = in.Source, in.Title, in.ID, in.URL
		}
		if it := m.Item; it != nil {
			r[p+"item.source"], r[p+"item.id"], r[p+"item.url"] = it.Source, it.ID, it.URL
		}
	}
	for k, v := range r {
		if v == "" {
			delete(r, k)
		}
	}
	return r
}

func joinPairs(ps Pairs) string {
	parts := make([]string, len(ps))
	for i, p := range ps {
		parts[i] = p.Key + "=" + p.Value
	}
	return strings.Join(parts, "|")
}

// WriteCSV writes the dictionary's fields in the CSV form.
func WriteCSV(w io.Writer, fields []Field) error {
	rows := make([]map[string]string, len(fields))
	used := map[string]bool{}
	maxMappings := 0
	for i, f := range fields {
		rows[i] = CSVRow(f)
		for k := range rows[i] {
			used[k] = true
		}
		maxMappings = max(maxMappings, len(f.StandardsMappings))
	}
	var header []string
	for _, c := range csvColumns {
		if used[c] {
			header = append(header, c)
		}
	}
	for i := 0; i < maxMappings; i++ {
		for _, c := range mappingColumns {
			if k := fmt.Sprintf("standardsMappings[%d].%s", i, c); used[k] {
				header = append(header, k)
			}
		}
	}
	cw := csv.NewWriter(w)
	if err := cw.Write(header); err != nil {
		return err
	}
	rec := make([]string, len(header))
	for _, r := range rows {
		for j, c := range header {
			rec[j] = r[c]
		}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}
