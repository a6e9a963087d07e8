package redcapsim

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/redcap-relay/relay/messages"
)

func surveySpec() ProjectSpec {
	f := func(name, form, typ, val string) messages.Field {
		return messages.Field{FieldName: name, FormName: form, FieldType: typ, FieldLabel: name, TextValidationTypeOrShowSlider: val}
	}
	return ProjectSpec{Title: "surveys",
		Fields: []messages.Field{f("participant_id", "prescreen", "text", ""), f("dob", "prescreen", "text", "date_ymd"),
			f("staff_note", "staff", "text", ""), f("mood", "daily", "text", "integer")},
		Surveys:     []Survey{{Form: "prescreen", Title: "Pre-screening"}, {Form: "daily", Title: "Daily", SaveAndReturn: true}},
		SurveyQueue: true,
	}
}

func newSurveyEnv(t *testing.T) *simEnv {
	t.Helper()
	s, u := startSim(t, Options{DataDir: t.TempDir()})
	pid, err := s.CreateProject(surveySpec())
	if err != nil {
		t.Fatal(err)
	}
	s.AddToken(pid, testToken, FullRights(), "")
	if err := s.ImportRows(pid, []messages.Row{{"participant_id": "1", "dob": "2000-01-02", "mood": "4"}, {"participant_id": "2", "staff_note": "x"}}, false); err != nil {
		t.Fatal(err)
	}
	if err := s.SetSurveyResponse(pid, "1", "", "prescreen", 0, "2025-01-05 10:11:12"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetSurveyResponse(pid, "1", "", "daily", 0, "[not completed]"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetSurveyIdentifier(pid, "1", "p-one"); err != nil {
		t.Fatal(err)
	}
	return &simEnv{t: t, s: s, url: u, pid: pid}
}

func TestExportSurveyFields(t *testing.T) {
	e := newSurveyEnv(t)
	_, body := e.call("content", "record", "format", "csv", "exportSurveyFields", "true")
	want := "participant_id,redcap_survey_identifier,prescreen_timestamp,dob,prescreen_complete,staff_note,staff_complete,daily_timestamp,mood,daily_complete\n" +
		"1,p-one,\"2025-01-05 10:11:12\",2000-01-02,0,,0,\"[not completed]\",4,0\n" +
		"2,,,,0,x,0,,,0\n"
	if body != want {
		t.Fatalf("survey fields:\n%s\nwant\n%s", body, want)
	}
	// Without the flag (or for forms= of a non-survey) no survey columns.
	_, body = e.call("content", "record", "format", "csv")
	if strings.Contains(body, "timestamp") || strings.Contains(body, "redcap_survey_identifier") {
		t.Fatalf("survey columns without exportSurveyFields: %s", body)
	}
	_, body = e.call("content", "record", "format", "json", "exportSurveyFields", "true", "forms", "daily", "records", "1")
	if body != `[{"redcap_survey_identifier":"p-one","daily_timestamp":"[not completed]","mood":"4","daily_complete":"0"}]` {
		t.Fatalf("forms=daily: %s", body)
	}
	// <form>_timestamp cannot be asked for as a field, and importing it is ignored.
	if code, body := e.call("content", "record", "format", "json", "fields", "daily_timestamp"); code != 400 || !strings.Contains(body, "'daily_timestamp'") {
		t.Fatalf("timestamp as a field: %d %s", code, body)
	}
	if code, body := e.call("content", "record", "format", "json", "data", `[{"participant_id":"2","daily_timestamp":"2025-02-02 00:00:00","redcap_survey_identifier":"zz","mood":"3"}]`); code != 200 || body != `{"count": 1}` {
		t.Fatalf("import with timestamp: %d %s", code, body)
	}
	_, body = e.call("content", "record", "format", "json", "exportSurveyFields", "true", "records", "2", "fields", "participant_id,mood")
	if !strings.Contains(body, `"daily_timestamp":""`) || !strings.Contains(body, `"mood":"3"`) || strings.Contains(body, "zz") {
		t.Fatalf("timestamp import not ignored: %s", body)
	}
	// Survey responses are record changes in the log.
	_, body = e.call("content", "log", "format", "json", "logtype", "record_edit")
	if !strings.Contains(body, `"action":"Update survey response 1"`) {
		t.Fatalf("log: %s", body)
	}
}

func TestSurveyCalls(t *testing.T) {
	e := newSurveyEnv(t)
	code, link := e.call("content", "surveyLink", "record", "1", "instrument", "prescreen")
	if code != 200 || !strings.HasPrefix(link, "http://"+strings.TrimPrefix(strings.TrimSuffix(e.url, "/api/"), "http://")+"/surveys/?s=") || len(link) != len(strings.TrimSuffix(e.url, "/api/"))+len("/surveys/?s=")+16 {
		t.Fatalf("link: %d %q", code, link)
	}
	if _, again := e.call("content", "surveyLink", "record", "1", "instrument", "prescreen"); again != link {
		t.Fatal("the link changed")
	}
	if code, q := e.call("content", "surveyQueueLink", "record", "1"); code != 200 || !strings.Contains(q, "/surveys/?sq=") {
		t.Fatalf("queue link: %d %s", code, q)
	}
	if code, ac := e.call("content", "surveyAccessCode", "record", "1", "instrument", "daily"); code != 200 || len(ac) != 9 {
		t.Fatalf("access code: %d %q", code, ac)
	}
	if code, rc := e.call("content", "surveyReturnCode", "record", "1", "instrument", "daily"); code != 200 || len(rc) != 8 {
		t.Fatalf("return code: %d %q", code, rc)
	}
	for _, c := range []struct {
		kv   []string
		code int
		text string
	}{
		{[]string{"content", "surveyLink", "record", "1", "instrument", "staff"}, 400, "The instrument 'staff' has not been enabled as a survey"},
		{[]string{"content", "surveyLink", "record", "1", "instrument", "nope"}, 400, "Invalid instrument"},
		{[]string{"content", "surveyLink", "record", "1"}, 400, "The parameter 'instrument' is missing"},
		{[]string{"content", "surveyLink", "record", "9", "instrument", "daily"}, 400, `The record \"9\" does not exist`},
		{[]string{"content", "surveyLink", "instrument", "daily"}, 400, "The parameter 'record' is missing"},
		{[]string{"content", "surveyReturnCode", "record", "1", "instrument", "prescreen"}, 400, "Save & Return Later"},
		{[]string{"content", "participantList", "instrument", "staff"}, 400, "has not been enabled as a survey"},
	} {
		code, body := e.call(append(c.kv, "returnFormat", "json")...)
		if code != c.code || !strings.Contains(body, c.text) {
			t.Errorf("%v: %d %s", c.kv, code, body)
		}
	}
	code, body := e.call("content", "participantList", "instrument", "daily", "format", "json")
	var list []map[string]any
	if code != 200 || json.Unmarshal([]byte(body), &list) != nil || len(list) != 2 {
		t.Fatalf("participants: %d %s", code, body)
	}
	if list[0]["record"] != "1" || list[0]["identifier"] != "p-one" || list[0]["response_status"] != float64(1) || list[1]["response_status"] != float64(0) ||
		list[0]["email_occurrence"] != float64(1) || !strings.Contains(list[0]["survey_link"].(string), "/surveys/?s=") {
		t.Fatalf("participants: %s", body)
	}
	noTools := "12121212121212121212121212121212"
	e.s.AddToken(e.pid, noTools, Rights{Export: true}, "")
	if code, body := e.callTok(noTools, "content", "surveyLink", "record", "1", "instrument", "daily"); code != 403 || !strings.Contains(body, "Manage Survey Participants") {
		t.Fatalf("no survey rights: %d %s", code, body)
	}
}

// TestSurveysFromProjectXML: survey-enabled instruments come from the
// project XML's redcap:SurveysGroup, and project_xml writes them back.
func TestSurveysFromProjectXML(t *testing.T) {
	e := newSurveyEnv(t)
	_, x := e.call("content", "project_xml", "returnMetadataOnly", "true")
	if !strings.Contains(x, `<redcap:Surveys form_name="daily" title="Daily" survey_enabled="1" save_and_return="1"/>`) || !strings.Contains(x, "redcap:SurveysQueueGroup") {
		t.Fatalf("project XML: %s", x)
	}
	super := strings.Repeat("CD", 32)
	e.s.SetSuperToken(super)
	code, _, tok := post(t, e.url, form("token", super, "content", "project", "format", "json", "data", `[{"project_title":"Copy","purpose":"0"}]`, "odm", x))
	if code != 200 {
		t.Fatalf("create: %d %s", code, tok)
	}
	e.s.AddToken(e.pid+1, "ABABABABABABABABABABABABABABABAB", FullRights(), "")
	copyEnv := &simEnv{t: t, s: e.s, url: e.url, pid: e.pid + 1}
	if err := e.s.ImportRows(copyEnv.pid, []messages.Row{{"participant_id": "1"}}, false); err != nil {
		t.Fatal(err)
	}
	if code, body := copyEnv.callTok(tok, "content", "surveyReturnCode", "record", "1", "instrument", "daily"); code != 200 || len(body) != 8 {
		t.Fatalf("copy's survey: %d %s", code, body)
	}
}
