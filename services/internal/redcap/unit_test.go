package redcap

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/redcap-relay/relay/messages"
)

func TestParseProblems(t *testing.T) {
	msg := "\"1\",\"weight_kg\",\"22\",\"The value you provided could not be validated because it does not follow the expected format. Please try again.\"\n" +
		"\"2\",\"maristat\",\"01234\",\"The value is not a valid category for maristat\"\n" +
		"\"3\",\"notes\",\"line one\nline \"\"two\"\"\",\"Value 'line one\nline \"two\"' is too long\""
	ps := parseProblems(msg)
	if len(ps) != 3 {
		t.Fatalf("got %d problems: %+v", len(ps), ps)
	}
	if ps[0] != (Problem{"1", "weight_kg", "22", "The value you provided could not be validated because it does not follow the expected format. Please try again."}) {
		t.Errorf("problem 0: %+v", ps[0])
	}
	if ps[1].Record != "2" || ps[1].Field != "maristat" || ps[1].Value != "01234" {
		t.Errorf("problem 1: %+v", ps[1])
	}
	if ps[2].Value != "line one\nline \"two\"" || strings.Contains(ps[2].Message, "line one") {
		t.Errorf("problem 2 (value must be kept but redacted from the message): %+v", ps[2])
	}
	for _, notProblems := range []string{
		"You do not have permissions to use the API",
		`The following values in the parameter "fields" are not valid: 'x', 'y'`,
		`"1","2"`,
	} {
		if ps := parseProblems(notProblems); ps != nil {
			t.Errorf("%q parsed as problems: %+v", notProblems, ps)
		}
	}
	e := &Error{Site: "site-a", Call: "import records", Status: 400, Problems: ps, Message: problemsText(ps)}
	s := e.Error()
	for _, v := range []string{"22", "01234", "line one"} {
		if strings.Contains(s, `"`+v+`"`) || strings.Contains(s, "'"+v+"'") || (len(v) > 3 && strings.Contains(s, v)) {
			t.Errorf("value %q leaked into %q", v, s)
		}
	}
	if !strings.HasPrefix(s, "site-a: import records: HTTP 400: REDCap rejected the data (3 problems)") {
		t.Errorf("text: %s", s)
	}
}

func TestDecodeRows(t *testing.T) {
	body := []byte(`[{"record_id":"1","redcap_repeat_instrument":"","redcap_repeat_instance":"","x":"a\"redcap_repeat_instance\":5"},
	 {"record_id":"1","redcap_repeat_instrument":"bp","redcap_repeat_instance" : 12,"x":""}]`)
	rows, err := decodeRows(body)
	if err != nil {
		t.Fatal(err)
	}
	want := []messages.Row{
		{"record_id": "1", "redcap_repeat_instrument": "", "redcap_repeat_instance": "", "x": `a"redcap_repeat_instance":5`},
		{"record_id": "1", "redcap_repeat_instrument": "bp", "redcap_repeat_instance": "12", "x": ""},
	}
	if !reflect.DeepEqual(rows, want) {
		t.Fatalf("got %#v", rows)
	}
	rows, err = decodeRows([]byte(`[{"a":1.5,"b":null,"c":true,"d":"x"}]`))
	if err != nil || !reflect.DeepEqual(rows, []messages.Row{{"a": "1.5", "b": "", "c": "1", "d": "x"}}) {
		t.Fatalf("loose: %v %#v", err, rows)
	}
	if _, err := decodeRows([]byte(`[{"a":{"b":1}}]`)); err == nil {
		t.Fatal("nested value accepted")
	}
	if _, err := decodeRows([]byte(`[{"a":"1"},{"a":`)); err == nil {
		t.Fatal("truncated body accepted")
	}
}

