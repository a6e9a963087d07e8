package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/exporter"
	"github.com/redcap-relay/relay/services/internal/ops"
	"github.com/redcap-relay/relay/services/internal/pipeline/broker"
	"github.com/redcap-relay/relay/services/internal/pipeline/sitekit"
	"github.com/redcap-relay/relay/services/internal/redcap"
	"github.com/redcap-relay/relay/services/internal/tools/redcapsim"
	"github.com/redcap-relay/relay/services/internal/tools/redcapsim/faults"
)

// Deletion safety, end to end: the simulator over HTTP, a real NATS server,
// the whole pipeline. A record is deleted at the destination only when it
// is really gone at the site (confirmed, and gone in the next run too), a
// run that would delete many at once waits for an operator, and a deleted
// record can be put back.

func (n *testNet) deletionAudits(site string) []messages.DeletionAudit {
	var out []messages.DeletionAudit
	broker.EachJSON(context.Background(), n.stack.JS, messages.StreamAudit, messages.DeletionsSubject(site), func(b []byte) {
		var a messages.DeletionAudit
		if json.Unmarshal(b, &a) == nil {
			out = append(out, a)
		}
	})
	return out
}

func TestADeletionIsConfirmedDelayedAndRestorable(t *testing.T) {
	n := newNet(t, netOpts{sites: []string{"alpha"}, records: 40, deletions: true})
	n.start(pipeline...)
	t0 := time.Now()
	n.sync(false, t0)
	pid := n.sites["alpha"]
	for _, id := range []string{"5", "6", "7"} {
		if err := n.sim.DeleteRecord(pid, id); err != nil {
			t.Fatal(err)
		}
	}
	ev := n.sync(false, t0.Add(2*time.Second))["alpha"]
	if ev.Deleted != 0 || ev.DeletionsPending != 3 || len(n.destination()) != 40 {
		t.Fatalf("first run after the deletions: deleted %d, pending %d, destination %d records; want nothing deleted yet, 3 pending",
			ev.Deleted, ev.DeletionsPending, len(n.destination()))
	}
	ev = n.sync(false, t0.Add(4*time.Second))["alpha"]
	if ev.Deleted != 3 {
		t.Fatalf("second run deleted %d, want the 3 confirmed twice", ev.Deleted)
	}
	n.assertEqual(n.expected())

	ctx := context.Background()
	ds, err := ops.ListDeletions(ctx, n.stack.JS, "alpha")
	if err != nil || len(ds) != 1 || len(ds[0].Restorable) != 3 {
		t.Fatalf("restorable deletions %+v (%v), want alpha-5, -6, -7", ds, err)
	}
	dest, err := sitekit.New(n.network, nil).Destination()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ops.Restore(ctx, n.stack.JS, dest, "alpha", "alpha-6", "dm"); err != nil {
		t.Fatal(err)
	}
	got := n.destination()["alpha-6"]
	want := n.expectedRow("alpha", 6)
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("restored alpha-6: %s = %q, want %q (as it was at the destination)", k, got[k], v)
		}
	}
	if a := n.deletionAudits("alpha"); len(a) != 1 || a[0].Action != "restore" || a[0].By != "dm" {
		t.Fatalf("audit %+v: want the restore with who did it", a)
	}

	// A record re-created at the site and imported again: the site wins.
	if err := n.sim.ImportRows(pid, []messages.Row{{"record_id": "7", "score": "1", "mood": "2", "survey_complete": "2"}}, false); err != nil {
		t.Fatal(err)
	}
	n.sync(false, t0.Add(6*time.Second))
	_, err = ops.Restore(ctx, n.stack.JS, dest, "alpha", "alpha-7", "dm")
	if err == nil || !strings.Contains(err.Error(), "exists at the destination again") {
		t.Fatalf("restore of a re-created record: %v, want a refusal (the site's current data wins)", err)
	}
	if n.destination()["alpha-7"]["score"] != "1" {
		t.Fatal("the refused restore changed the re-created record")
	}
	if _, err := ops.Restore(ctx, n.stack.JS, dest, "alpha", "alpha-99", "dm"); err == nil || !strings.Contains(err.Error(), "no deleted record alpha-99") {
		t.Fatalf("restore of a record never deleted: %v", err)
	}
}

// expectedRow is one record of transform(site data).
func (n *testNet) expectedRow(site string, i int) messages.Row {
	idx := 0
	for j, s := range n.opts.sites {
		if s == site {
			idx = j
		}
	}
	row := siteRows(i, idx)[i-1]
	out := messages.Row{}
	for _, f := range approved {
		out[f] = row[f]
	}
	out["record_id"] = fmt.Sprintf("%s-%d", site, i)
	return out
}

