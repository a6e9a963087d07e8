package redcap_test

import (
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/redcap"
	"github.com/redcap-relay/relay/services/internal/tools/redcapsim"
)

// A site's REDCap clock in its own zone: the reading shows it, and a
// server_time_zone that disagrees is named, with which way the windows go.
func TestServerClockShowsAWrongServerTimeZone(t *testing.T) {
	ny, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	sim, err := redcapsim.New(redcapsim.Options{TimeZone: ny})
	if err != nil {
		t.Fatal(err)
	}
	id, err := sim.CreateProject(redcapsim.ProjectSpec{Title: "NY site", Fields: []messages.Field{field("record_id", "form_1", "text", "ID", "", "")}})
	must(t, err)
	must(t, sim.AddToken(id, tokClassic, redcapsim.FullRights(), ""))
	must(t, sim.AddToken(id, tokReadOnly, redcapsim.Rights{Export: true, Metadata: true}, ""))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	srv := &http.Server{Handler: sim.Handler()}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close(); sim.Close() })
	c, err := redcap.New(redcap.Options{Site: "site-a", URL: "http://" + ln.Addr().String() + "/api/", Token: tokClassic, CallsPerMinute: -1})
	must(t, err)

	if _, err := c.ExportRecordIDs(ctx, "record_id", time.Time{}); err != nil { // an export, logged
		t.Fatal(err)
	}
	r, err := c.ReadServerClock(ctx)
	must(t, err)
	_, nyOff := time.Now().In(ny).Zone()
	if got, ok := r.ZoneOffset(); !ok || got != time.Duration(nyOff)*time.Second {
		t.Fatalf("reading %+v: offset %v (%v), want New York's %v", r, got, ok, time.Duration(nyOff)*time.Second)
	}
	if w := redcap.ClockMismatch(r, ny, "America/New_York"); w != "" {
		t.Fatalf("the right zone is reported wrong: %s", w)
	}
	w := redcap.ClockMismatch(r, time.UTC, "UTC")
	if !strings.Contains(w, "server_time_zone UTC is UTC+00:00") || !strings.Contains(w, "too late") || !strings.Contains(w, "can miss changes") {
		t.Fatalf("UTC for a New York server: %q; want the zones named and the missed-changes risk", w)
	}
	if !strings.Contains(w, "start 5h too late") && !strings.Contains(w, "start 4h too late") {
		t.Fatalf("UTC for a New York server: %q; want the size of the gap", w)
	}
	la, _ := time.LoadLocation("America/Los_Angeles")
	if w := redcap.ClockMismatch(r, la, "America/Los_Angeles"); !strings.Contains(w, "harmless") {
		t.Fatalf("Los Angeles for a New York server: %q; want the harmless direction (windows start earlier)", w)
	}

	// Without the Logging right there is no reading, and no guess.
	ro, err := redcap.New(redcap.Options{Site: "site-a", URL: "http://" + ln.Addr().String() + "/api/", Token: tokReadOnly, CallsPerMinute: -1})
	must(t, err)
	if _, err := ro.ReadServerClock(ctx); err == nil || !strings.Contains(err.Error(), "Logging") {
		t.Fatalf("read-only token: %v; want REDCap's Logging refusal", err)
	}
}

func TestZoneOffsetNeedsAFreshEntry(t *testing.T) {
	date := time.Date(2026, 12, 2, 14, 5, 40, 0, time.UTC)
	for _, c := range []struct {
		log  string
		want time.Duration
		ok   bool
	}{
		{"2026-12-02 14:05", 0, true},
		{"2026-12-02 14:04", 0, true}, // a minute before the answer
		{"2026-12-02 09:05", -5 * time.Hour, true},
		{"2026-12-02 19:35", 5*time.Hour + 30*time.Minute, true},
		{"2026-11-30 09:05", 0, false}, // days old: not this call's
		{"", 0, false},
		{"not a time", 0, false},
	} {
		got, ok := redcap.ClockReading{NewestLog: c.log, Date: date}.ZoneOffset()
		if got != c.want || ok != c.ok {
			t.Errorf("log %q at %v: %v, %v; want %v, %v", c.log, date, got, ok, c.want, c.ok)
		}
	}
}
