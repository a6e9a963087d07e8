package redcapsim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redcap-relay/relay/messages"
)

func TestMethodAndTokenRules(t *testing.T) {
	e := loadFixture(t, "simple")
	resp, err := http.Get(e.url)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 501 || string(b) != `<?xml version="1.0" encoding="UTF-8" ?><hash><error>The requested method is not implemented.</error></hash>` {
		t.Fatalf("GET: %d %s", resp.StatusCode, b)
	}
	denied := "You do not have permissions to use the API"
	for _, tok := range []string{"", "BAD00000000000000000000000000000", "0123456789ABCDEF0123456789ABCDE!", testToken + "\n"} {
		code, body := e.callTok(tok, "content", "record", "format", "csv")
		if code != 403 || body != "ERROR: "+denied {
			t.Errorf("token %q: %d %q", tok, code, body)
		}
	}
	// The token is checked before content.
	code, body := e.callTok("BAD00000000000000000000000000000", "content", "nonsense", "format", "json")
	if code != 403 || body != `{"error":"`+denied+`"}` {
		t.Errorf("bad token + bad content: %d %s", code, body)
	}
	code, body = e.call("content", "nonsense", "format", "json")
	if code != 400 || body != `{"error":"The value of the parameter \"content\" is not valid"}` {
		t.Errorf("bad content: %d %s", code, body)
	}
	// returnFormat wins over format; unknown returnFormat is xml.
	_, body = e.call("content", "nonsense", "format", "json", "returnFormat", "csv")
	if body != `ERROR: The value of the parameter "content" is not valid` {
		t.Errorf("returnFormat csv: %s", body)
	}
	_, body = e.call("content", "nonsense", "format", "json", "returnFormat", "yaml")
	if body != `<?xml version="1.0" encoding="UTF-8" ?><hash><error>The value of the parameter &quot;content&quot; is not valid</error></hash>` {
		t.Errorf("returnFormat yaml: %s", body)
	}
	// Revoked tokens look like unknown ones.
	e.s.RevokeToken(testToken)
	if code, body = e.call("content", "version"); code != 403 || !strings.Contains(body, denied) {
		t.Errorf("revoked: %d %s", code, body)
	}
}

func TestParameterFallbacks(t *testing.T) {
	e := loadFixture(t, "simple")
	// format unknown → xml; type unknown → flat.
	code, body := e.call("content", "record", "format", "yaml", "type", "wide", "records", "1", "fields", "record_id")
	if code != 200 || !strings.HasPrefix(body, `<?xml version="1.0" encoding="UTF-8" ?>`) || !strings.Contains(body, "<record_id><![CDATA[1]]></record_id>") {
		t.Fatalf("fallbacks: %d %s", code, body)
	}
	// The three array encodings and "" meaning absent.
	want := ""
	for i, kv := range [][]string{
		{"records[0]", "1", "records[1]", "3"},
		{"records[]", "1", "records[]", "3"},
		{"records", "1, '3'"},
	} {
		args := append([]string{"content", "record", "format", "csv", "fields", "record_id", "filterLogic", "", "dateRangeBegin", "", "dateRangeEnd", ""}, kv...)
		code, body := e.call(args...)
		if code != 200 {
			t.Fatalf("encoding %d: %d %s", i, code, body)
		}
		if i == 0 {
			want = body
		} else if body != want {
			t.Fatalf("encoding %d gave %q, want %q", i, body, want)
		}
	}
	if want != "record_id\n1\n3\n" {
		t.Fatalf("records filter: %q", want)
	}
	// Odd booleans are false: "yes" does not add the DAG column, "TRUE" does.
	_, body = e.call("content", "record", "format", "csv", "fields", "record_id", "records", "1", "exportDataAccessGroups", "yes")
	if body != "record_id\n1\n" {
		t.Fatalf("yes: %q", body)
	}
	_, body = e.call("content", "record", "format", "csv", "fields", "record_id", "records", "1", "exportDataAccessGroups", "TRUE")
	if body != "record_id,redcap_data_access_group\n1,dag_1\n" {
		t.Fatalf("TRUE: %q", body)
	}
}

