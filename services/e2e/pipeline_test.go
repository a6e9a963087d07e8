package e2e

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/pipeline/app"
	"github.com/redcap-relay/relay/services/internal/pipeline/broker"
	"github.com/redcap-relay/relay/services/internal/tools/redcapsim/faults"
)

var pipeline = []string{app.Exporter, app.Transformer, app.Importer}

// Three sites into one destination: the destination equals the transform
// of every site's data, computed independently here.
func TestThreeSitesToDestination(t *testing.T) {
	n := newNet(t, netOpts{sites: []string{"alpha", "beta", "gamma"}, records: 60})
	n.start(pipeline...)
	evs := n.sync(false, time.Now())
	for s, ev := range evs {
		if ev.Phase != messages.PhaseExported || ev.Exported != 60 {
			t.Errorf("site %s: run %s exported %d (%s)", s, ev.Phase, ev.Exported, ev.Error)
		}
	}
	n.assertEqual(n.expected())
	if d := n.dlqTotal(); d != 0 {
		t.Errorf("DLQ holds %d messages, want 0", d)
	}
	// PHI stays inside: the values of the fields the policy drops (names,
	// visit dates, notes) appear in no log line and in nothing that left
	// the site's stage: cleaned records, audit, run events, dead letters.
	phi := []string{"Person ", "private note", "2026-03-0"}
	logs := n.logs.String()
	for _, v := range phi {
		if strings.Contains(logs, v) {
			t.Errorf("a log line contains the value %q", v)
		}
	}
	for _, stream := range []string{messages.StreamRecordsClean, messages.StreamAudit, messages.StreamDLQ} {
		broker.EachJSON(context.Background(), n.stack.JS, stream, ">", func(b []byte) {
			for _, v := range phi {
				if strings.Contains(string(b), v) {
					t.Errorf("stream %s carries the value %q", stream, v)
				}
			}
		})
	}
	if n := n.rawCount("alpha"); n == 0 {
		t.Error("no raw records")
	}
}

// Changed-since: a second run with no change publishes nothing; a change
// publishes only the changed records; a deletion reaches the destination.
func TestIncrementalRunsAndDeletions(t *testing.T) {
	n := newNet(t, netOpts{sites: []string{"alpha"}, records: 40, deletions: true})
	n.start(pipeline...)
	time.Sleep(2100 * time.Millisecond) // seed older than the 1s overlap (REDCap logs whole seconds)
	t0 := time.Now()
	n.sync(false, t0)
	before := n.rawCount("alpha")
	if before != 40 {
		t.Fatalf("first run published %d raw records, want 40", before)
	}

	ev := n.sync(false, t0.Add(2*time.Second))["alpha"]
	if ev.Full || ev.Exported != 0 || n.rawCount("alpha") != before {
		t.Fatalf("second run without changes: full=%v exported=%d raw=%d, want an incremental run publishing nothing", ev.Full, ev.Exported, n.rawCount("alpha"))
	}
	if ev.Calls > 3 {
		t.Errorf("an incremental run without changes made %d API calls, want at most 3", ev.Calls)
	}

	pid := n.sites["alpha"]
	time.Sleep(1100 * time.Millisecond) // REDCap's log has one-second resolution
	if err := n.sim.ImportRows(pid, []messages.Row{{"record_id": "3", "score": "9"}, {"record_id": "7", "mood": "3"}}, false); err != nil {
		t.Fatal(err)
	}
	if err := n.sim.DeleteRecord(pid, "11"); err != nil {
		t.Fatal(err)
	}
	ev = n.sync(false, t0.Add(4*time.Second))["alpha"]
	if ev.Exported != 2 || ev.Deleted != 0 || ev.DeletionsPending != 1 {
		t.Fatalf("run after changes exported %d, deleted %d, pending %d; want 2, 0 and 1 (a deletion waits for the next run)", ev.Exported, ev.Deleted, ev.DeletionsPending)
	}
	ev = n.sync(false, t0.Add(6*time.Second))["alpha"]
	if ev.Exported != 0 || ev.Deleted != 1 || ev.DeletionsPending != 0 {
		t.Fatalf("next run exported %d, deleted %d, pending %d; want 0, 1 and 0", ev.Exported, ev.Deleted, ev.DeletionsPending)
	}
	if got := n.rawCount("alpha"); got != before+3 {
		t.Errorf("raw stream grew by %d messages, want 3 (2 changed, 1 deletion)", got-before)
	}
	n.assertEqual(n.expected())
}

