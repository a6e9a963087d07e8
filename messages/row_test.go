package messages

import (
	"encoding/json"
	"reflect"
	"testing"
)

// Row's own encoding is byte-for-byte what encoding/json writes for a
// map[string]string, apart from HTML escaping, and decodes back to the same row.
func TestRowJSONRoundTrip(t *testing.T) {
	rows := []Row{
		{},
		{"record_id": "1", "name": "Ana \"Nutmeg\" O'Brien", "notes": "line 1\nline 2\ttab \\ back", "ctrl": "\x01\x1f"},
		{"unicode": "Łódź – 東京 😀", "empty": "", "bad_utf8": "a\xffb"},
		{"z": "1", "a": "2", "m": "3"},
	}
	for _, r := range rows {
		got, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := json.Marshal(map[string]string(r))
		if string(got) != string(want) {
			t.Errorf("encoding differs:\n got %s\nwant %s", got, want)
		}
		var back Row
		if err := json.Unmarshal(got, &back); err != nil {
			t.Fatal(err)
		}
		if r["bad_utf8"] != "" {
			r = Row{"unicode": r["unicode"], "empty": "", "bad_utf8": "a\ufffdb"}
		}
		if !reflect.DeepEqual(back, r) {
			t.Errorf("round trip: got %q want %q", back, r)
		}
	}
}

func TestRowDecodesGeneralJSON(t *testing.T) {
	var r Row
	if err := json.Unmarshal([]byte(` { "a" : "x\u00e9\/" , "b":"" } `), &r); err != nil {
		t.Fatal(err)
	}
	if r["a"] != "xé/" || r["b"] != "" || len(r) != 2 {
		t.Fatalf("got %q", r)
	}
	for _, bad := range []string{`{"a":1}`, `{"a":"x",}`, `["a"]`, `{"a":"x"`} {
		if err := json.Unmarshal([]byte(bad), &r); err == nil {
			t.Errorf("%s decoded without error", bad)
		}
	}
}

func FuzzRowJSON(f *testing.F) {
	f.Add(`{"a":"b"}`)
	f.Add(`{"a":"b\n","c":""}`)
	f.Fuzz(func(t *testing.T, s string) {
		var fast Row
		errFast := json.Unmarshal([]byte(s), &fast)
		var ref map[string]string
		errRef := json.Unmarshal([]byte(s), &ref)
		if (errFast == nil) != (errRef == nil) {
			t.Fatalf("%q: fast err %v, reference err %v", s, errFast, errRef)
		}
		if errFast == nil && !reflect.DeepEqual(map[string]string(fast), ref) {
			t.Fatalf("%q: fast %q, reference %q", s, fast, ref)
		}
	})
}