func TestMultipartRequests(t *testing.T) {
	e := loadFixture(t, "simple")
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for k, v := range map[string]string{"token": testToken, "content": "record", "format": "csv", "records": "2", "fields": "record_id,name_first"} {
		_ = mw.WriteField(k, v)
	}
	mw.Close()
	resp, err := http.Post(e.url, mw.FormDataContentType(), &buf)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "record_id,name_first\n2,Tumtum\n" {
		t.Fatalf("multipart: %d %q", resp.StatusCode, b)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "text/csv; charset=utf-8" {
		t.Fatalf("content type %q", ct)
	}
}

func TestExportFilterErrors(t *testing.T) {
	e := loadFixture(t, "simple")
	code, body := e.call("content", "record", "format", "csv", "fields", "record_id,nope,redcap_event_name", "returnFormat", "csv")
	if code != 400 || body != `ERROR: The following values in the parameter "fields" are not valid: 'nope', 'redcap_event_name'` {
		t.Fatalf("fields: %d %s", code, body)
	}
	code, body = e.call("content", "record", "format", "csv", "forms", "demographics,nope", "returnFormat", "csv")
	if code != 400 || body != `ERROR: The following values in the parameter "forms" are not valid: 'nope'` {
		t.Fatalf("forms: %d %s", code, body)
	}
	// No ID column unless asked; fields= adds no _complete, forms= does.
	_, body = e.call("content", "record", "format", "csv", "fields", "name_first,age", "records", "1")
	if body != "name_first,age\nNutmeg,11\n" {
		t.Fatalf("fields without ID: %q", body)
	}
	_, body = e.call("content", "record", "format", "csv", "forms", "race_and_ethnicity", "records", "1")
	if body != "race___1,race___2,race___3,race___4,race___5,race___6,ethnicity,interpreter_needed,race_and_ethnicity_complete\n0,0,0,0,1,0,1,0,2\n" {
		t.Fatalf("forms: %q", body)
	}
	// Checkbox base names select every choice column; events are ignored in classic projects.
	_, body = e.call("content", "record", "format", "csv", "fields", "record_id,race", "records", "1", "events", "whatever")
	if body != "record_id,race___1,race___2,race___3,race___4,race___5,race___6\n1,0,0,0,0,1,0\n" {
		t.Fatalf("checkbox base: %q", body)
	}
	// Unknown records are ignored; none → [].
	_, body = e.call("content", "record", "format", "json", "records", "99")
	if body != "[]" {
		t.Fatalf("no records: %q", body)
	}
	// EAV: only non-empty values; a checkbox gives one row per checked code.
	_, body = e.call("content", "record", "format", "json", "type", "eav", "records", "1", "fields", "record_id,race,sex")
	if body != `[{"record":"1","field_name":"record_id","value":"1"},{"record":"1","field_name":"sex","value":"0"},{"record":"1","field_name":"race","value":"5"}]` {
		t.Fatalf("eav: %s", body)
	}
}

func TestMetadataEndpoints(t *testing.T) {
	e := loadFixture(t, "simple")
	_, body := e.call("content", "metadata", "format", "json")
	var meta []map[string]any
	if err := json.Unmarshal([]byte(body), &meta); err != nil {
		t.Fatal(err)
	}
	if len(meta) != 17 || len(meta[0]) != 18 || meta[0]["field_name"] != "record_id" {
		t.Fatalf("metadata: %d rows: %s", len(meta), body[:200])
	}
	if !strings.HasPrefix(body, `[{"field_name":"record_id","form_name":"demographics","section_header":"","field_type":"text","field_label":"Study ID","select_choices_or_calculations":"","field_note":"","text_validation_type_or_show_slider_number":"","text_validation_min":"","text_validation_max":"","identifier":"","branching_logic":"","required_field":"","custom_alignment":"","question_number":"","matrix_group_name":"","matrix_ranking":"","field_annotation":""}`) {
		t.Fatalf("metadata order: %s", body[:400])
	}
	for _, m := range meta {
		for k, v := range m {
			if _, ok := v.(string); !ok {
				t.Fatalf("%s.%s is %T", m["field_name"], k, v)
			}
		}
		if m["field_name"] == "height" && (m["text_validation_min"] != "130" || m["text_validation_type_or_show_slider_number"] != "number") {
			t.Fatalf("height: %v", m)
		}
		if m["field_name"] == "bmi" && m["select_choices_or_calculations"] != "round(([weight]*10000)/(([height])^(2)),1)" {
			t.Fatalf("bmi: %v", m)
		}
	}
	_, body = e.call("content", "exportFieldNames", "format", "json")
	var efn []messages.ExportFieldName
	_ = json.Unmarshal([]byte(body), &efn)
	if len(efn) != 24 {
		t.Fatalf("exportFieldNames: %d rows", len(efn))
	}
	for _, f := range efn {
		if f.OriginalFieldName == "mugshot" {
			t.Fatal("file field in exportFieldNames")
		}
	}
	if !strings.Contains(body, `{"original_field_name":"bmi","choice_value":"","export_field_name":"bmi"}`) ||
		!strings.Contains(body, `{"original_field_name":"race","choice_value":"1","export_field_name":"race___1"}`) ||
		!strings.Contains(body, `{"original_field_name":"health_complete","choice_value":"","export_field_name":"health_complete"}`) {
		t.Fatalf("exportFieldNames: %s", body)
	}
	_, body = e.call("content", "instrument", "format", "json")
	if body != `[{"instrument_name":"demographics","instrument_label":"demographics"},{"instrument_name":"health","instrument_label":"health"},{"instrument_name":"race_and_ethnicity","instrument_label":"race_and_ethnicity"}]` {
		t.Fatalf("instruments: %s", body)
	}
	for content, what := range map[string]string{"arm": "arms", "event": "events", "formEventMapping": "form/event mappings"} {
		code, body := e.call("content", content, "format", "csv")
		if code != 400 || body != "ERROR: You cannot export "+what+" for classic projects" {
			t.Errorf("%s: %d %s", content, code, body)
		}
	}
	_, body = e.call("content", "dag", "format", "json")
	if body != `[{"data_access_group_name":"dag_1","unique_group_name":"dag_1","data_access_group_id":1},{"data_access_group_name":"dag_2","unique_group_name":"dag_2","data_access_group_id":2}]` {
		t.Fatalf("dags: %s", body)
	}
	_, body = e.call("content", "project", "format", "json")
	var info map[string]any
	_ = json.Unmarshal([]byte(body), &info)
	if info["project_title"] != "REDCapR: simple" || info["is_longitudinal"] != float64(0) || info["record_autonumbering_enabled"] != float64(1) || info["purpose"] != float64(4) {
		t.Fatalf("project info: %s", body)
	}
	var pi messages.ProjectInfo
	if err := json.Unmarshal([]byte(body), &pi); err != nil || pi.ProjectID != e.pid {
		t.Fatalf("ProjectInfo decode: %v %+v", err, pi)
	}
	if code, body := e.call("content", "version"); code != 200 || body != "14.7.3" {
		t.Fatalf("version: %d %q", code, body)
	}
	if _, body := e.call("content", "generateNextRecordName"); body != "6" {
		t.Fatalf("next name %q", body)
	}
	if _, body := e.call("content", "repeatingFormsEvents", "format", "json"); body != "[]" {
		t.Fatalf("repeating: %s", body)
	}
}

func TestRightsErrors(t *testing.T) {
	e := loadFixture(t, "simple")
	ro := "AAAA0000000000000000000000000000"
	if err := e.s.AddToken(e.pid, ro, Rights{Export: true}, ""); err != nil {
		t.Fatal(err)
	}
	cases := [][]string{
		{"You do not have API Import/Update privileges", "content", "record", "format", "json", "data", `[{"record_id":"1"}]`},
		{"You do not have Delete Record privileges", "content", "record", "action", "delete", "records[]", "1"},
		{"You do not have Logging privileges", "content", "log", "format", "json"},
	}
	for _, c := range cases {
		code, body := e.callTok(ro, append(c[1:], "returnFormat", "csv")...)
		if code != 403 || body != "ERROR: "+c[0] {
			t.Errorf("%v: %d %s", c[1:3], code, body)
		}
	}
	none := "BBBB0000000000000000000000000000"
	_ = e.s.AddToken(e.pid, none, Rights{Import: true}, "")
	if code, body := e.callTok(none, "content", "record", "format", "csv"); code != 403 || body != "ERROR: You do not have API Export privileges" {
		t.Errorf("export without right: %d %s", code, body)
	}
}

func TestDeleteRecords(t *testing.T) {
	e := loadFixture(t, "simple")
	code, body := e.call("content", "record", "action", "delete", "records[]", "1", "records[]", "9", "returnFormat", "json")
	if code != 400 || body != `{"error":"One or more of the records provided cannot be deleted because they do not exist in the project. The following records do not exist: 9"}` {
		t.Fatalf("missing: %d %s", code, body)
	}
	rows, _ := e.s.ExportRows(e.pid)
	if len(rows) != 5 {
		t.Fatalf("partial delete: %d rows left", len(rows))
	}
	for _, rf := range []string{"json", "csv", "xml"} {
		rec := map[string]string{"json": "1", "csv": "2", "xml": "3"}[rf]
		code, body = e.call("content", "record", "action", "delete", "records", rec, "returnFormat", rf)
		if code != 200 || body != "1" {
			t.Fatalf("delete %s: %d %q", rf, code, body)
		}
	}
	rows, _ = e.s.ExportRows(e.pid)
	if len(rows) != 2 {
		t.Fatalf("%d rows left", len(rows))
	}
	_, body = e.call("content", "log", "format", "json", "logtype", "record_delete")
	var logs []map[string]string
	_ = json.Unmarshal([]byte(body), &logs)
	if len(logs) != 3 || logs[0]["action"] != "Delete record 3" {
		t.Fatalf("log: %s", body)
	}
}

func TestProjectXMLRoundTripAndCreation(t *testing.T) {
	e := loadFixture(t, "longitudinal")
	super := strings.Repeat("AB", 32)
	e.s.SetSuperToken(super)
	code, x := e.call("content", "project_xml")
	if code != 200 || !strings.Contains(x, "<ClinicalData") {
		t.Fatalf("project_xml: %d %.200s", code, x)
	}
	code, _, tok := post(t, e.url, form("token", super, "content", "project", "format", "json", "data", `[{"project_title":"Copy","purpose":"0"}]`, "odm", x))
	if code != 200 || len(tok) != 32 {
		t.Fatalf("create: %d %q", code, tok)
	}
	_, want := e.call("content", "record", "format", "csv")
	_, got := e.callTok(tok[len(tok)-32:], "content", "record", "format", "csv")
	if got != want {
		t.Fatalf("copy differs:\n%s\n---\n%s", got[:300], want[:300])
	}
	_, wantMeta := e.call("content", "metadata", "format", "json")
	_, gotMeta := e.callTok(tok, "content", "metadata", "format", "json")
	if gotMeta != wantMeta {
		t.Fatalf("metadata differs")
	}
	// A super token also reads the version; a wrong one is refused.
	if code, body := e.callTok(super, "content", "version"); code != 200 || body != "14.7.3" {
		t.Fatalf("super version: %d %s", code, body)
	}
	if code, _, _ := post(t, e.url, form("token", strings.Repeat("CD", 32), "content", "project", "data", `[{"project_title":"x"}]`)); code != 403 {
		t.Fatalf("wrong super token: %d", code)
	}
}

func TestOversizedRequest(t *testing.T) {
	s, u := startSim(t, Options{MaxRequestBytes: 1024})
	pid, _ := s.LoadProject("testdata/projects/simple")
	_ = s.AddToken(pid, testToken, FullRights(), "")
	code, _, body := post(t, u+"?returnFormat=json", form("token", testToken, "content", "record", "format", "json", "data", strings.Repeat("x", 4096)))
	if code != 413 || !strings.HasPrefix(body, `{"error":"The request is too large`) {
		t.Fatalf("oversized: %d %s", code, body)
	}
}

func TestRateLimitBan(t *testing.T) {
	s, u := startSim(t, Options{PageHitThreshold: 3})
	pid, _ := s.LoadProject("testdata/projects/simple")
	_ = s.AddToken(pid, testToken, FullRights(), "")
	for i := 0; i < 3; i++ {
		if code, _, _ := post(t, u, form("token", testToken, "content", "version")); code != 200 {
			t.Fatalf("call %d: %d", i, code)
		}
	}
	for i := 0; i < 2; i++ {
		code, _, body := post(t, u, form("token", testToken, "content", "version"))
		if code != 429 || body != "Your IP address (127.0.0.1) has been banned due to suspected abuse." {
			t.Fatalf("ban: %d %s", code, body)
		}
	}
}

func TestDateRangeFromChangeLog(t *testing.T) {
	clock := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	s, u := startSim(t, Options{Now: func() time.Time { return clock }})
	pid, err := s.LoadProject("testdata/projects/simple") // records 1-5 at 2025-03-01 10:00
	if err != nil {
		t.Fatal(err)
	}
	_ = s.AddToken(pid, testToken, FullRights(), "")
	e := &simEnv{t: t, s: s, url: u, pid: pid}
	clock = time.Date(2025, 3, 2, 12, 0, 0, 0, time.UTC)
	if code, body := e.call("content", "record", "format", "json", "data", `[{"record_id":"2","name_first":"Tom"},{"record_id":"7","name_first":"New"}]`); code != 200 {
		t.Fatal(body)
	}
	clock = time.Date(2025, 3, 3, 9, 0, 0, 0, time.UTC)
	ids := func(kv ...string) string {
		_, body := e.call(append([]string{"content", "record", "format", "csv", "fields", "record_id"}, kv...)...)
		return strings.ReplaceAll(strings.TrimPrefix(body, "record_id\n"), "\n", " ")
	}
	cases := []struct {
		kv   []string
		want string
	}{
		{[]string{"dateRangeBegin", "2025-03-02 12:00:00"}, "2 7 "}, // inclusive, end = now
		{[]string{"dateRangeBegin", "2025-03-02 12:00:01"}, ""},
		{[]string{"dateRangeEnd", "2025-03-01"}, "1 2 3 4 5 "}, // date-only end = 23:59:59
		{[]string{"dateRangeBegin", "2025/03/02T11:00", "dateRangeEnd", "2025-03-02 12:00"}, "2 7 "},
		{[]string{"dateRangeBegin", "yesterday"}, "1 2 3 4 5 7 "}, // unparseable: no bound
		{[]string{"dateRangeBegin", "2025-03-02", "records", "2,3"}, "2 "},
	}
	for _, c := range cases {
		if got := ids(c.kv...); got != c.want {
			t.Errorf("%v: got %q, want %q", c.kv, got, c.want)
		}
	}
	// Deleted records never come back, even if they changed in the window.
	_ = s.DeleteRecord(pid, "7")
	if got := ids("dateRangeBegin", "2025-03-02"); got != "2 " {
		t.Errorf("after delete: %q", got)
	}
	// The log shows the imports, newest first.
	_, body := e.call("content", "log", "format", "json", "logtype", "record", "beginTime", "2025-03-02 00:00")
	var logs []map[string]string
	_ = json.Unmarshal([]byte(body), &logs)
	if len(logs) != 3 || logs[1]["action"] != "Create record (import) 7" || logs[2]["action"] != "Update record (import) 2" || logs[2]["timestamp"] != "2025-03-02 12:00" {
		t.Fatalf("log: %s", body)
	}
}

func TestDAGs(t *testing.T) {
	e := loadFixture(t, "dag-write")
	dagTok := "DA6A0000000000000000000000000000"
	if err := e.s.AddToken(e.pid, dagTok, FullRights(), "daga"); err != nil {
		t.Fatal(err)
	}
	_, body := e.call("content", "dag", "format", "csv")
	if body != "data_access_group_name,unique_group_name,data_access_group_id\ndag-a,daga,331\ndag-b,dagb,332\n" {
		t.Fatalf("dags: %q", body)
	}
	// A DAG user sees only its records; exportDataAccessGroups is ignored for it.
	_, body = e.callTok(dagTok, "content", "record", "format", "csv", "fields", "record_id", "exportDataAccessGroups", "true")
	if body != "record_id\n331-1\n" {
		t.Fatalf("dag view: %q", body)
	}
	// New records of a DAG user are named <dagId>-<n> and put in its DAG.
	code, body := e.callTok(dagTok, "content", "record", "format", "json", "returnContent", "ids", "data", `[{"record_id":"x","first_name":"dd"}]`)
	if code != 200 || body != `["331-3"]` {
		t.Fatalf("dag import: %d %s", code, body)
	}
	if _, body = e.callTok(dagTok, "content", "generateNextRecordName"); body != "331-4" {
		t.Fatalf("dag next name %q", body)
	}
	// A DAG user cannot touch another DAG's record, nor use dag endpoints.
	code, body = e.callTok(dagTok, "content", "record", "format", "json", "data", `[{"record_id":"332-3","first_name":"zz"}]`)
	if code != 400 || !strings.HasPrefix(body, `{"error":"\"332-3\",\"record_id\"`) {
		t.Fatalf("other DAG: %d %s", code, body)
	}
	if code, _ = e.callTok(dagTok, "content", "dag", "format", "json"); code != 403 {
		t.Fatalf("dag export by DAG user: %d", code)
	}
	// A user in no DAG assigns and moves records with redcap_data_access_group.
	code, body = e.call("content", "record", "format", "csv", "data", "record_id,redcap_data_access_group,first_name\n331-1,dagb,aa\n500,daga,ee\n")
	if code != 200 || body != "2" {
		t.Fatalf("dag assign: %d %s", code, body)
	}
	_, body = e.call("content", "record", "format", "csv", "fields", "record_id", "exportDataAccessGroups", "true")
	if body != "record_id,redcap_data_access_group\n500,daga\n331-1,dagb\n331-2,dagb\n331-3,daga\n332-3,dagb\n" {
		t.Fatalf("after assign: %q", body)
	}
	code, body = e.call("content", "record", "format", "json", "data", `[{"record_id":"1","redcap_data_access_group":"nope"}]`)
	if code != 400 || !strings.Contains(body, `\"redcap_data_access_group\",\"nope\"`) {
		t.Fatalf("unknown dag: %d %s", code, body)
	}
}

func ExampleServer() {
	s, _ := New(Options{})
	defer s.Close()
	url, _ := s.Listen("127.0.0.1:0")
	pid, _ := s.CreateProject(ProjectSpec{Title: "demo", Fields: []messages.Field{
		{FieldName: "record_id", FormName: "enrolment", FieldType: "text", FieldLabel: "ID"},
		{FieldName: "dob", FormName: "enrolment", FieldType: "text", FieldLabel: "DOB", TextValidationTypeOrShowSlider: "date_ymd"},
	}})
	_ = s.AddToken(pid, "0123456789ABCDEF0123456789ABCDEF", FullRights(), "")
	_ = s.ImportRows(pid, []messages.Row{{"record_id": "1", "dob": "2001-02-03"}}, false)
	resp, _ := http.PostForm(url, map[string][]string{"token": {"0123456789ABCDEF0123456789ABCDEF"}, "content": {"record"}, "format": {"json"}})
	b, _ := io.ReadAll(resp.Body)
	fmt.Println(string(b))
	// Output: [{"record_id":"1","dob":"2001-02-03","enrolment_complete":"0"}]
}
