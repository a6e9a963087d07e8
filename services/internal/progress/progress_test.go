package progress

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/ops"
)

func status(phase string, outcome string, n ops.RunCounts, seconds float64) *ops.Status {
	return &ops.Status{Sites: []ops.SiteStatus{{Site: "alpha", Outcome: outcome, Counts: n,
		Run: &ops.RunSummary{ID: "alpha-1", Phase: phase, Started: time.Now().Add(-time.Duration(seconds) * time.Second), Seconds: seconds}}}}
}

// A site's line says where the run is, the rate and the time left; plain
// lines are printed every few seconds and once when a run ends.
func TestSiteLinesAndRate(t *testing.T) {
	s := &Site{Site: "alpha", Run: "alpha-1", Total: 400}
	s.update(&ops.Status{Sites: []ops.SiteStatus{{Site: "alpha", Run: &ops.RunSummary{ID: "alpha-0"}}}}, 400)
	if s.Phase != "" || s.Done {
		t.Fatalf("another run's status was taken: %+v", s)
	}
	s.update(status(messages.PhaseExported, ops.ResultImporting, ops.RunCounts{Exported: 400, Cleaned: 300, Imported: 200, Waiting: 200}, 10), 0)
	if s.Phase != "importing" || s.Done || s.Rate != 20 || s.ETA != 10*time.Second {
		t.Fatalf("importing: %+v", s)
	}
	if got := s.Line(); got != "alpha: importing, exported 400, cleaned 300, imported 200/400, 20 records/s, about 10s left" {
		t.Fatalf("line %q", got)
	}
	var out bytes.Buffer
	l := &lines{out: &out, every: time.Hour}
	l.show([]*Site{s})
	l.show([]*Site{s}) // not due again
	s.update(status(messages.PhaseExported, ops.ResultPartial, ops.RunCounts{Exported: 400, Cleaned: 400, Imported: 396, DeadLettered: 4}, 20), 0)
	l.show([]*Site{s})
	l.show([]*Site{s})
	got := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(got) != 2 || !strings.HasPrefix(got[1], "alpha: done, exported 400, cleaned 400, imported 396/400, dead-lettered 4, 20 records/s") || !s.Done {
		t.Fatalf("lines:\n%s", out.String())
	}
	f := &Site{Site: "beta", Run: "alpha-1"}
	st := status(messages.PhaseFailed, ops.ResultFailed, ops.RunCounts{}, 1)
	st.Sites[0].Site, st.Sites[0].Reason = "beta", "beta: export metadata: HTTP 403"
	f.update(st, 0)
	if !f.Done || !f.Failed() || !strings.HasSuffix(f.Line(), ": beta: export metadata: HTTP 403") {
		t.Fatalf("failed: %+v %q", f, f.Line())
	}
}