func TestDecodeLooseInts(t *testing.T) {
	var ev []messages.Event
	if err := decodeLoose([]byte(`[{"event_name":"E 1","arm_num":"2","unique_event_name":"e_1_arm_2","event_id":"41","day_offset":"1.5","offset_min":"","offset_max":0}]`), &ev); err != nil {
		t.Fatal(err)
	}
	if ev[0].ArmNum != 2 || ev[0].EventID != 41 || ev[0].DayOffset != 1 || ev[0].EventName != "E 1" {
		t.Fatalf("%+v", ev[0])
	}
}

func TestErrorText(t *testing.T) {
	for body, want := range map[string]string{
		`{"error":"You do not have permissions to use the API"}`:                                                            "You do not have permissions to use the API",
		`ERROR: You cannot export arms for classic projects`:                                                                "You cannot export arms for classic projects",
		`<?xml version="1.0" encoding="UTF-8" ?><hash><error>The value of the parameter &quot;content&quot;</error></hash>`: `The value of the parameter "content"`,
		`<!DOCTYPE html><html><head><title>404 Not Found</title></head></html>`:                                             `the server answered with an HTML page titled "404 Not Found"`,
		`Your IP address (127.0.0.1) has been banned due to suspected abuse.`:                                               `Your IP address (127.0.0.1) has been banned due to suspected abuse.`,
	} {
		if got, _ := errorText([]byte(body)); got != want {
			t.Errorf("%s: got %q want %q", body, got, want)
		}
	}
}

func TestReadToken(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	os.WriteFile(good, []byte("  0123456789ABCDEF0123456789ABCDEF\n"), 0o600)
	if tok, err := ReadToken(good, ""); err != nil || tok != "0123456789ABCDEF0123456789ABCDEF" {
		t.Fatalf("%q %v", tok, err)
	}
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte(`"SECRETSECRET-1"`), 0o600)
	_, err := ReadToken(bad, "")
	if err == nil || strings.Contains(err.Error(), "SECRETSECRET") || !strings.Contains(err.Error(), bad) {
		t.Fatalf("bad file: %v", err)
	}
	if _, err := ReadToken(filepath.Join(dir, "missing"), ""); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Fatalf("missing file: %v", err)
	}
	t.Setenv("RELAY_TEST_TOKEN", "ABCDEF0123")
	if tok, err := ReadToken("", "RELAY_TEST_TOKEN"); err != nil || tok != "ABCDEF0123" {
		t.Fatalf("%q %v", tok, err)
	}
	t.Setenv("RELAY_TEST_TOKEN", "bad token value")
	if _, err := ReadToken("", "RELAY_TEST_TOKEN"); err == nil || strings.Contains(err.Error(), "bad token value") || !strings.Contains(err.Error(), "RELAY_TEST_TOKEN") {
		t.Fatalf("env: %v", err)
	}
	if _, err := ReadToken("", "RELAY_TEST_TOKEN_UNSET"); err == nil {
		t.Fatal("unset env accepted")
	}
}

func TestNewValidates(t *testing.T) {
	const tok = "0123456789ABCDEF0123456789ABCDEF"
	for _, o := range []Options{
		{Site: "s", URL: "", Token: tok},
		{Site: "s", URL: "ftp://x/api/", Token: tok},
		{Site: "s", URL: "https:///api/", Token: tok},
		{Site: "s", URL: "https://x/api/", Token: ""},
		{Site: "s", URL: "https://x/api/", Token: "abc def"},
		{Site: "s", URL: "https://x/api/?token=" + tok, Token: tok},
		{Site: "s", URL: "https://x/api/", Token: tok, CAFile: "/nonexistent/ca.pem"},
	} {
		_, err := New(o)
		if err == nil {
			t.Errorf("%+v accepted", o.URL)
			continue
		}
		if strings.Contains(err.Error(), tok) || strings.Contains(err.Error(), "abc def") || !strings.HasPrefix(err.Error(), "s: ") {
			t.Errorf("error %q", err)
		}
	}
}

