package redcapsim

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestVerboseLogsEveryCall: at debug level (relay sim -v) every call logs
// its method, content, action, project, status and duration, and never
// the token or a value.
func TestVerboseLogsEveryCall(t *testing.T) {
	var buf syncBuf
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, u := startSim(t, Options{Logger: log})
	pid, _ := s.LoadProject("testdata/projects/simple")
	s.AddToken(pid, testToken, FullRights(), "")
	e := &simEnv{t: t, s: s, url: u, pid: pid}
	e.call("content", "record", "format", "json", "data", `[{"record_id":"1","name_first":"Secretvalue"}]`)
	e.call("content", "record", "action", "delete", "records[0]", "404")
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	var calls []string
	for _, l := range lines {
		if strings.Contains(l, "redcapsim: call") {
			calls = append(calls, l)
		}
	}
	if len(calls) != 2 {
		t.Fatalf("%d call lines:\n%s", len(calls), buf.String())
	}
	for i, want := range []string{"method=POST content=record action=import project_id=1 status=200", "content=record action=delete project_id=1 status=400"} {
		if !strings.Contains(calls[i], want) || !strings.Contains(calls[i], " ms=") {
			t.Errorf("line %d: %s", i, calls[i])
		}
	}
	if strings.Contains(buf.String(), testToken) || strings.Contains(buf.String(), "Secretvalue") {
		t.Fatalf("the log holds the token or a value:\n%s", buf.String())
	}
}
