package redcap

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
)

type (
	jsonSyntaxError = json.SyntaxError
	jsonTypeError   = json.UnmarshalTypeError
)

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

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
