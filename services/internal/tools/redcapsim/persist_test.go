package redcapsim

import (
	"net/url"
	"reflect"
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