// TestDecodeRowsMatchesEncodingJSON cross-checks the hand-written scanner
// against encoding/json on strings with every kind of escape.
func TestDecodeRowsMatchesEncodingJSON(t *testing.T) {
	vals := []string{"", "0", "plain", "quote \" and \\ back", "line\nbreak\r\ttab", "é ü 中文 😀", "\u2028\u2029",
		"</script>&<>", "a\"redcap_repeat_instance\":5", "\x01ctl", "{not json}", "[1,2]", "  spaces  "}
	var want []messages.Row
	for i, v := range vals {
		want = append(want, messages.Row{"record_id": fmt.Sprint(i), "v": v, "k\"ey": v, "😀": "x"})
	}
	for _, escapeHTML := range []bool{true, false} {
		var buf strings.Builder
		enc := json.NewEncoder(&buf)
		enc.SetEscapeHTML(escapeHTML)
		if err := enc.Encode(want); err != nil {
			t.Fatal(err)
		}
		got, err := decodeRows([]byte(buf.String()))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("escapeHTML=%v:\n got %q\nwant %q", escapeHTML, got, want)
		}
	}
	// PHP's json_encode style: \/ and \uXXXX for non-ASCII, surrogate pairs
	got, err := decodeRows([]byte(`[{"a":"http:\/\/x\/y","b":"\u00e9\u4e2d\ud83d\ude00","c":"\ud83d"}]`))
	if err != nil || got[0]["a"] != "http://x/y" || got[0]["b"] != "é中😀" || got[0]["c"] != "\uFFFD" {
		t.Fatalf("php escapes: %q %v", got, err)
	}
	for _, bad := range []string{``, `[`, `[{]`, `[{"a"}]`, `[{"a":}]`, `[{"a":"b"]`, `[{"a":"b"}`, `[{"a":"b"}] x`, `{"a":"b"}`, `[{"a":01x}]`, `[{"a":"b\"}]`, `[{"a":tru}]`} {
		if _, err := decodeRows([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if rows, err := decodeRows([]byte(" [ ] ")); err != nil || len(rows) != 0 || rows == nil {
		t.Fatalf("empty array: %v %v", rows, err)
	}
}

// FuzzDecodeRows: whatever encoding/json decodes as string rows, the
// scanner decodes to the same rows.
func FuzzDecodeRows(f *testing.F) {
	f.Add([]byte(`[{"a":"b","c":"\u00e9\n"},{"a":""}]`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`[{"k\"":"v\\"}]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if !utf8.Valid(b) {
			return
		}
		var want []messages.Row
		if err := json.Unmarshal(b, &want); err != nil || want == nil {
			return
		}
		for _, r := range want {
			if r == nil {
				return // JSON null element: stdlib gives a nil map
			}
		}
		got, err := decodeRows(b)
		if err != nil {
			t.Fatalf("%q: stdlib ok, scanner: %v", b, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%q:\n got %q\nwant %q", b, got, want)
		}
	})
}

func TestACutOffErrorAnswerIsNeverReadAsREDCapsText(t *testing.T) {
	c := &Client{site: "destination"}
	full := `{"error":"One or more of the records provided cannot be deleted because they do not exist in the project. The following records do not exist: alpha-3"}`
	if e := c.statusError("delete records", 400, []byte(full)); e.Kind != KindPermanent || !strings.Contains(e.Message, "do not exist") {
		t.Fatalf("a complete answer: %+v", e)
	}
	for _, cut := range []string{full[:60], full[:len(full)-2], `<?xml version="1.0" encoding="UTF-8" ?><hash><error>One or more of the rec`} {
		e := c.statusError("delete records", 400, []byte(cut))
		if e.Kind != KindTransient || strings.Contains(e.Message, "do not") || strings.Contains(e.Message, "records provided") {
			t.Errorf("cut answer %q: %+v, want a transient error that quotes nothing of it", cut, e)
		}
	}
}
