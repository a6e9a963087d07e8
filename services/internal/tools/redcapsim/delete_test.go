package redcapsim

import (
	"strings"
	"testing"

	"github.com/redcap-relay/relay/messages"
)

// deleteEnv: the files project (two events, crf repeating in week 4) with
// record 1 in both events (instances 1 and 2) and record 2 at baseline.
func deleteEnv(t *testing.T) *simEnv {
	t.Helper()
	s, u := startSim(t, Options{DataDir: t.TempDir()})
	pid, err := s.CreateProject(filesSpec())
	if err != nil {
		t.Fatal(err)
	}
	s.AddToken(pid, testToken, FullRights(), "")
	if err := s.ImportRows(pid, []messages.Row{
		{"rid": "1", "redcap_event_name": "baseline_arm_1", "weight": "70", "consent_complete": "2"},
		{"rid": "1", "redcap_event_name": "week_4_arm_1", "redcap_repeat_instrument": "crf", "redcap_repeat_instance": "1", "weight": "71"},
		{"rid": "1", "redcap_event_name": "week_4_arm_1", "redcap_repeat_instrument": "crf", "redcap_repeat_instance": "2", "weight": "72"},
		{"rid": "2", "redcap_event_name": "baseline_arm_1", "weight": "80"},
	}, false); err != nil {
		t.Fatal(err)
	}
	return &simEnv{t: t, s: s, url: u, pid: pid}
}

func rowsOf(e *simEnv) string {
	e.t.Helper()
	rows, _ := e.s.ExportRows(e.pid)
	var out []string
	for _, r := range rows {
		out = append(out, r["rid"]+"/"+r["redcap_event_name"]+"/"+r["redcap_repeat_instance"]+"="+r["weight"]+","+r["consent_complete"])
	}
	return strings.Join(out, " ")
}

func TestDeleteInstrumentEventInstance(t *testing.T) {
	e := deleteEnv(t)
	start := rowsOf(e)
	// Parameter errors: REDCap's texts, nothing deleted.
	for _, c := range []struct {
		kv   []string
		text string
	}{
		{[]string{"records[0]", "1", "instrument", "crf"}, "1: Event is mandatory for longitudinal project."},
		{[]string{"records[0]", "1", "instrument", "nope", "event", "baseline_arm_1"}, "1: Invalid instrument."},
		{[]string{"records[0]", "1", "instrument", "crf", "event", "week_9_arm_1"}, "1: Invalid Unique Event Name."},
		{[]string{"records[0]", "1", "instrument", "crf", "event", "week_4_arm_1", "repeat_instance", "x"}, "1: Repeating instance should be numeric."},
		{[]string{"records[0]", "1", "records[1]", "7", "instrument", "crf", "event", "baseline_arm_1"}, "The following records do not exist: 7"},
		{[]string{"records", ""}, "The 'records' parameter is an empty array"},
		{nil, "Incorrect format for 'records' parameter"},
	} {
		code, body := e.call(append([]string{"content", "record", "action", "delete", "returnFormat", "json"}, c.kv...)...)
		if code != 400 || !strings.Contains(body, c.text) {
			t.Errorf("%v: %d %s", c.kv, code, body)
		}
	}
	if got := rowsOf(e); got != start {
		t.Fatalf("a refused delete changed data:\n%s\nwas\n%s", got, start)
	}
	// One repeating instance: only that row goes.
	if code, body := e.call("content", "record", "action", "delete", "records[0]", "1", "instrument", "crf", "event", "week_4_arm_1", "repeat_instance", "2"); code != 200 || body != "1" {
		t.Fatalf("instance delete: %d %s", code, body)
	}
	if got := rowsOf(e); got != "1/baseline_arm_1/=70,2 1/week_4_arm_1/=, 1/week_4_arm_1/1=71, 2/baseline_arm_1/=80,0" {
		t.Fatalf("after instance delete: %s", got)
	}
	// One instrument in one event: its fields and status blank, the record
	// and the other instrument stay; a record without that data is not counted.
	code, body := e.call("content", "record", "action", "delete", "records[0]", "1", "records[1]", "2", "instrument", "consent", "event", "baseline_arm_1")
	if code != 200 || body != "1" {
		t.Fatalf("instrument delete: %d %s", code, body)
	}
	if got := rowsOf(e); got != "1/baseline_arm_1/=70,0 1/week_4_arm_1/=, 1/week_4_arm_1/1=71, 2/baseline_arm_1/=80,0" {
		t.Fatalf("after instrument delete: %s", got)
	}
	// A whole event: the record keeps its other event.
	if code, body := e.call("content", "record", "action", "delete", "records[0]", "1", "event", "baseline_arm_1"); code != 200 || body != "1" {
		t.Fatalf("event delete: %d %s", code, body)
	}
	if got := rowsOf(e); got != "1/week_4_arm_1/=, 1/week_4_arm_1/1=71, 2/baseline_arm_1/=80,0" {
		t.Fatalf("after event delete: %s", got)
	}
	// The log: updates for partial deletes, a deletion only for whole records.
	_, body = e.call("content", "log", "format", "json", "logtype", "record_delete")
	if body != "[]" {
		t.Fatalf("partial deletes logged as record deletions: %s", body)
	}
	_, body = e.call("content", "log", "format", "json", "record", "1")
	if !strings.Contains(body, "Deleted data of instrument 'crf' in event 'week_4_arm_1', instance 2") {
		t.Fatalf("log: %s", body)
	}
	// Replayed after a crash (no snapshot on Close): the same rows.
	want := rowsOf(e)
	p := e.s.project(e.pid)
	p.mu.Lock()
	p.logFile.close()
	p.logFile = nil
	p.mu.Unlock()
	s2, err := New(Options{DataDir: e.s.opts.DataDir})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got := rowsOf(&simEnv{t: t, s: s2, pid: e.pid}); got != want {
		t.Fatalf("replayed:\n%s\nwant\n%s", got, want)
	}
}

// TestDeleteRemovesFiles: deleting a record (or the instance holding a
// file) deletes its files too.
func TestDeleteRemovesFiles(t *testing.T) {
	e := deleteEnv(t)
	kv := []string{"token", testToken, "content", "file", "action", "import", "record", "1", "field", "scan", "event", "week_4_arm_1", "repeat_instance", "2"}
	if code, body := upload(t, e.url, kv, "s.txt", []byte("scan")); code != 200 {
		t.Fatal(code, body)
	}
	p := e.s.project(e.pid)
	if len(p.docs) != 1 {
		t.Fatalf("%d docs", len(p.docs))
	}
	if code, body := e.call("content", "record", "action", "delete", "records[0]", "1", "instrument", "crf", "event", "week_4_arm_1", "repeat_instance", "2"); code != 200 {
		t.Fatal(code, body)
	}
	if len(p.docs) != 0 {
		t.Fatalf("the instance's file is still stored: %d docs", len(p.docs))
	}
}