// Records the destination rejects go to the DLQ with REDCap's own message;
// the rest of their batches is imported.
func TestDestinationRejectsOnlyBadRecords(t *testing.T) {
	// The destination codes scores 0-7 only: every record scoring 8-10 is invalid there.
	n := newNet(t, netOpts{sites: []string{"alpha"}, records: 45, destScoreCodes: "0, 0 | 1, 1 | 2, 2 | 3, 3 | 4, 4 | 5, 5 | 6, 6 | 7, 7"})
	n.start(pipeline...)
	n.sync(false, time.Now())
	want := n.expected()
	bad := map[string]bool{}
	for id, r := range want {
		if sc, _ := strconv.Atoi(r["score"]); sc > 7 {
			bad[id] = true
			delete(want, id)
		}
	}
	if len(bad) == 0 {
		t.Fatal("test data has no score above 7")
	}
	n.assertEqual(want)
	dls := n.deadLetters(messages.StageImport, "alpha")
	if len(dls) != len(bad) {
		t.Fatalf("DLQ has %d import dead letters, want %d", len(dls), len(bad))
	}
	for _, dl := range dls {
		if !bad[dl.RecordID] {
			t.Errorf("record %s dead-lettered but valid", dl.RecordID)
		}
		if len(dl.Details) == 0 || dl.Details[0].Field != "score" || dl.Details[0].Message == "" {
			t.Errorf("dead letter for %s lacks REDCap's message for field score: %+v", dl.RecordID, dl)
		}
		if strings.Contains(dl.Error, "\"9\"") || strings.Contains(dl.Error, "\"10\"") {
			t.Errorf("dead letter reason quotes the value: %q", dl.Error)
		}
	}
}

// A revoked token fails that site's run with a clear status and a dead
// letter; the other site is not affected.
func TestRevokedTokenFailsOnlyThatSite(t *testing.T) {
	n := newNet(t, netOpts{sites: []string{"alpha", "beta"}, records: 20})
	n.sim.RevokeToken(n.tokens["beta"])
	n.start(pipeline...)
	evs := n.sync(false, time.Now())
	if evs["beta"].Phase != messages.PhaseFailed || !strings.Contains(evs["beta"].Error, "403") {
		t.Errorf("beta: phase %s error %q, want failed with the 403", evs["beta"].Phase, evs["beta"].Error)
	}
	if strings.Contains(evs["beta"].Error, n.tokens["beta"]) {
		t.Error("the run error contains the token")
	}
	if evs["alpha"].Phase != messages.PhaseExported || evs["alpha"].Exported != 20 {
		t.Errorf("alpha: %+v, want exported 20", evs["alpha"])
	}
	if dls := n.deadLetters(messages.StageExport, "beta"); len(dls) != 1 {
		t.Errorf("beta has %d export dead letters, want 1", len(dls))
	}
	want := n.expected()
	for id := range want {
		if strings.HasPrefix(id, "beta-") {
			delete(want, id)
		}
	}
	n.assertEqual(want)
}

// A site answering some calls with an HTML page or an empty body (status
// 200) is retried; nothing is lost.
func TestSiteGarbageAnswersAreRetried(t *testing.T) {
	n := newNet(t, netOpts{sites: []string{"alpha"}, records: 80, batchSize: 10})
	if err := n.faults.Set(n.sites["alpha"], faults.Faults{EveryN: 3, HTMLRate: 0.34, EmptyRate: 0.33, MemoryRate: 0.33}); err != nil {
		t.Fatal(err)
	}
	n.start(pipeline...)
	ev := n.sync(false, time.Now())["alpha"]
	if ev.Phase != messages.PhaseExported || ev.Exported != 80 {
		t.Fatalf("run: %+v", ev)
	}
	n.assertEqual(n.expected())
	if d := n.dlqTotal(); d != 0 {
		t.Errorf("DLQ holds %d, want 0", d)
	}
}

