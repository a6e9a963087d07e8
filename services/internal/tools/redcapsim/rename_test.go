package redcapsim

import (
	"strings"
	"testing"
	"time"

	"github.com/redcap-relay/relay/messages"
)

func twoArmSpec() ProjectSpec {
	return ProjectSpec{Title: "two arms",
		Fields: []messages.Field{
			{FieldName: "pid", FormName: "enrol", FieldType: "text", FieldLabel: "ID"},
			{FieldName: "name", FormName: "enrol", FieldType: "text", FieldLabel: "Name", Identifier: "y"},
			{FieldName: "score", FormName: "visit", FieldType: "text", FieldLabel: "Score", TextValidationTypeOrShowSlider: "integer"},
			{FieldName: "seen", FormName: "visit", FieldType: "text", FieldLabel: "Seen", TextValidationTypeOrShowSlider: "date_ymd"},
			{FieldName: "note", FormName: "visit", FieldType: "notes", FieldLabel: "Note"},
		},
		Arms: []messages.Arm{{ArmNum: 1, Name: "A"}, {ArmNum: 2, Name: "B"}},
		Events: []messages.Event{
			{EventName: "Base", ArmNum: 1, UniqueEventName: "base_arm_1"},
			{EventName: "Base", ArmNum: 2, UniqueEventName: "base_arm_2"},
		},
		FormEventMapping: []messages.FormEvent{
			{ArmNum: 1, UniqueEventName: "base_arm_1", Form: "enrol"}, {ArmNum: 1, UniqueEventName: "base_arm_1", Form: "visit"},
			{ArmNum: 2, UniqueEventName: "base_arm_2", Form: "enrol"}, {ArmNum: 2, UniqueEventName: "base_arm_2", Form: "visit"},
		},
		DAGs: []messages.DAG{{Name: "North", Unique: "north", ID: 7}, {Name: "South", Unique: "south", ID: 8}},
	}
}

func newTwoArm(t *testing.T, opts Options) *simEnv {
	t.Helper()
	s, u := startSim(t, opts)
	pid, err := s.CreateProject(twoArmSpec())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddToken(pid, testToken, FullRights(), ""); err != nil {
		t.Fatal(err)
	}
	rows := []messages.Row{
		{"pid": "1", "redcap_event_name": "base_arm_1", "name": "Ann", "score": "5", "redcap_data_access_group": "north"},
		{"pid": "1", "redcap_event_name": "base_arm_2", "name": "Ann", "score": "6"},
		{"pid": "2", "redcap_event_name": "base_arm_1", "name": "Bob", "score": "7", "seen": "2024-01-02", "note": "free", "redcap_data_access_group": "south"},
	}
	if err := s.ImportRows(pid, rows, false); err != nil {
		t.Fatal(err)
	}
	return &simEnv{t: t, s: s, url: u, pid: pid}
}

func ids(e *simEnv, tok string) string {
	e.t.Helper()
	code, body := e.callTok(tok, "content", "record", "format", "csv", "fields", "pid")
	if code != 200 {
		e.t.Fatalf("export ids: %d %s", code, body)
	}
	return strings.TrimSpace(strings.ReplaceAll(body, "\n", " "))
}