func TestManyDeletionsAreHeldUntilApproved(t *testing.T) {
	n := newNet(t, netOpts{sites: []string{"alpha"}, records: 50, deletions: true})
	n.start(pipeline...)
	t0 := time.Now()
	n.sync(false, t0)
	pid := n.sites["alpha"]
	for i := 1; i <= 20; i++ { // 40% of the site at once
		if err := n.sim.DeleteRecord(pid, fmt.Sprint(i)); err != nil {
			t.Fatal(err)
		}
	}
	n.sync(false, t0.Add(2*time.Second))
	ev := n.sync(false, t0.Add(4*time.Second))["alpha"]
	if ev.Deleted != 0 || ev.DeletionsHeld != 20 || len(n.destination()) != 50 {
		t.Fatalf("run: deleted %d, held %d, destination %d records; want all 20 held, nothing deleted", ev.Deleted, ev.DeletionsHeld, len(n.destination()))
	}
	ctx := context.Background()
	st, err := ops.GetStatus(ctx, n.stack.JS, []string{"alpha"})
	if err != nil {
		t.Fatal(err)
	}
	var table strings.Builder
	st.WriteTable(&table)
	if st.Sites[0].Result() != "deletions held" || !strings.Contains(table.String(), "20 deletion(s) held: more than the limit of 5") ||
		!strings.Contains(table.String(), "relay deletions approve --site alpha --run "+ev.RunID) {
		t.Fatalf("status does not say the deletions are held and how to confirm:\n%s", table.String())
	}
	if _, err := ops.Decide(ctx, n.stack.JS, "alpha", "alpha-20990101T000000Z", messages.DecisionApprove, "dm"); err == nil ||
		!strings.Contains(err.Error(), "no deletions are held for run alpha-20990101T000000Z") {
		t.Fatalf("approval of a run that holds nothing: %v", err)
	}
	if _, err := ops.Decide(ctx, n.stack.JS, "alpha", ev.RunID, messages.DecisionApprove, "dm"); err != nil {
		t.Fatal(err)
	}
	ev = n.sync(false, t0.Add(6*time.Second))["alpha"]
	if ev.Deleted != 20 || ev.DeletionsHeld != 0 {
		t.Fatalf("run after the approval: deleted %d, held %d; want the 20 deleted", ev.Deleted, ev.DeletionsHeld)
	}
	n.assertEqual(n.expected())
	if a := n.deletionAudits("alpha"); len(a) != 1 || a[0].Action != messages.DecisionApprove || a[0].By != "dm" || len(a[0].Records) != 20 {
		t.Fatalf("audit %+v: want who approved which records", a)
	}
}

func TestATokenThatLostAccessToHalfItsRecordsDeletesNothing(t *testing.T) {
	n := newNet(t, netOpts{sites: []string{"alpha"}, records: 40, deletions: true, dags: true, siteExtra: "    max_deletions_per_run: 1000\n"})
	n.start(pipeline...)
	t0 := time.Now()
	n.sync(false, t0)
	// The site's administrator puts the API user into the "east" group:
	// the token now sees half the records.
	if err := n.sim.AddToken(n.sites["alpha"], n.tokens["alpha"], redcapsim.Rights{Export: true, Metadata: true}, "east"); err != nil {
		t.Fatal(err)
	}
	for i, at := range []time.Duration{2 * time.Second, 4 * time.Second, 6 * time.Second} {
		ev := n.sync(false, t0.Add(at))["alpha"]
		if ev.Deleted != 0 {
			t.Fatalf("run %d after the DAG change deleted %d records", i+1, ev.Deleted)
		}
		if i > 0 && (ev.DeletionsHeld != 20 || !strings.Contains(strings.Join(ev.Warnings, " "), "restricted to a data access group")) {
			t.Fatalf("run %d: held %d, warnings %v; want the 20 unseen records held because the token's access changed", i+1, ev.DeletionsHeld, ev.Warnings)
		}
	}
	if len(n.destination()) != 40 {
		t.Fatalf("destination holds %d records, want all 40", len(n.destination()))
	}
}

func TestShortAnswersAreAskedAgain(t *testing.T) {
	for _, rate := range []float64{0.02, 0.3} {
		t.Run(fmt.Sprint(rate), func(t *testing.T) {
			n := newNet(t, netOpts{sites: []string{"alpha", "beta"}, records: 120, deletions: true})
			n.start(pipeline...)
			// The first sync, into an empty destination: every record or
			// row an answer leaves out would be missing there.
			if err := n.faults.Set(0, faults.Faults{BanThreshold: -1, DropRate: rate, Seed: 7}); err != nil {
				t.Fatal(err)
			}
			evs := n.sync(true, time.Now())
			n.faults.Set(0, faults.Faults{BanThreshold: -1})
			for site, ev := range evs {
				if ev.Phase != messages.PhaseExported || ev.Deleted != 0 || ev.ShortAnswers == 0 {
					t.Fatalf("drop rate %v, site %s: %+v; want an exported run, nothing deleted, the short answers counted", rate, site, ev)
				}
				t.Logf("drop rate %v, site %s: %d short answers asked again, %d API calls", rate, site, ev.ShortAnswers, ev.Calls)
			}
			n.assertEqual(n.expected())
			if n.dlqTotal() != 0 {
				t.Fatalf("%d dead letters", n.dlqTotal())
			}
		})
	}
}