// The destination is down for 20+ seconds mid-run (after the runs checked
// its dictionary): the backlog waits in the stream and drains when it is
// back; nothing is dead-lettered.
func TestDestinationOutageHoldsBacklog(t *testing.T) {
	n := newNet(t, netOpts{sites: []string{"alpha", "beta"}, records: 100, importBatch: 10, batchSize: 10})
	n.start(pipeline...)
	for _, s := range n.opts.sites { // slow exports: 100 ms a call, 10 records a batch
		if err := n.faults.Set(n.sites[s], faults.Faults{Latency: faults.Duration(100 * time.Millisecond)}); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	runs := map[string]string{}
	for _, s := range n.opts.sites {
		runs[s] = requestRun(t, n, s, start)
	}
	waitFor(t, time.Minute, "both runs to be past their destination check", func() bool {
		return n.rawCount("alpha") > 0 && n.rawCount("beta") > 0
	})
	if err := n.faults.Set(n.dest, faults.Faults{Outage: true}); err != nil {
		t.Fatal(err)
	}
	down := time.Now()
	// Wait until the exports are done: the backlog is then in the stream.
	waitFor(t, time.Minute, "exports to finish during the outage", func() bool {
		return n.rawCount("alpha") == 100 && n.rawCount("beta") == 100
	})
	time.Sleep(time.Second) // an import call in flight when the outage began
	during := len(n.destination())
	time.Sleep(time.Until(down.Add(20 * time.Second)))
	if got := len(n.destination()); got != during || got == 200 {
		t.Fatalf("destination went from %d to %d records during the outage, want it unchanged and short of 200", during, got)
	}
	n.faults.Clear(n.dest)
	n.waitRuns(runs, 2*time.Minute)
	n.assertEqual(n.expected())
	if d := n.dlqTotal(); d != 0 {
		t.Errorf("DLQ holds %d after an outage, want 0", d)
	}
}

// The destination is down before a run starts (it synced once before): the
// run is checked against the destination's last dictionary, says so in its
// warnings, and exports; the records wait in the stream (nothing imported,
// nothing dead-lettered) and drain when the destination is back.
func TestARunWhileTheDestinationIsDownWaitsInTheStream(t *testing.T) {
	if testing.Short() {
		t.Skip("the importer tries the destination for 30 s first")
	}
	n := newNet(t, netOpts{sites: []string{"alpha"}, records: 40})
	n.start(pipeline...)
	t0 := time.Now()
	n.sync(false, t0)
	n.assertEqual(n.expected())

	if err := n.faults.Set(n.dest, faults.Faults{Outage: true}); err != nil {
		t.Fatal(err)
	}
	if err := n.sim.ImportRows(n.sites["alpha"], siteRows(60, 1), false); err != nil {
		t.Fatal(err)
	}
	run := requestRun(t, n, "alpha", t0.Add(2*time.Second))
	ctx := context.Background()
	var ev messages.RunEvent
	waitFor(t, 2*time.Minute, "the run to export during the outage", func() bool {
		return broker.LastJSON(ctx, n.stack.JS, messages.StreamAudit, messages.RunSubject("alpha"), &ev) && ev.RunID == run &&
			(ev.Phase == messages.PhaseExported || ev.Phase == messages.PhaseFailed)
	})
	if ev.Phase != messages.PhaseExported || !strings.Contains(strings.Join(ev.Warnings, "\n"), "the destination could not be checked") {
		t.Fatalf("run during the outage: %s %q warnings %q; want exported, warning of the unchecked destination", ev.Phase, ev.Error, ev.Warnings)
	}
	if ev.Exported < 20 {
		t.Fatalf("run during the outage exported %d records; want the 20 new ones at least", ev.Exported)
	}
	time.Sleep(2 * time.Second) // an import call would have landed by now
	if got := len(n.destination()); got != 40 {
		t.Fatalf("destination holds %d records during the outage; want the 40 of before", got)
	}
	n.faults.Clear(n.dest)
	n.waitRuns(map[string]string{"alpha": run}, 2*time.Minute)
	n.assertEqual(n.expected())
	if d := n.dlqTotal(); d != 0 {
		t.Errorf("DLQ holds %d after the outage, want 0", d)
	}
}
