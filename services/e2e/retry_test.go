package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/ops"
	"github.com/redcap-relay/relay/services/internal/pipeline/broker"
	"github.com/redcap-relay/relay/services/internal/tools/redcapsim/faults"
)

// lastRunEvent is the newest event of a site's runs.
func (n *testNet) lastRunEvent(site string) messages.RunEvent {
	var ev messages.RunEvent
	broker.LastJSON(context.Background(), n.stack.JS, messages.StreamAudit, messages.RunSubject(site), &ev)
	return ev
}

// A site whose server refuses connections for longer than its retry_for:
// every retry is logged and shown in status while it lasts, then the run
// fails with a dead letter that names the cause; the next run, with the
// site back, syncs it.
func TestAnUnreachableSiteFailsAfterItsRetryBudget(t *testing.T) {
	n := newNet(t, netOpts{sites: []string{"alpha"}, records: 20, siteExtra: "    retry_for: 6s\n"})
	n.start(pipeline...)
	if err := n.faults.Set(n.sites["alpha"], faults.Faults{Outage: true}); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	run := requestRun(t, n, "alpha", t0)
	waitFor(t, 30*time.Second, "the run to say it is retrying", func() bool {
		return n.lastRunEvent("alpha").Phase == messages.PhaseRetrying
	})
	st, err := ops.GetStatus(context.Background(), n.stack.JS, []string{"alpha"})
	if err != nil {
		t.Fatal(err)
	}
	var table strings.Builder
	st.WriteTable(&table)
	if st.Sites[0].Result() != "retrying" || !strings.Contains(table.String(), "alpha: retrying: ") || !strings.Contains(table.String(), "attempt ") {
		t.Fatalf("status while retrying:\n%s", table.String())
	}
	ev := n.waitRuns(map[string]string{"alpha": run}, time.Minute)["alpha"]
	if ev.Phase != messages.PhaseFailed || !strings.Contains(ev.Error, "retries exhausted") || !strings.Contains(ev.Error, "cannot reach") {
		t.Fatalf("run after its retry budget: %s %q; want failed, naming the cause", ev.Phase, ev.Error)
	}
	if dls := n.deadLetters(messages.StageExport, "alpha"); len(dls) != 1 || !strings.Contains(dls[0].Error, "cannot reach") {
		t.Fatalf("dead letters %+v, want the run's with the cause", dls)
	}
	if logs := n.logs.String(); !strings.Contains(logs, "call failed; retrying") || !strings.Contains(logs, "next_in=") {
		t.Fatal("the retries were not logged")
	}
	n.faults.Clear(n.sites["alpha"])
	if ev := n.sync(false, t0.Add(time.Minute))["alpha"]; ev.Phase != messages.PhaseExported {
		t.Fatalf("next run with the site back: %+v", ev)
	}
	n.assertEqual(n.expected())
}

// The destination is down when a run starts: the run cannot check the
// destination's dictionary, so it waits (retrying, visibly) instead of
// exporting, and goes on when the destination is back.
func TestARunWaitsForTheDestinationCheck(t *testing.T) {
	n := newNet(t, netOpts{sites: []string{"alpha"}, records: 20})
	n.start(pipeline...)
	if err := n.faults.Set(n.dest, faults.Faults{Outage: true}); err != nil {
		t.Fatal(err)
	}
	run := requestRun(t, n, "alpha", time.Now())
	waitFor(t, time.Minute, "the run to wait for the destination check", func() bool {
		ev := n.lastRunEvent("alpha")
		return ev.Phase == messages.PhaseRetrying && strings.Contains(ev.Error, "destination")
	})
	if got := n.rawCount("alpha"); got != 0 {
		t.Fatalf("%d records exported before the destination's dictionary was checked", got)
	}
	n.faults.Clear(n.dest)
	if ev := n.waitRuns(map[string]string{"alpha": run}, 2*time.Minute)["alpha"]; ev.Phase != messages.PhaseExported {
		t.Fatalf("run after the destination came back: %+v", ev)
	}
	n.assertEqual(n.expected())
}