func TestRenameRecord(t *testing.T) {
	e := newTwoArm(t, Options{DataDir: t.TempDir()})
	// errors first: nothing changes
	for _, c := range []struct {
		kv   []string
		code int
		text string
	}{
		{[]string{"new_record_name", "9"}, 400, "Current record name must be provided."},
		{[]string{"record", "1"}, 400, "New record name must be provided."},
		{[]string{"record", "404", "new_record_name", "9"}, 400, "Current Record does not exists."},
		{[]string{"record", "1", "new_record_name", "2"}, 400, "already exists"},
		{[]string{"record", "1", "new_record_name", "a#b"}, 400, "cannot contain"},
		{[]string{"record", "1", "new_record_name", "9", "arm", "5"}, 400, "The arm provided is not correct for the project."},
	} {
		code, body := e.call(append([]string{"content", "record", "action", "rename", "returnFormat", "json"}, c.kv...)...)
		if code != c.code || !strings.Contains(body, c.text) {
			t.Errorf("%v: %d %s", c.kv, code, body)
		}
	}
	if got := ids(e, testToken); got != "pid,redcap_event_name 1,base_arm_1 1,base_arm_2 2,base_arm_1" {
		t.Fatalf("after refused renames: %s", got)
	}
	// Rename in arm 2 only: the arm-1 rows stay under 1.
	if code, body := e.call("content", "record", "action", "rename", "record", "1", "new_record_name", "10", "arm", "2"); code != 200 || body != "1" {
		t.Fatalf("rename in arm: %d %q", code, body)
	}
	if got := ids(e, testToken); got != "pid,redcap_event_name 1,base_arm_1 2,base_arm_1 10,base_arm_2" {
		t.Fatalf("after arm rename: %s", got)
	}
	// Whole record: values, DAG and order follow.
	if code, body := e.call("content", "record", "action", "rename", "record", "2", "new_record_name", "0"); code != 200 || body != "1" {
		t.Fatalf("rename: %d %q", code, body)
	}
	code, body := e.call("content", "record", "format", "json", "records", "0", "exportDataAccessGroups", "true", "fields", "pid,score")
	if code != 200 || !strings.Contains(body, `"pid":"0"`) || !strings.Contains(body, `"score":"7"`) || !strings.Contains(body, `"redcap_data_access_group":"south"`) {
		t.Fatalf("renamed record: %d %s", code, body)
	}
	if got := ids(e, testToken); !strings.HasPrefix(got, "pid,redcap_event_name 0,base_arm_1 1,") {
		t.Fatalf("order after rename: %s", got)
	}
	// The log shows both renames, and dateRangeBegin sees the new names.
	_, body = e.call("content", "log", "format", "json", "logtype", "record_edit")
	if !strings.Contains(body, `"action":"Rename Record (API) 0"`) || !strings.Contains(body, `old_record = '2',\nnew_record = '0'`) ||
		!strings.Contains(body, `arm=2`) {
		t.Fatalf("log: %s", body)
	}
	// A rename survives a restart (change log replay and snapshot).
	dir := e.s.opts.DataDir
	e.s.Close()
	s2, err := New(Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	rows, _ := s2.ExportRows(e.pid)
	var got []string
	for _, r := range rows {
		got = append(got, r["pid"]+"/"+r["redcap_event_name"])
	}
	if strings.Join(got, " ") != "0/base_arm_1 1/base_arm_1 10/base_arm_2" {
		t.Fatalf("after restart: %v", got)
	}
}

func TestRenameNeedsRightAndDAG(t *testing.T) {
	e := newTwoArm(t, Options{})
	noRename := "11111111111111111111111111111111"
	e.s.AddToken(e.pid, noRename, Rights{Export: true, Import: true}, "")
	if code, body := e.callTok(noRename, "content", "record", "action", "rename", "record", "1", "new_record_name", "5"); code != 403 || !strings.Contains(body, "You do not have Rename Record privileges") {
		t.Fatalf("%d %s", code, body)
	}
	north := "22222222222222222222222222222222"
	r := FullRights()
	e.s.AddToken(e.pid, north, r, "north")
	if code, body := e.callTok(north, "content", "record", "action", "rename", "record", "2", "new_record_name", "5"); code != 400 || !strings.Contains(body, "Current Record does not exists.") {
		t.Fatalf("other DAG's record: %d %s", code, body)
	}
}

func TestSwitchDAG(t *testing.T) {
	now := time.Date(2025, 5, 1, 9, 0, 0, 0, time.UTC)
	e := newTwoArm(t, Options{Now: func() time.Time { return now }})
	tok := "33333333333333333333333333333333"
	e.s.AddToken(e.pid, tok, Rights{Export: true}, "north")
	_, userName, _ := e.s.UserForToken(tok)
	if got := ids(e, tok); got != "pid,redcap_event_name 1,base_arm_1 1,base_arm_2" {
		t.Fatalf("north sees %s", got)
	}
	if code, body := e.callTok(tok, "content", "dag", "action", "switch", "dag", "south"); code != 403 || !strings.Contains(body, "DAG Switcher") {
		t.Fatalf("switch without the switcher: %d %s", code, body)
	}
	if err := e.s.AllowDAGSwitch(e.pid, userName, "north", "south"); err != nil {
		t.Fatal(err)
	}
	if code, body := e.callTok(tok, "content", "dag", "action", "switch", "dag", "nowhere"); code != 400 || !strings.Contains(body, "nowhere is not a valid unique Data Access Group name") {
		t.Fatalf("unknown DAG: %d %s", code, body)
	}
	if code, body := e.callTok(tok, "content", "dag", "action", "switch", "dag", "south"); code != 200 || body != "1" {
		t.Fatalf("switch: %d %s", code, body)
	}
	if got := ids(e, tok); got != "pid,redcap_event_name 2,base_arm_1" {
		t.Fatalf("south sees %s", got)
	}
	_, body := e.call("content", "log", "format", "json", "logtype", "manage")
	if !strings.Contains(body, `"username":"`+userName+`","action":"Switch DAG","details":"DAG = 'south'"`) {
		t.Fatalf("log: %s", body)
	}
	if err := e.s.AllowDAGSwitch(e.pid, "nobody", "south"); err == nil {
		t.Fatal("unknown user accepted")
	}
}

func TestExportRightsPerForm(t *testing.T) {
	e := newTwoArm(t, Options{})
	deid := "44444444444444444444444444444444"
	e.s.AddToken(e.pid, deid, Rights{Export: true, FormExport: map[string]int{"visit": exportDeident}}, "")
	code, body := e.callTok(deid, "content", "record", "format", "csv", "records", "2")
	if code != 200 || !strings.HasPrefix(body, "pid,redcap_event_name,name,enrol_complete,score,visit_complete\n") {
		t.Fatalf("de-identified visit: %d %s", code, body)
	}
	noIdent := "55555555555555555555555555555555"
	e.s.AddToken(e.pid, noIdent, Rights{Export: true, FormExport: map[string]int{"enrol": exportNoIdents, "visit": exportNone}}, "")
	if code, body = e.callTok(noIdent, "content", "record", "format", "csv", "records", "2"); code != 200 || !strings.HasPrefix(body, "pid,redcap_event_name,enrol_complete\n") {
		t.Fatalf("no identifiers, no visit: %d %s", code, body)
	}
	if code, body = e.callTok(noIdent, "content", "record", "format", "csv", "fields", "score"); code != 400 || !strings.Contains(body, "export rights") {
		t.Fatalf("only a held-back field: %d %s", code, body)
	}
	none := "66666666666666666666666666666666"
	e.s.AddToken(e.pid, none, Rights{Export: true, FormExport: map[string]int{"enrol": 0, "visit": 0}}, "")
	if code, body = e.callTok(none, "content", "record", "format", "json"); code != 403 || !strings.Contains(body, `\"No Access\" data export rights`) {
		t.Fatalf("no access: %d %s", code, body)
	}
	noDAGRight := "77777777777777777777777777777777"
	e.s.AddToken(e.pid, noDAGRight, Rights{Export: true}, "")
	if code, body = e.callTok(noDAGRight, "content", "record", "format", "json", "exportDataAccessGroups", "true"); code != 403 ||
		!strings.Contains(body, "'API Export' privileges and 'Data Access Groups' privileges") {
		t.Fatalf("DAG column without the DAG right: %d %s", code, body)
	}
	if code, body = e.callTok(noDAGRight, "content", "dag", "format", "json"); code != 403 || !strings.Contains(body, "Data Access Groups") {
		t.Fatalf("DAG export without the DAG right: %d %s", code, body)
	}
}
