package redcapsim

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestFileRepository(t *testing.T) {
	e := newTwoArm(t, Options{DataDir: t.TempDir()})
	list := func(tok string, kv ...string) []map[string]any {
		t.Helper()
		code, body := e.callTok(tok, append([]string{"content", "fileRepository", "action", "list", "format", "json"}, kv...)...)
		var out []map[string]any
		if code != 200 || json.Unmarshal([]byte(body), &out) != nil {
			t.Fatalf("list: %d %s", code, body)
		}
		return out
	}
	code, body := e.call("content", "fileRepository", "action", "createFolder", "name", "Protocols", "format", "json")
	if code != 200 || body != `[{"folder_id":1}]` {
		t.Fatalf("create folder: %d %s", code, body)
	}
	e.call("content", "fileRepository", "action", "createFolder", "name", "North only", "dag_id", "7", "format", "json")
	if code, body := e.call("content", "fileRepository", "action", "createFolder", "name", "Sub", "folder_id", "1", "format", "csv"); code != 200 || body != "folder_id\n3\n" {
		t.Fatalf("sub-folder: %d %q", code, body)
	}
	kv := []string{"token", testToken, "content", "fileRepository", "action", "import", "folder_id", "1"}
	if code, body := upload(t, e.url, kv, "protocol.pdf", []byte("%PDF protocol")); code != 200 || body != "" {
		t.Fatalf("import: %d %s", code, body)
	}
	upload(t, e.url, []string{"token", testToken, "content", "fileRepository", "action", "import", "folder_id", "2"}, "north.txt", []byte("north"))
	top := list(testToken)
	if len(top) != 2 || top[0]["name"] != "North only" || top[1]["name"] != "Protocols" || top[1]["folder_id"] != float64(1) {
		t.Fatalf("top level: %v", top)
	}
	in1 := list(testToken, "folder_id", "1")
	if len(in1) != 2 || in1[0]["folder_id"] != float64(3) || in1[1]["name"] != "protocol.pdf" {
		t.Fatalf("folder 1: %v", in1)
	}
	docID := jsonNum(in1[1]["doc_id"])
	if _, got := e.call("content", "fileRepository", "action", "export", "doc_id", docID); got != "%PDF protocol" {
		t.Fatalf("export: %q", got)
	}
	// DAG restrictions: a south user does not see the north folder or its files.
	south := "20202020202020202020202020202020"
	r := FullRights()
	e.s.AddToken(e.pid, south, r, "south")
	if got := list(south); len(got) != 1 || got[0]["name"] != "Protocols" {
		t.Fatalf("south sees %v", got)
	}
	if code, body := e.callTok(south, "content", "fileRepository", "action", "list", "folder_id", "2", "returnFormat", "json"); code != 400 || !strings.Contains(body, "does not exist in the File Repository or you do not have access to it") {
		t.Fatalf("south lists north: %d %s", code, body)
	}
	for _, c := range []struct {
		kv   []string
		text string
	}{
		{[]string{"action", "createFolder"}, "The parameter 'name' is missing"},
		{[]string{"action", "createFolder", "name", strings.Repeat("x", 151)}, "150 characters"},
		{[]string{"action", "createFolder", "name", "x", "dag_id", "99"}, "not a valid Data Access Group ID"},
		{[]string{"action", "createFolder", "name", "x", "role_id", "99"}, "not a valid user role ID"},
		{[]string{"action", "list", "folder_id", "42"}, "does not exist in the File Repository"},
		{[]string{"action", "export", "doc_id", "999"}, "does not exist in the File Repository"},
		{[]string{"action", "export"}, "The parameter 'doc_id' is missing"},
	} {
		code, body := e.call(append([]string{"content", "fileRepository", "returnFormat", "json"}, c.kv...)...)
		if code != 400 || !strings.Contains(body, c.text) {
			t.Errorf("%v: %d %s", c.kv, code, body)
		}
	}
	noRepo := "21212121212121212121212121212121"
	e.s.AddToken(e.pid, noRepo, Rights{Export: true, Import: true}, "")
	if code, body := e.callTok(noRepo, "content", "fileRepository", "action", "list", "returnFormat", "json"); code != 403 || !strings.Contains(body, "'File Repository' privileges") {
		t.Fatalf("no repository right: %d %s", code, body)
	}
	if code, _ := e.call("content", "fileRepository", "action", "delete", "doc_id", docID); code != 200 {
		t.Fatal("delete")
	}
	if got := list(testToken, "folder_id", "1"); len(got) != 1 {
		t.Fatalf("after delete: %v", got)
	}
	// Persisted.
	dir := e.s.opts.DataDir
	e.s.Close()
	s2, err := New(Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if p := s2.project(e.pid); len(p.folders) != 3 || p.folders[1].DAGID != 7 {
		t.Fatalf("folders after restart: %+v", p.folders)
	}
}

func jsonNum(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
