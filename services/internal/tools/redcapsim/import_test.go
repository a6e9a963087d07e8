package redcapsim

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/redcap-relay/relay/messages"
)

// typesProject has one field per validation type.
func typesProject(t testing.TB) *simEnv {
	t.Helper()
	s, u := startSim(t, Options{})
	f := func(name, typ, val, choices string) messages.Field {
		return messages.Field{FieldName: name, FormName: "visit", FieldType: typ, FieldLabel: name, TextValidationTypeOrShowSlider: val, SelectChoicesOrCalculations: choices}
	}
	pid, err := s.CreateProject(ProjectSpec{Title: "types", Fields: []messages.Field{
		f("record_id", "text", "", ""),
		f("d_ymd", "text", "date_ymd", ""), f("d_mdy", "text", "date_mdy", ""), f("d_dmy", "text", "date_dmy", ""),
		f("dt", "text", "datetime_ymd", ""), f("dts", "text", "datetime_seconds_ymd", ""), f("tm", "text", "time", ""),
		f("int", "text", "integer", ""), f("num", "text", "number", ""), f("num1", "text", "number_1dp", ""),
		f("num2c", "text", "number_2dp_comma_decimal", ""), f("email", "text", "email", ""), f("phone", "text", "phone", ""),
		f("zip", "text", "zipcode", ""), f("radio", "radio", "", "1, a | 2, b"), f("dd", "dropdown", "", "x, X | y, Y"),
		f("cb", "checkbox", "", "1, one | 2, two"), f("yn", "yesno", "", ""), f("tf", "truefalse", "", ""),
		f("calc", "calc", "", "[int]*2"), f("notes", "notes", "", ""), f("file", "file", "", ""),
	}})
	if err != nil {
		t.Fatal(err)
	}
	_ = s.AddToken(pid, testToken, FullRights(), "")
	return &simEnv{t: t.(*testing.T), s: s, url: u, pid: pid}
}

func TestImportValidationByType(t *testing.T) {
	e := typesProject(t)
	good := map[string][]string{
		"d_ymd": {"2024-02-29", "1999-12-31"}, "d_mdy": {"2024-01-31"}, "d_dmy": {"2024-12-01"},
		"dt": {"2024-01-31 23:59"}, "dts": {"2024-01-31 23:59:59"}, "tm": {"00:00", "23:59"},
		"int": {"0", "-12", "+7"}, "num": {"1", "1.5", "-.5", "1e3"}, "num1": {"1.0", "-2.5"}, "num2c": {"36,50"},
		"email": {"a.b@example.org"}, "phone": {"(405) 321-1111", "405-321-1111"}, "zip": {"12345", "12345-6789"},
		"radio": {"1", "2"}, "dd": {"x"}, "cb___1": {"0", "1"}, "yn": {"0", "1"}, "tf": {"1"},
		"visit_complete": {"0", "1", "2"}, "notes": {"line 1\nline 2"},
	}
	bad := map[string][]string{
		"d_ymd": {"2023-02-29", "31/12/2024", "2024-1-1x"}, "dt": {"2024-01-31", "2024-01-31 24:00", "2024-01-31 12:00:00"},
		"dts": {"2024-01-31 12:00"}, "tm": {"24:00", "7:5"}, "int": {"1.0", "one"}, "num": {"1,5", "abc"},
		"num1": {"1", "1.25"}, "num2c": {"36.50", "36,5"}, "email": {"nope", "a@b"}, "phone": {"12345", "(105) 321-1111"},
		"zip": {"1234"}, "radio": {"3", "a"}, "dd": {"X"}, "cb___2": {"2", "yes"}, "yn": {"yes"}, "tf": {"true"},
		"visit_complete": {"3", "Complete"},
	}
	for field, vals := range good {
		for _, v := range vals {
			code, body := e.call("content", "record", "format", "json", "data", `[{"record_id":"1","`+field+`":`+jsonStr(v)+`}]`)
			if code != 200 || body != `{"count": 1}` {
				t.Errorf("%s=%q refused: %d %s", field, v, code, body)
			}
		}
	}
	before, _ := e.s.ExportRows(e.pid)
	for field, vals := range bad {
		for _, v := range vals {
			code, body := e.call("content", "record", "format", "csv", "returnFormat", "csv",
				"data", "record_id,"+field+"\n2,"+csvStr(v)+"\n")
			if code != 400 || !strings.HasPrefix(body, `ERROR: "2","`+field+`","`) {
				t.Errorf("%s=%q accepted or wrong error: %d %s", field, v, code, body)
			}
		}
	}
	after, _ := e.s.ExportRows(e.pid)
	if len(after) != len(before) {
		t.Fatalf("a refused import saved rows: %d → %d", len(before), len(after))
	}
	// dateFormat converts MDY/DMY input to Y-M-D.
	if code, body := e.call("content", "record", "format", "json", "dateFormat", "MDY", "data", `[{"record_id":"3","d_mdy":"12/31/2016","dt":"12/31/2016 10:00"}]`); code != 200 {
		t.Fatal(body)
	}
	if code, body := e.call("content", "record", "format", "json", "dateFormat", "DMY", "data", `[{"record_id":"4","d_dmy":"31/12/2016"}]`); code != 200 {
		t.Fatal(body)
	}
	_, body := e.call("content", "record", "format", "csv", "fields", "record_id,d_mdy,d_dmy,dt", "records", "3,4")
	if body != "record_id,d_mdy,d_dmy,dt\n3,2016-12-31,,\"2016-12-31 10:00\"\n4,,2016-12-31,\n" {
		t.Fatalf("dateFormat: %q", body)
	}
}

