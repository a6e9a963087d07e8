package redcap

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/redcap-relay/relay/messages"
)

type (
	jsonSyntaxError = json.SyntaxError
	jsonTypeError   = json.UnmarshalTypeError
)

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

var repeatKey = []byte(`"redcap_repeat_instance"`)

// decodeRows decodes a flat JSON export. REDCap sends every value as a
// string except redcap_repeat_instance, an integer on repeating rows; those
// integers are quoted in place first so that the fast map[string]string
// decode works, and anything else unusual takes the slower generic path.
func decodeRows(body []byte) ([]messages.Row, error) {
	body = quoteRepeatInstances(body)
	var rows []messages.Row
	err := json.Unmarshal(body, &rows)
	if err == nil {
		return rows, nil
	}
	var te *json.UnmarshalTypeError
	if !errors.As(err, &te) {
		return nil, err
	}
	return decodeRowsLoose(body)
}

// quoteRepeatInstances turns `"redcap_repeat_instance":12` into
// `"redcap_repeat_instance":"12"`. The key with an unescaped closing quote
// and colon cannot occur inside a JSON string, so values are never touched.
func quoteRepeatInstances(body []byte) []byte {
	first := bytes.Index(body, repeatKey)
	if first < 0 {
		return body
	}
	var out []byte
	last := 0 // body[last:] not yet copied
	i := first
	for i >= 0 {
		j := i + len(repeatKey)
		for j < len(body) && isSpace(body[j]) {
			j++
		}
		if j < len(body) && body[j] == ':' {
			j++
			for j < len(body) && isSpace(body[j]) {
				j++
			}
			if j < len(body) && (body[j] == '-' || (body[j] >= '0' && body[j] <= '9')) {
				k := j
				for k < len(body) && (body[k] == '-' || body[k] == '.' || (body[k] >= '0' && body[k] <= '9')) {
					k++
				}
				if out == nil {
					out = make([]byte, 0, len(body)+len(body)/256+16)
				}
				out = append(out, body[last:j]...)
				out = append(out, '"')
				out = append(out, body[j:k]...)
				out = append(out, '"')
				last = k
			}
		}
		next := bytes.Index(body[j:], repeatKey)
		if next < 0 {
			break
		}
		i = j + next
	}
	if out == nil {
		return body
	}
	return append(out, body[last:]...)
}

func isSpace(b byte) bool { return b == ' ' || b == '\t' || b == '\n' || b == '\r' }

// decodeRowsLoose accepts numbers, booleans and nulls where REDCap should
// have sent strings (other servers and versions), and rejects nesting.
func decodeRowsLoose(body []byte) ([]messages.Row, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var raw []map[string]any
	if err := dec.Decode(&raw); err != nil {
		return nil, err
	}
	rows := make([]messages.Row, len(raw))
	for i, m := range raw {
		r := make(messages.Row, len(m))
		for k, v := range m {
			switch x := v.(type) {
			case string:
				r[k] = x
			case json.Number:
				r[k] = x.String()
			case nil:
				r[k] = ""
			case bool:
				r[k] = map[bool]string{true: "1", false: "0"}[x]
			default:
				return nil, fmt.Errorf("row %d column %q: a nested JSON value where a string was expected", i, k)
			}
		}
		rows[i] = r
	}
	return rows, nil
}

// decodeLoose decodes a small metadata answer into v, accepting numbers
// sent as strings ("1", "") for the integer fields of the messages types.
func decodeLoose(body []byte, v any) error {
	err := json.Unmarshal(body, v)
	if err == nil {
		return nil
	}
	var te *json.UnmarshalTypeError
	if !errors.As(err, &te) {
		return err
	}
	var generic any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&generic); err != nil {
		return err
	}
	fixed, err := json.Marshal(numify(generic))
	if err != nil {
		return err
	}
	return json.Unmarshal(fixed, v)
}

// numify turns numeric strings into numbers and "" into 0 wherever they
// sit: only used after a typed decode failed, on small metadata answers
// whose string fields (names, labels) are re-checked by the typed decode.
func numify(v any) any {
	switch x := v.(type) {
	case []any:
		for i := range x {
			x[i] = numify(x[i])
		}
	case map[string]any:
		for k, e := range x {
			if intKeys[k] {
				if n, ok := looseInt(e); ok {
					x[k] = n
					continue
				}
			}
			x[k] = numify(e)
		}
	}
	return v
}

// looseInt reads "", "3", "1.5" or a JSON number as an integer (day
// offsets may be fractional in REDCap; the messages types keep whole days).
func looseInt(v any) (json.Number, bool) {
	var s string
	switch x := v.(type) {
	case string:
		s = x
	case json.Number:
		s = x.String()
	default:
		return "", false
	}
	if s == "" {
		return "0", true
	}
	if _, err := strconv.Atoi(s); err == nil {
		return json.Number(s), true
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		return json.Number(strconv.Itoa(int(f))), true
	}
	return "", false
}

// intKeys are the integer-typed keys of the messages REDCap types.
var intKeys = map[string]bool{
	"arm_num": true, "event_id": true, "day_offset": true, "offset_min": true, "offset_max": true,
	"data_access_group_id": true, "project_id": true, "is_longitudinal": true,
	"has_repeating_instruments_or_events": true, "surveys_enabled": true,
	"record_autonumbering_enabled": true, "in_production": true,
}
