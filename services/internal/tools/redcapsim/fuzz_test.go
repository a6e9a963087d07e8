package redcapsim

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

// fuzzEnv is shared by a fuzz target's iterations: a loopback simulator
// with the simple project.
func fuzzEnv(f *testing.F) *simEnv {
	s, u := startSim(f, Options{MaxRequestBytes: 1 << 20})
	pid, err := s.LoadProject("testdata/projects/simple")
	if err != nil {
		f.Fatal(err)
	}
	_ = s.AddToken(pid, testToken, FullRights(), "")
	return &simEnv{s: s, url: u, pid: pid}
}

// checkImport posts data and asserts: no panic (a 500 would show one), and
// on any refusal the project is unchanged.
func checkImport(t *testing.T, e *simEnv, format, data string) {
	before, _ := e.s.ExportRows(e.pid)
	code, _, body := post(t, e.url, form("token", testToken, "content", "record", "format", format, "returnFormat", "json", "data", data))
	if code >= 500 {
		t.Fatalf("status %d for %q: %s", code, data, body)
	}
	if code != 200 {
		after, _ := e.s.ExportRows(e.pid)
		if !reflect.DeepEqual(before, after) {
			t.Fatalf("refused import (%d %s) changed the project", code, body)
		}
	}
}

func FuzzImportJSON(f *testing.F) {
	e := fuzzEnv(f)
	for _, s := range []string{`[{"record_id":"1","sex":"1"}]`, `[{"record_id":"9","dob":"2020-02-30","race___1":"1"}]`,
		`{"record_id":"1"}`, `[{"record_id":1,"weight":2}]`, `[{"record_id":"2","bmi":"1"},{"record_id":"3","email":"x"}]`, `[`, `[null]`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data string) { e.t = t; checkImport(t, e, "json", data) })
}

func FuzzImportCSV(f *testing.F) {
	e := fuzzEnv(f)
	for _, s := range []string{"record_id,sex\n1,1\n", "record_id,dob\n9,2020-02-30\n", "record_id,\"name_first\"\n\"1\",\"a\"\"b\"\n",
		"record_id,foo\n1,2\n", "record_id\n\n", "\"unterminated\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data string) { e.t = t; checkImport(t, e, "csv", data) })
}

// FuzzParseRequest throws arbitrary form bodies at the handler: it must
// always answer (never panic) with a REDCap-shaped status.
func FuzzParseRequest(f *testing.F) {
	s, u := startSim(f, Options{MaxRequestBytes: 1 << 20})
	pid, _ := s.LoadProject("testdata/projects/longitudinal")
	_ = s.AddToken(pid, testToken, FullRights(), "")
	for _, b := range []string{"token=" + testToken + "&content=record&format=json&records[0]=100&fields[]=study_id",
		"token=" + testToken + "&content=record&format=csv&events=x&filterLogic=[age]>'3'",
		"token=" + testToken + "&content=metadata&fields=a,b&forms[1]=c", "token=&content=", "%zz",
		"token=" + testToken + "&content=record&action=delete&records=",
		"token=" + testToken + "&content=record&format=json&filterLogic=([sex]%3D1 or not [age]<>'') and [enrollment_arm_1][age]>=1",
		"token=" + testToken + "&content=log&beginTime=2020-01-01 00:00&format=xml"} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, body string) {
		resp, err := http.Post(u, "application/x-www-form-urlencoded", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch resp.StatusCode {
		case 200, 400, 403, 413:
		default:
			t.Fatalf("status %d for %q: %s", resp.StatusCode, body, b)
		}
	})
}

// FuzzParseJSONRows holds the import's JSON scanner to encoding/json: the
// same rows for what encoding/json reads as an array of flat objects, a
// refusal (never a panic) for the rest.
func FuzzParseJSONRows(f *testing.F) {
	for _, s := range []string{`[{"a":"1","b":2,"c":true,"d":null}]`, `[{"a":"\u00e9\n\"x\"","b":-1.5e3}]`, `[]`, ` [ {} , null ] `,
		`[{"a":[1]}]`, `{"a":"b"}`, `[{"a":"1"}] x`, `[{"a":"\ud83d\ude00"}]`, `[{"a":01}]`, `["x"]`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data string) {
		rows, notArray, err := parseJSONRows(data)
		var ref []map[string]any
		dec := json.NewDecoder(strings.NewReader(data))
		dec.UseNumber()
		refErr := dec.Decode(&ref)
		if refErr == nil {
			if _, e := dec.Token(); e != io.EOF {
				refErr = errors.New("trailing data")
			}
		}
		if notArray {
			return
		}
		if refErr != nil {
			if err == nil {
				t.Fatalf("accepted what encoding/json refuses (%v): %q", refErr, data)
			}
			return
		}
		flat := true
		for _, m := range ref {
			for _, v := range m {
				switch v.(type) {
				case map[string]any, []any:
					flat = false
				}
			}
		}
		if !flat {
			if err == nil {
				t.Fatalf("accepted nested values: %q", data)
			}
			return
		}
		if err != nil {
			t.Fatalf("refused (%v) what encoding/json reads: %q", err, data)
		}
		if len(rows) != len(ref) {
			t.Fatalf("%d rows, encoding/json %d: %q", len(rows), len(ref), data)
		}
		for i, m := range ref {
			if len(rows[i]) != len(m) {
				t.Fatalf("row %d: %v vs %v", i, rows[i], m)
			}
			for k, v := range m {
				want := ""
				switch x := v.(type) {
				case string:
					want = x
				case json.Number:
					want = x.String()
				case bool:
					want = map[bool]string{true: "1", false: "0"}[x]
				}
				if rows[i][k] != want {
					t.Fatalf("row %d key %q: %q, encoding/json %q (input %q)", i, k, rows[i][k], want, data)
				}
			}
		}
	})
}
