package redcapsim

import (
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func TestPersistenceAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	s, err := New(Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	u, _ := s.Listen("127.0.0.1:0")
	pid, err := s.LoadProject("testdata/projects/vignette-repeating")
	if err != nil {
		t.Fatal(err)
	}
	_ = s.AddToken(pid, testToken, FullRights(), "")
	s.SetSuperToken("S" + testToken + testToken[1:] + "0")
	code, _, body := post(t, u, form("token", testToken, "content", "record", "format", "json", "data",
		`[{"record_id":"3","height":"3.0"},{"record_id":"3","redcap_repeat_instrument":"laboratory","redcap_repeat_instance":"1","lab":"cc1"}]`))
	if code != 200 {
		t.Fatal(body)
	}
	if code, _, body = post(t, u, form("token", testToken, "content", "record", "action", "delete", "records", "2")); code != 200 {
		t.Fatal(body)
	}
	want, _ := s.ExportRows(pid)
	_, _, wantLog := post(t, u, form("token", testToken, "content", "log", "format", "json"))

	// 1. A clean restart (snapshot on Close).
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := New(Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	u2, _ := s2.Listen("127.0.0.1:0")
	got, _ := s2.ExportRows(pid)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("after restart:\n got %v\nwant %v", got, want)
	}
	if _, _, gotLog := post(t, u2, form("token", testToken, "content", "log", "format", "json")); gotLog != wantLog {
		t.Fatalf("log after restart differs")
	}
	// 2. A crash: changes after the snapshot are replayed from the change log.
	if code, _, body := post(t, u2, form("token", testToken, "content", "record", "format", "csv", "data", "record_id,weight\n1,99.0\n")); code != 200 {
		t.Fatal(body)
	}
	_ = s2.DeleteRecord(pid, "3")
	want2, _ := s2.ExportRows(pid)
	s2.mu.RLock()
	for _, p := range s2.projs {
		_ = p.logFile.close() // simulate the process dying: no snapshot
		p.logFile = nil
	}
	s2.mu.RUnlock()
	s2.opts.DataDir = "" // so Close does not snapshot
	s2.Close()
	s3, err := New(Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer s3.Close()
	got2, _ := s3.ExportRows(pid)
	if !reflect.DeepEqual(got2, want2) {
		t.Fatalf("after crash:\n got %v\nwant %v", got2, want2)
	}
	if p, ok := s3.ProjectIDForToken(testToken); !ok || p != pid {
		t.Fatalf("token lost: %d %v", p, ok)
	}
	u3, _ := s3.Listen("127.0.0.1:0")
	if code, _, _ := post(t, u3, url.Values{"token": {testToken}, "content": {"version"}}); code != 200 {
		t.Fatalf("token after restart: %d", code)
	}
}

// TestOldDataFolderTokens: a data folder written before tokens belonged to
// users (rights and DAG on the token, no users in the snapshot) still
// works: each token's user is made from its rights.
func TestOldDataFolderTokens(t *testing.T) {
	dir := t.TempDir()
	s, err := New(Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := s.LoadProject("testdata/projects/dag-write")
	s.Close()
	// Rewrite the folder the old way.
	tokens := `{"users":1,"tokens":[{"token":"` + testToken + `","project":` + strconv.Itoa(pid) + `,"rights":{"Export":true,"Import":false,"Delete":false,"Logging":false,"Metadata":true,"DesignImport":false},"dag":"","user":"api_user_1"}]}`
	if err := os.WriteFile(filepath.Join(dir, "tokens.json"), []byte(tokens), 0o600); err != nil {
		t.Fatal(err)
	}
	snap := filepath.Join(dir, "projects", strconv.Itoa(pid), "snapshot.jsonl")
	b, _ := os.ReadFile(snap)
	lines := strings.SplitN(string(b), "\n", 2)
	var design map[string]map[string]any
	json.Unmarshal([]byte(lines[0]), &design)
	delete(design["design"], "users")
	first, _ := json.Marshal(design)
	os.WriteFile(snap, []byte(string(first)+"\n"+lines[1]), 0o644)

	s2, u := startSim(t, Options{DataDir: dir})
	e := &simEnv{t: t, s: s2, url: u, pid: pid}
	if code, body := e.call("content", "record", "format", "csv", "fields", "record_id"); code != 200 || !strings.HasPrefix(body, "record_id") {
		t.Fatalf("old token: %d %s", code, body)
	}
	if code, _ := e.call("content", "record", "format", "json", "data", `[{"record_id":"9"}]`); code != 403 {
		t.Fatalf("the old token's missing import right: %d", code)
	}
}
