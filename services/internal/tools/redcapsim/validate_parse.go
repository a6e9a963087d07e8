package redcapsim

import (
	"bytes"
	"encoding/csv"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
)

// inRow is one incoming flat row: column name -> value (present keys only).
type inRow map[string]string

// parseData decodes the data parameter into flat rows. notArray is set for
// a JSON object instead of an array (REDCap answers 200 with count 0).
func parseData(data, format, typ string, delim rune) (rows []inRow, notArray bool, err error) {
	switch format {
	case "json":
		rows, notArray, err = parseJSONRows(data)
	case "csv":
		rows, err = parseCSVRows(data, delim)
	default:
		rows, err = parseXMLRows(data)
	}
	if err != nil || typ != "eav" {
		return rows, notArray, err
	}
	return eavToFlat(rows)
}

func parseCSVRows(data string, delim rune) ([]inRow, error) {
	data = strings.TrimPrefix(data, "\ufeff")
	cr := csv.NewReader(strings.NewReader(data))
	cr.Comma = delim
	cr.FieldsPerRecord = -1
	recs, err := cr.ReadAll()
	if err != nil {
		var pe *csv.ParseError
		line := 0
		if errors.As(err, &pe) {
			line = pe.Line
		}
		return nil, errorf(400, fmt.Sprintf("The data being imported is not formatted correctly. The CSV could not be parsed near line %d (check quoting).", line))
	}
	if len(recs) == 0 {
		return nil, nil
	}
	hdr := recs[0]
	for i := range hdr {
		hdr[i] = strings.TrimSpace(hdr[i])
	}
	rows := make([]inRow, 0, len(recs)-1)
	for li, rec := range recs[1:] {
		if len(rec) == 1 && rec[0] == "" {
			continue
		}
		if len(rec) != len(hdr) {
			return nil, errorf(400, fmt.Sprintf("The data being imported is not formatted correctly. Line %d has %d values but the header has %d columns.", li+2, len(rec), len(hdr)))
		}
		r := make(inRow, len(hdr))
		for i, h := range hdr {
			r[h] = rec[i]
		}
		rows = append(rows, r)
	}
	return rows, nil
}

func parseXMLRows(data string) ([]inRow, error) {
	dec := xml.NewDecoder(strings.NewReader(data))
	var rows []inRow
	var cur inRow
	var field string
	var text bytes.Buffer
	depth := 0
	itemDepth := 2 // <records><item>…; a bare <item> root (project attributes) is depth 1
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, errorf(400, "The data being imported is not formatted correctly. Error: the XML could not be parsed ("+xmlErrText(err)+").")
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			if depth == 1 && t.Name.Local == "item" {
				itemDepth = 1
			}
			switch depth {
			case itemDepth:
				cur = inRow{}
			case itemDepth + 1:
				field = t.Name.Local
				text.Reset()
			}
		case xml.CharData:
			if depth == itemDepth+1 {
				text.Write(t)
			}
		case xml.EndElement:
			switch depth {
			case itemDepth + 1:
				cur[field] = text.String()
			case itemDepth:
				rows = append(rows, cur)
			}
			depth--
		}
	}
	return rows, nil
}

func xmlErrText(err error) string {
	var se *xml.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("line %d", se.Line)
	}
	return "malformed XML"
}

// eavToFlat groups EAV rows (record, field_name, value, ...) into flat rows.
func eavToFlat(rows []inRow) ([]inRow, bool, error) {
	type key struct{ rec, ev, ri, inst string }
	var order []key
	byKey := map[key]inRow{}
	for i, r := range rows {
		f, ok := r["field_name"]
		if !ok {
			return nil, false, errorf(400, fmt.Sprintf("The data being imported is not formatted correctly. EAV row %d has no field_name.", i+1))
		}
		k := key{r["record"], r["redcap_event_name"], r["redcap_repeat_instrument"], r["redcap_repeat_instance"]}
		fr, ok := byKey[k]
		if !ok {
			fr = inRow{"\x00record": k.rec}
			if _, has := r["redcap_event_name"]; has {
				fr["redcap_event_name"] = k.ev
			}
			if _, has := r["redcap_repeat_instrument"]; has {
				fr["redcap_repeat_instrument"] = k.ri
			}
			if _, has := r["redcap_repeat_instance"]; has {
				fr["redcap_repeat_instance"] = k.inst
			}
			byKey[k] = fr
			order = append(order, k)
		}
		fr[f] = r["value"]
	}
	out := make([]inRow, len(order))
	for i, k := range order {
		out[i] = byKey[k]
	}
	return out, false, nil
}