// A record wrongly deleted at the destination earlier (the old behaviour on
// a short record-ID list: gone from the known set and from the destination)
// while the site still has it: the next incremental run exports it again,
// although it did not change at the site.
func TestAWronglyDeletedRecordComesBack(t *testing.T) {
	n := newNet(t, netOpts{sites: []string{"alpha"}, records: 20, deletions: true})
	n.start(pipeline...)
	t0 := time.Now()
	n.sync(false, t0)
	ctx := context.Background()
	store := exporter.JetStreamStore{JS: n.stack.JS}
	known, err := store.Known(ctx, "alpha")
	if err != nil {
		t.Fatal(err)
	}
	delete(known, "12")
	if err := store.SaveKnown(ctx, "alpha", known); err != nil {
		t.Fatal(err)
	}
	if err := n.sim.DeleteRecord(n.dest, "alpha-12"); err != nil {
		t.Fatal(err)
	}
	ev := n.sync(false, t0.Add(2*time.Second))["alpha"]
	if ev.Full || ev.Exported != 1 {
		t.Fatalf("incremental run: full=%v exported=%d, want record 12 exported again", ev.Full, ev.Exported)
	}
	n.assertEqual(n.expected())
}

// The site's record-ID list leaves 3 records out of one answer (a cut or
// incomplete answer that still parses): nothing is deleted at the
// destination, then or at the next normal run.
func TestARecordIDListThatOmitsRecordsDeletesNothing(t *testing.T) {
	n := newNet(t, netOpts{sites: []string{"alpha"}, records: 40, deletions: true, siteExtra: "    deletion_delay: none\n"})
	n.start(pipeline...)
	t0 := time.Now()
	n.sync(false, t0)
	if err := n.faults.Set(n.sites["alpha"], faults.Faults{OmitRecords: 3, OmitAnswers: 1, Seed: 3}); err != nil {
		t.Fatal(err)
	}
	ev := n.sync(false, t0.Add(2*time.Second))["alpha"]
	if ev.Deleted != 0 || ev.DeletionsPending != 0 || ev.ShortAnswers == 0 {
		t.Fatalf("run on a record-ID list missing 3 records: deleted %d, pending %d, short answers %d; want nothing deleted or pending and the short answer reported",
			ev.Deleted, ev.DeletionsPending, ev.ShortAnswers)
	}
	n.faults.Clear(n.sites["alpha"])
	if ev := n.sync(false, t0.Add(4*time.Second))["alpha"]; ev.Deleted != 0 {
		t.Fatalf("the next normal run deleted %d records", ev.Deleted)
	}
	n.assertEqual(n.expected())
}

// A record renamed at the site ends under its new ID at the destination,
// renamed there too (its history kept); nothing else changes.
func TestARecordRenamedAtTheSiteIsRenamedAtTheDestination(t *testing.T) {
	n := newNet(t, netOpts{sites: []string{"alpha"}, records: 12, deletions: true})
	n.start(pipeline...)
	t0 := time.Now()
	n.sync(false, t0)
	before := n.destination()
	pid := n.sites["alpha"]
	admin := n.addToken(pid, "alpha-admin", redcapsim.FullRights())
	site, err := redcap.New(redcap.Options{Site: "alpha-admin", URL: n.simURL, Token: admin, CallsPerMinute: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	time.Sleep(1100 * time.Millisecond)
	if err := site.RenameRecord(ctx, "7", "707", 0); err != nil {
		t.Fatal(err)
	}
	ev := n.sync(false, t0.Add(2*time.Second))["alpha"]
	if ev.Deleted != 0 || ev.DeletionsPending != 0 {
		t.Fatalf("run after the rename: %+v; a rename is not a deletion", ev)
	}
	after := n.destination()
	if _, ok := after["alpha-7"]; ok {
		t.Fatal("the old ID is still at the destination")
	}
	moved := after["alpha-707"]
	for k, v := range before["alpha-7"] {
		if k != "record_id" && moved[k] != v {
			t.Fatalf("renamed record: %s = %q, was %q", k, moved[k], v)
		}
	}
	if len(after) != len(before) {
		t.Fatalf("destination went from %d to %d records", len(before), len(after))
	}
	for id, r := range before {
		if id == "alpha-7" {
			continue
		}
		for k, v := range r {
			if after[id][k] != v {
				t.Fatalf("record %s changed (%s)", id, k)
			}
		}
	}
	dest, _ := sitekit.New(n.network, nil).Destination()
	logs, err := dest.ExportLogging(ctx, redcap.LogParams{Record: "alpha-707"})
	if err != nil {
		t.Fatal(err)
	}
	renamed := false
	for _, l := range logs {
		renamed = renamed || strings.HasPrefix(l.Action, "Rename Record")
	}
	if !renamed {
		t.Fatalf("the destination's log shows no rename (its history was not kept): %+v", logs)
	}
	n.assertEqual(n.expected())
}
