package redcapsim

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestUsersExportImportDelete(t *testing.T) {
	e := newTwoArm(t, Options{DataDir: t.TempDir()})
	site := "14141414141414141414141414141414"
	e.s.AddToken(e.pid, site, Rights{Export: true}, "north")
	_, siteUser, _ := e.s.UserForToken(site)
	code, body := e.call("content", "user", "format", "json")
	var users []map[string]any
	if code != 200 || json.Unmarshal([]byte(body), &users) != nil || len(users) != 2 {
		t.Fatalf("export: %d %s", code, body)
	}
	u := users[1]
	if u["username"] != siteUser || u["data_access_group"] != "north" || u["data_access_group_id"] != "7" || u["api_export"] != float64(1) || u["api_import"] != float64(0) {
		t.Fatalf("user: %v", u)
	}
	if f, ok := u["forms_export"].(map[string]any); !ok || f["enrol"] != float64(1) {
		t.Fatalf("forms_export: %v", u["forms_export"])
	}
	// Export, re-import, export: the same.
	if code, n := e.call("content", "user", "format", "json", "data", body); code != 200 || n != "2" {
		t.Fatalf("re-import: %d %s", code, n)
	}
	if _, again := e.call("content", "user", "format", "json"); again != body {
		t.Fatalf("re-import changed users:\n%s\n%s", again, body)
	}
	// An existing user imported without data_access_group keeps the group;
	// given blank, the user is unassigned (and sees every record).
	if code, n := e.call("content", "user", "format", "json", "data", `[{"username":"`+siteUser+`","api_import":"1"}]`); code != 200 || n != "1" {
		t.Fatalf("partial update: %d %s", code, n)
	}
	if got := ids(e, site); got != "pid,redcap_event_name 1,base_arm_1 1,base_arm_2" {
		t.Fatalf("after partial update the user sees %s", got)
	}
	e.call("content", "user", "format", "csv", "data", "username,data_access_group\n"+siteUser+",\n")
	if got := ids(e, site); !strings.Contains(got, "2,base_arm_1") {
		t.Fatalf("unassigned user sees %s", got)
	}
	// Rights follow the user: no export right, no export.
	e.call("content", "user", "format", "json", "data", `[{"username":"`+siteUser+`","api_export":0}]`)
	if code, body := e.callTok(site, "content", "record", "format", "json"); code != 403 || !strings.Contains(body, "API Export") {
		t.Fatalf("export after the right was removed: %d %s", code, body)
	}
	// A new user: missing attributes are 0, no DAG.
	if code, n := e.call("content", "user", "format", "json", "data", `[{"username":"new.user@example.org","forms":{"enrol":1,"visit":2},"forms_export":{"enrol":3}}]`); code != 200 || n != "1" {
		t.Fatalf("new user: %d %s", code, n)
	}
	_, body = e.call("content", "user", "format", "csv")
	if !strings.Contains(body, "new.user@example.org,,,,,,,0,0") || !strings.Contains(body, `"enrol:1,visit:2","enrol:3,visit:0"`) {
		t.Fatalf("csv: %s", body)
	}
	for _, c := range []struct{ data, text string }{
		{`[{"username":""}]`, "The username is missing for user #1"},
		{`[{"username":"bad name"}]`, "is not in a valid username format"},
		{`[{"username":"x","data_access_group":"east"}]`, "east is not a valid unique Data Access Group name"},
		{`[{"username":"x","forms":{"nope":1}}]`, "The form named 'nope' is incorrect for the user 'x'"},
		{`[{"username":"x","forms":{"enrol":7}}]`, "not a valid form-level rights value"},
		{`[{"username":"x","design":"3"}]`, "not valid"},
	} {
		if code, body := e.call("content", "user", "format", "json", "returnFormat", "json", "data", c.data); code != 400 || !strings.Contains(body, c.text) {
			t.Errorf("%s: %d %s", c.data, code, body)
		}
	}
	// Delete: unknown users refuse all; a deleted user's token stops working.
	if code, body := e.call("content", "user", "action", "delete", "users[0]", siteUser, "users[1]", "ghost", "returnFormat", "json"); code != 400 || !strings.Contains(body, "Users that do not exist: ghost") {
		t.Fatalf("delete unknown: %d %s", code, body)
	}
	if code, n := e.call("content", "user", "action", "delete", "users[0]", siteUser); code != 200 || n != "1" {
		t.Fatalf("delete: %d %s", code, n)
	}
	if code, _ := e.callTok(site, "content", "version"); code != 403 {
		t.Fatalf("a deleted user's token: %d", code)
	}
	_, body = e.call("content", "log", "format", "json", "logtype", "user")
	if !strings.Contains(body, `"action":"Delete user `+siteUser+`"`) || !strings.Contains(body, `"action":"Add user new.user@example.org"`) {
		t.Fatalf("log: %s", body)
	}
	// Without User Rights: refused.
	ro := "15151515151515151515151515151515"
	e.s.AddToken(e.pid, ro, Rights{Export: true, Import: true}, "")
	if code, body := e.callTok(ro, "content", "user", "format", "json"); code != 403 || !strings.Contains(body, "'User Rights' privileges") {
		t.Fatalf("no user rights: %d %s", code, body)
	}
	// Persisted: a restart keeps users (the new user is there, the deleted one gone).
	dir := e.s.opts.DataDir
	e.s.Close()
	s2, err := New(Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	p := s2.project(e.pid)
	if p.users["new.user@example.org"] == nil || p.users[siteUser] != nil || p.users["new.user@example.org"].Forms["visit"] != 2 {
		t.Fatalf("after restart: %v", p.userNames())
	}
}

func TestRolesAndMappings(t *testing.T) {
	e := newTwoArm(t, Options{})
	site := "16161616161616161616161616161616"
	e.s.AddToken(e.pid, site, Rights{Export: true}, "")
	_, siteUser, _ := e.s.UserForToken(site)
	if code, n := e.call("content", "userRole", "format", "json", "data", `[{"unique_role_name":"","role_label":"Reader","api_export":"1","forms_export":{"enrol":1,"visit":0}}]`); code != 200 || n != "1" {
		t.Fatalf("role import: %d %s", code, n)
	}
	_, body := e.call("content", "userRole", "format", "json")
	var roles []map[string]any
	if json.Unmarshal([]byte(body), &roles) != nil || len(roles) != 1 || roles[0]["role_label"] != "Reader" || roles[0]["api_export"] != "1" ||
		!strings.HasPrefix(roles[0]["unique_role_name"].(string), "U-") {
		t.Fatalf("roles: %s", body)
	}
	unique := roles[0]["unique_role_name"].(string)
	if code, n := e.call("content", "userRoleMapping", "format", "json", "data", `[{"username":"`+siteUser+`","unique_role_name":"`+unique+`","data_access_group":"south"}]`); code != 200 || n != "1" {
		t.Fatalf("role mapping: %d %s", code, n)
	}
	// The role's rights and the DAG apply now: only enrol, only south.
	if _, body := e.callTok(site, "content", "record", "format", "csv"); body != "pid,redcap_event_name,name,enrol_complete\n2,base_arm_1,Bob,0\n" {
		t.Fatalf("as the role: %s", body)
	}
	if _, m := e.call("content", "userRoleMapping", "format", "csv"); !strings.Contains(m, siteUser+","+unique) {
		t.Fatalf("mapping export: %s", m)
	}
	// A user in a role cannot get privileges of their own.
	if code, body := e.call("content", "user", "format", "json", "returnFormat", "json", "data", `[{"username":"`+siteUser+`","design":1}]`); code != 400 || !strings.Contains(body, "belongs to a user role") {
		t.Fatalf("privileges for a role member: %d %s", code, body)
	}
	// userDagMapping: export, import (blank = no group), errors.
	if _, m := e.call("content", "userDagMapping", "format", "csv"); !strings.Contains(m, siteUser+",south") {
		t.Fatalf("dag mapping: %s", m)
	}
	if code, n := e.call("content", "userDagMapping", "format", "json", "data", `[{"username":"`+siteUser+`","redcap_data_access_group":"north"}]`); code != 200 || n != "1" {
		t.Fatalf("dag mapping import: %d %s", code, n)
	}
	if got := ids(e, site); got != "pid,redcap_event_name 1,base_arm_1 1,base_arm_2" {
		t.Fatalf("after the DAG mapping: %s", got)
	}
	if code, body := e.call("content", "userDagMapping", "format", "json", "returnFormat", "json", "data", `[{"username":"ghost","redcap_data_access_group":"north"}]`); code != 400 || !strings.Contains(body, "ghost") {
		t.Fatalf("unknown user: %d %s", code, body)
	}
	north := "17171717171717171717171717171717"
	e.s.AddToken(e.pid, north, FullRights(), "north")
	if code, body := e.callTok(north, "content", "userDagMapping", "format", "json", "data", `[{"username":"x","redcap_data_access_group":""}]`); code != 403 || !strings.Contains(body, "assigned to a Data Access Group") {
		t.Fatalf("DAG user imports DAG mapping: %d %s", code, body)
	}
	// Deleting the role gives the user their own privileges back.
	if code, body := e.call("content", "userRole", "action", "delete", "roles[0]", "U-NOPE"); code != 400 || !strings.Contains(body, "Roles that do not exist: U-NOPE") {
		t.Fatalf("delete unknown role: %d %s", code, body)
	}
	if code, n := e.call("content", "userRole", "action", "delete", "roles[0]", unique); code != 200 || n != "1" {
		t.Fatalf("delete role: %d %s", code, n)
	}
	if _, body := e.callTok(site, "content", "record", "format", "csv", "records", "1"); !strings.Contains(body, "score") {
		t.Fatalf("after the role was deleted: %s", body)
	}
}
