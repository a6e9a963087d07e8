package redcapsim

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/redcap-relay/relay/messages"
)

// TestSetValuesSilently: a silent change is stored (exports show it) but
// leaves no change-log entry, so a dateRangeBegin export after it and
// content=log do not see it; it survives a restart; bad input changes
// nothing. The admin HTTP call does the same.
func TestSetValuesSilently(t *testing.T) {
	dir := t.TempDir()
	now := time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	s, u := startSim(t, Options{DataDir: dir, Now: clock})
	pid, err := s.LoadProject("testdata/projects/simple")
	if err != nil {
		t.Fatal(err)
	}
	s.AddToken(pid, testToken, FullRights(), "")
	e := &simEnv{t: t, s: s, url: u, pid: pid}
	now = now.Add(time.Hour)
	if err := s.SetValuesSilently(pid, "2", []messages.Row{{"name_first": "Changed"}}); err != nil {
		t.Fatal(err)
	}
	code, body := e.call("content", "record", "format", "json", "records[0]", "2", "fields[0]", "name_first")
	if code != 200 || !strings.Contains(body, `"Changed"`) {
		t.Fatalf("value not stored: %d %s", code, body)
	}
	code, body = e.call("content", "record", "format", "json", "dateRangeBegin", "2025-03-01 10:30:00", "fields[0]", "record_id")
	if code != 200 || body != "[]" {
		t.Fatalf("dateRangeBegin saw the silent change: %d %s", code, body)
	}
	if _, body = e.call("content", "log", "format", "json", "record", "2"); strings.Contains(body, "11:00") {
		t.Fatalf("log shows it: %s", body)
	}
	// bad input: unknown record, a row of another record, a bad value
	for _, bad := range []func() error{
		func() error { return s.SetValuesSilently(pid, "99", []messages.Row{{"name_first": "x"}}) },
		func() error {
			return s.SetValuesSilently(pid, "2", []messages.Row{{"record_id": "3", "name_first": "x"}})
		},
		func() error { return s.SetValuesSilently(pid, "2", []messages.Row{{"dob": "not a date"}}) },
	} {
		if err := bad(); err == nil {
			t.Fatal("bad silent change accepted")
		} else if strings.Contains(err.Error(), "not a date") {
			t.Fatalf("error shows the value: %v", err)
		}
	}
	admin := httptest.NewServer(s.AdminHandler())
	defer admin.Close()
	resp, err := http.Post(admin.URL+"/sim/silent-values?project=1&record=3", "application/json", strings.NewReader(`[{"name_last":"Quiet"}]`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("admin: %d %s", resp.StatusCode, b)
	}
	resp, _ = http.Post(admin.URL+"/sim/silent-values?project=1&record=77", "application/json", strings.NewReader(`[{"name_last":"x"}]`))
	if resp.StatusCode != 400 {
		t.Fatalf("admin unknown record: %d", resp.StatusCode)
	}
	resp.Body.Close()
	// Restart: the values stay, the log still has no entry for them.
	s.Close()
	s2, err := New(Options{DataDir: dir, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	rows, _ := s2.ExportRows(pid)
	if rows[1]["name_first"] != "Changed" || rows[2]["name_last"] != "Quiet" {
		t.Fatalf("after restart: %v / %v", rows[1]["name_first"], rows[2]["name_last"])
	}
	p := s2.project(pid)
	for _, l := range p.log {
		if l.ts >= now.Unix() && l.kind == logData {
			t.Fatalf("a log entry after restart: %+v", l)
		}
	}
}