func jsonStr(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`).Replace(s) + `"`
}

func csvStr(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

func TestImportAllOrNothingAndErrorLines(t *testing.T) {
	e := typesProject(t)
	data := `[{"record_id":"1","int":"5"},{"record_id":"2","int":"x","radio":"9"},{"record_id":"3","email":"bad"}]`
	code, body := e.call("content", "record", "format", "json", "returnFormat", "json", "data", data)
	want := `{"error":"\"2\",\"int\",\"x\",\"The value you provided could not be validated because it does not follow the expected format. Please try again.\"\n\"2\",\"radio\",\"9\",\"The value is not a valid category for radio\"\n\"3\",\"email\",\"bad\",\"The value you provided could not be validated because it does not follow the expected format. Please try again.\""}`
	if code != 400 || body != want {
		t.Fatalf("got %d %s\nwant %s", code, body, want)
	}
	if rows, _ := e.s.ExportRows(e.pid); len(rows) != 0 {
		t.Fatalf("record 1 was saved despite errors: %v", rows)
	}
	// Unknown fields: one structural message.
	code, body = e.call("content", "record", "format", "json", "returnFormat", "csv", "data", `[{"record_id":"1","foo":"1","baz":"2"}]`)
	if code != 400 || body != "ERROR: The following fields were not found in the project as real data fields: baz, foo" {
		t.Fatalf("unknown fields: %d %s", code, body)
	}
	// Malformed JSON, and a JSON object instead of an array.
	code, body = e.call("content", "record", "format", "json", "returnFormat", "json", "data", `[{"record_id":`)
	if code != 400 || !strings.HasPrefix(body, `{"error":"The data being imported is not formatted correctly. PHP error from JSON decoder:`) {
		t.Fatalf("bad JSON: %d %s", code, body)
	}
	code, body = e.call("content", "record", "format", "json", "returnFormat", "json", "data", `{"record_id":"1","int":"5"}`)
	if code != 200 || body != `{"count": 0}` {
		t.Fatalf("object: %d %s", code, body)
	}
	// ImportRows errors name record and field but never the value.
	err := e.s.ImportRows(e.pid, []messages.Row{{"record_id": "9", "email": "secret-value"}}, false)
	if err == nil || strings.Contains(err.Error(), "secret-value") || !strings.Contains(err.Error(), `"email"`) {
		t.Fatalf("ImportRows error: %v", err)
	}
}

func TestImportReturnContentAndOverwrite(t *testing.T) {
	e := typesProject(t)
	two := "record_id,int\n1,5\n1,5\n2,6\n" // 3 rows, 2 records
	cases := []struct{ rc, rf, want string }{
		{"count", "json", `{"count": 2}`}, {"count", "csv", "2"}, {"count", "xml", `<?xml version="1.0" encoding="UTF-8" ?><count>2</count>`},
		{"ids", "json", `["1","2"]`}, {"ids", "csv", "id\n1\n2"}, {"ids", "xml", `<?xml version="1.0" encoding="UTF-8" ?><ids><id>1</id><id>2</id></ids>`},
		{"nothing", "json", ""}, {"bogus", "json", `{"count": 2}`}, {"auto_ids", "json", `{"count": 2}`},
	}
	for _, c := range cases {
		code, body := e.call("content", "record", "format", "csv", "returnContent", c.rc, "returnFormat", c.rf, "data", two)
		if code != 200 || body != c.want {
			t.Errorf("%s/%s: %d %q, want %q", c.rc, c.rf, code, body, c.want)
		}
	}
	code, body := e.call("content", "record", "format", "json", "forceAutoNumber", "true", "returnContent", "auto_ids", "returnFormat", "csv", "data", `[{"record_id":"a","int":"1"},{"record_id":"b","int":"2"},{"record_id":"a","num":"1"}]`)
	if code != 200 || body != "id,original_id\n3,a\n4,b" {
		t.Fatalf("auto_ids: %d %q", code, body)
	}
	// normal: blanks keep the value; overwrite: blanks erase it.
	e.call("content", "record", "format", "json", "data", `[{"record_id":"1","int":"5","notes":"keep"}]`)
	e.call("content", "record", "format", "json", "data", `[{"record_id":"1","int":"","notes":""}]`)
	_, body = e.call("content", "record", "format", "csv", "fields", "record_id,int,notes", "records", "1")
	if body != "record_id,int,notes\n1,5,keep\n" {
		t.Fatalf("normal: %q", body)
	}
	e.call("content", "record", "format", "json", "overwriteBehavior", "overwrite", "data", `[{"record_id":"1","int":""}]`)
	_, body = e.call("content", "record", "format", "csv", "fields", "record_id,int,notes", "records", "1")
	if body != "record_id,int,notes\n1,,keep\n" {
		t.Fatalf("overwrite: %q", body)
	}
	// An ID-only row creates the record.
	if code, body := e.call("content", "record", "format", "json", "data", `[{"record_id":"77"}]`); code != 200 || body != `{"count": 1}` {
		t.Fatalf("id only: %s", body)
	}
	if _, body := e.call("content", "record", "format", "csv", "fields", "record_id", "records", "77"); body != "record_id\n77\n" {
		t.Fatalf("id only export: %q", body)
	}
}

func TestImportLongitudinalAndRepeating(t *testing.T) {
	e := loadFixture(t, "longitudinal")
	// No redcap_event_name → first event.
	if code, body := e.call("content", "record", "format", "json", "data", `[{"study_id":"900","first_name":"A"}]`); code != 200 {
		t.Fatal(body)
	}
	_, body := e.call("content", "record", "format", "csv", "fields", "study_id,first_name", "records", "900")
	if body != "study_id,redcap_event_name,first_name\n900,enrollment_arm_1,A\n" {
		t.Fatalf("first event: %q", body)
	}
	code, body := e.call("content", "record", "format", "json", "returnFormat", "csv", "data", `[{"study_id":"900","redcap_event_name":"visit_11_arm_1"},{"study_id":"900","redcap_event_name":"visit_12_arm_1"}]`)
	if code != 400 || body != "ERROR: The following values of redcap_event_name are invalid: visit_11_arm_1, visit_12_arm_1" {
		t.Fatalf("bad events: %d %s", code, body)
	}
	code, body = e.call("content", "record", "format", "json", "returnFormat", "csv", "data", `[{"study_id":"900","redcap_event_name":"dose_1_arm_1","first_name":"B"}]`)
	if code != 400 || body != `ERROR: "900","first_name","B","This field ('first_name') exists on an instrument that is not designated for the event named 'Dose 1 (Arm 1: Drug A)'. You are not allowed to import data for this field into this event."` {
		t.Fatalf("not designated: %d %s", code, body)
	}
	// Two events of one record count once.
	code, body = e.call("content", "record", "format", "json", "data", `[{"study_id":"900","redcap_event_name":"dose_1_arm_1","pmq1":"1"},{"study_id":"900","redcap_event_name":"enrollment_arm_1","first_name":"C"}]`)
	if code != 200 || body != `{"count": 1}` {
		t.Fatalf("count: %d %s", code, body)
	}

	r := loadFixture(t, "vignette-repeating")
	code, body = r.call("content", "record", "format", "json", "returnContent", "ids", "data",
		`[{"record_id":"3","height":"1.5"},{"record_id":"3","redcap_repeat_instrument":"blood_pressure","redcap_repeat_instance":1,"sbp":"1.1"},{"record_id":"3","redcap_repeat_instrument":"blood_pressure","redcap_repeat_instance":"new","sbp":"1.2"}]`)
	if code != 200 || body != `["3"]` {
		t.Fatalf("repeating import: %d %s", code, body)
	}
	_, body = r.call("content", "record", "format", "csv", "records", "3", "fields", "record_id,height,sbp")
	if body != "record_id,redcap_repeat_instrument,redcap_repeat_instance,height,sbp\n3,,,1.5,\n3,blood_pressure,1,,1.1\n3,blood_pressure,2,,1.2\n" {
		t.Fatalf("repeating export: %q", body)
	}
	code, body = r.call("content", "record", "format", "json", "returnFormat", "csv", "data", `[{"record_id":"3","redcap_repeat_instrument":"intake","redcap_repeat_instance":1,"height":"1.0"}]`)
	if code != 400 || !strings.HasPrefix(body, `ERROR: "3","redcap_repeat_instrument","intake"`) {
		t.Fatalf("non-repeating instrument: %d %s", code, body)
	}
}

func TestDesignImports(t *testing.T) {
	e := typesProject(t)
	e.call("content", "record", "format", "json", "data", `[{"record_id":"1","int":"5","notes":"n"}]`)
	// Metadata import: drop "notes", add "extra" on a new form.
	_, meta := e.call("content", "metadata", "format", "csv")
	if !strings.Contains(meta, "\nnotes,visit,,notes,notes,,,,,,,,,,,,,\n") {
		t.Fatalf("metadata csv: %q", meta)
	}
	meta = strings.Replace(meta, "\nnotes,visit,,notes,notes,,,,,,,,,,,,,\n", "\n", 1)
	meta += "extra,second,,text,Extra,,,,,,,,,,,,,\n"
	code, body := e.call("content", "metadata", "format", "csv", "data", meta)
	if code != 200 || body != "22" {
		t.Fatalf("metadata import: %d %s", code, body)
	}
	_, body = e.call("content", "record", "format", "csv", "fields", "record_id,int,extra")
	if body != "record_id,int,extra\n1,5,\n" {
		t.Fatalf("after metadata import: %q", body)
	}
	// Arms, events and mapping make the project longitudinal; data moves to the first event.
	if code, body = e.call("content", "arm", "format", "json", "data", `[{"arm_num":"1","name":"Arm 1"}]`); code != 200 || body != "1" {
		t.Fatalf("arm import: %d %s", code, body)
	}
	if code, body = e.call("content", "event", "format", "json", "data", `[{"event_name":"Baseline","arm_num":"1"},{"event_name":"Week 4","arm_num":"1"}]`); code != 200 || body != "2" {
		t.Fatalf("event import: %d %s", code, body)
	}
	if code, body = e.call("content", "formEventMapping", "format", "json", "data", `[{"arm_num":"1","unique_event_name":"baseline_arm_1","form":"visit"},{"arm_num":"1","unique_event_name":"week_4_arm_1","form":"second"}]`); code != 200 || body != "2" {
		t.Fatalf("fem import: %d %s", code, body)
	}
	_, body = e.call("content", "record", "format", "csv", "fields", "record_id,int,extra")
	if body != "record_id,redcap_event_name,int,extra\n1,baseline_arm_1,5,\n" {
		t.Fatalf("after design: %q", body)
	}
	_, body = e.call("content", "event", "format", "json")
	if !strings.Contains(body, `"unique_event_name":"week_4_arm_1"`) {
		t.Fatalf("events: %s", body)
	}
}

// TestCalcAndFileValuesIgnoredOnImport: REDCap ignores calculated fields on
// import (it computes them), whether the value is unchanged, changed or
// blank with overwrite; so re-importing an export that holds calc values
// (and file names) works and changes neither.
func TestCalcAndFileValuesIgnoredOnImport(t *testing.T) {
	e := loadFixture(t, "simple")
	code, export := e.call("content", "record", "format", "json", "records", "1")
	if code != 200 || !strings.Contains(export, `"bmi":"204.1"`) || !strings.Contains(export, `"mugshot":"mugshot-1.jpg"`) {
		t.Fatalf("seed: %d %s", code, export)
	}
	for _, c := range []struct{ behavior, data string }{
		{"normal", export}, // unchanged values, as exported
		{"normal", `[{"record_id":"1","bmi":"99.9","mugshot":"other.png"}]`},
		{"overwrite", `[{"record_id":"1","bmi":"","mugshot":""}]`},
	} {
		code, body := e.call("content", "record", "format", "json", "overwriteBehavior", c.behavior, "data", c.data)
		if code != 200 || body != `{"count": 1}` {
			t.Fatalf("%s %s: %d %s", c.behavior, c.data, code, body)
		}
		_, after := e.call("content", "record", "format", "json", "records", "1")
		if after != export {
			t.Fatalf("import of %s changed the record:\n%s\nwas\n%s", c.data, after, export)
		}
	}
	// EAV: re-importing the EAV export works too (checkbox rows left out:
	// EAV exports them as field=code, EAV import takes only field___code=0/1).
	_, eav := e.call("content", "record", "format", "json", "type", "eav", "records", "1", "fields", "record_id,bmi,mugshot,height")
	if !strings.Contains(eav, `"field_name":"bmi","value":"204.1"`) {
		t.Fatalf("EAV export: %s", eav)
	}
	if code, body := e.call("content", "record", "format", "json", "type", "eav", "data", eav); code != 200 || body != `{"count": 1}` {
		t.Fatalf("EAV re-import: %d %s", code, body)
	}
	if _, after := e.call("content", "record", "format", "json", "records", "1"); after != export {
		t.Fatalf("EAV re-import changed the record: %s", after)
	}
}

// TestEAVRowCounts: an EAV export has one row per stored value: the record
// ID, every non-blank field (calc fields included), checked checkbox
// choices only (value = code), saved form statuses, and file fields as
// their doc_id. Record 1 of the simple project (values documented with the
// fixture) gives 20 rows. A DAG-restricted token gets only its DAG's
// records, and no DAG rows.
func TestEAVRowCounts(t *testing.T) {
	e := loadFixture(t, "simple")
	_, body := e.call("content", "record", "format", "json", "type", "eav", "records", "1")
	var rows []map[string]any
	if err := json.Unmarshal([]byte(body), &rows); err != nil {
		t.Fatal(err)
	}
	fields := map[string]string{}
	for _, r := range rows {
		fields[r["field_name"].(string)] = r["value"].(string)
	}
	if len(rows) != 20 || fields["bmi"] != "204.1" || fields["race"] != "5" || fields["mugshot"] == "mugshot-1.jpg" || fields["mugshot"] == "" {
		t.Fatalf("%d EAV rows: %v", len(rows), fields)
	}
	dagTok := "13131313131313131313131313131313"
	e.s.AddToken(e.pid, dagTok, FullRights(), "dag_1")
	_, all := e.call("content", "record", "format", "json", "type", "eav")
	_, dag := e.callTok(dagTok, "content", "record", "format", "json", "type", "eav", "exportDataAccessGroups", "true")
	var allRows, dagRows []map[string]any
	json.Unmarshal([]byte(all), &allRows)
	json.Unmarshal([]byte(dag), &dagRows)
	recs := map[string]int{}
	for _, r := range dagRows {
		recs[r["record"].(string)]++
		if r["field_name"] == "redcap_data_access_group" {
			t.Fatal("a DAG token got DAG rows")
		}
	}
	if len(recs) != 3 || recs["4"] != 0 || recs["5"] != 0 || len(dagRows) >= len(allRows) {
		t.Fatalf("DAG token's EAV: %v (%d of %d rows)", recs, len(dagRows), len(allRows))
	}
}
