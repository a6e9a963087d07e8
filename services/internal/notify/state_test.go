package notify

import (
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/redcap-relay/relay/services/internal/config"
)

// With a state file, a restarted notifier does not send again what it sent.
func TestStateFileKeepsWhatWasSent(t *testing.T) {
	a := &config.Alerts{StateFile: filepath.Join(t.TempDir(), "notifier.json"), MaxPerHour: 12, RetryFor: config.Duration(time.Hour), TimeZone: "UTC",
		UnreachableAfter: config.Duration(time.Minute)}
	newN := func() *Notifier {
		n, err := New(Options{Network: &config.Network{Alerts: *a}, Channels: []Channel{}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	n := newN()
	now := time.Now().UTC() // after the notifier started: the protocol report is news
	if got := n.feed(story(now)); len(got) != 5 {
		t.Fatalf("first check: %d alerts", len(got))
	}
	n.saveState()
	if got := newN().feed(story(now)); len(got) != 0 {
		t.Fatalf("after a restart the same state alerted again: %+v", got)
	}
}

// The daily summary is due once a day, after its time; the first check
// only remembers when it ran.
func TestSummaryIsDueOnceADay(t *testing.T) {
	n := &Notifier{a: &config.Alerts{DailySummary: "07:00", TimeZone: "America/New_York"}, state: newState(time.Now()), summary: &dispatcher{}}
	ny, _ := time.LoadLocation("America/New_York")
	at := func(d, h, m int) time.Time { return time.Date(2026, 12, d, h, m, 0, 0, ny) }
	for _, c := range []struct {
		now  time.Time
		want bool
	}{
		{at(2, 6, 0), false}, // first check: remembered
		{at(2, 6, 59), false},
		{at(2, 7, 0), true},
		{at(2, 9, 0), false},
		{at(3, 6, 30), false},
		{at(3, 7, 5), true},
	} {
		if got := n.summaryDue(c.now.UTC()); got != c.want {
			t.Errorf("%s: due %v, want %v", c.now, got, c.want)
		}
	}
}
