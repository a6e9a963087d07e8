package exporter

import (
	"context"
	"errors"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/pipeline/retry"
	"github.com/redcap-relay/relay/services/internal/redcap"
)

func ids(ms []messages.RecordExported) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.RecordID)
	}
	sort.Strings(out)
	return out
}

func TestFirstRunIsFullAndMovesTheStateOn(t *testing.T) {
	u := newUnit(t, 20, nil)
	if err := u.runAt(u.now, false); err != nil {
		t.Fatal(err)
	}
	got := u.store.take()
	if len(got) != 20 {
		t.Fatalf("published %d records, want all 20", len(got))
	}
	for _, m := range got {
		if _, ok := m.Rows[0]["name"]; ok {
			t.Fatalf("record %s was exported with the dropped identifier field: data minimisation at the source failed", m.RecordID)
		}
	}
	st := u.store.state["alpha"]
	if !st.Cursor.Equal(u.now) || !st.LastFull.Equal(u.now) || st.Records != 20 || st.PolicyVersion == "" {
		t.Fatalf("state after the first run: %+v", st)
	}
	if ev := u.store.lastEvent(); ev.Phase != messages.PhaseExported || !ev.Full || ev.Exported != 20 {
		t.Fatalf("last run event %+v", ev)
	}
}

func TestIncrementalRunPublishesOnlyChangedRecords(t *testing.T) {
	u := newUnit(t, 20, nil)
	if err := u.runAt(u.now, false); err != nil {
		t.Fatal(err)
	}
	u.store.take()
	u.site.calls = 0
	if err := u.runAt(u.now.Add(time.Hour), false); err != nil {
		t.Fatal(err)
	}
	if got := u.store.take(); len(got) != 0 {
		t.Fatalf("a run with nothing changed published %v", ids(got))
	}
	if c := u.site.Calls(); c > 3 {
		t.Fatalf("a run with nothing changed made %d REDCap calls, want at most 3", c)
	}
	// One record changes, one is only touched (same content).
	u.site.put("4", "9", u.now.Add(time.Minute))
	u.site.put("5", "5", u.now.Add(time.Minute))
	if err := u.runAt(u.now.Add(time.Hour), false); err != nil {
		t.Fatal(err)
	}
	got := u.store.take()
	if len(got) != 1 || got[0].RecordID != "4" {
		t.Fatalf("published %v, want only record 4 (record 5 changed nothing)", ids(got))
	}
	if ev := u.store.lastEvent(); ev.Full || ev.Unchanged != 1 {
		t.Fatalf("run event %+v: want incremental with 1 unchanged", ev)
	}
}

func TestAPolicyChangeRepublishesEverything(t *testing.T) {
	u := newUnit(t, 5, nil)
	if err := u.runAt(u.now, false); err != nil {
		t.Fatal(err)
	}
	u.store.take()
	u.sites.policy = testPolicy + "# a new version\n"
	if err := u.runAt(u.now.Add(time.Hour), false); err != nil {
		t.Fatal(err)
	}
	if got := u.store.take(); len(got) != 5 {
		t.Fatalf("after a policy change published %d records, want all 5", len(got))
	}
}

func TestDeletionsFollowTheSiteSetting(t *testing.T) {
	for _, propagate := range []bool{true, false} {
		u := newUnit(t, 6, func(s *config.Site) { s.PropagateDeletions = propagate })
		if err := u.runAt(u.now, false); err != nil {
			t.Fatal(err)
		}
		u.store.take()
		u.site.remove("3")
		if err := u.runAt(u.now.Add(time.Hour), false); err != nil {
			t.Fatal(err)
		}
		if got := u.store.take(); len(got) != 0 {
			t.Fatalf("propagate %v: the first run without record 3 published %v; a deletion waits for the next run", propagate, ids(got))
		}
		if err := u.runAt(u.now.Add(time.Hour), false); err != nil {
			t.Fatal(err)
		}
		got := u.store.take()
		if propagate && (len(got) != 1 || !got[0].Deleted || got[0].RecordID != "3") {
			t.Fatalf("propagate on: published %+v, want the deletion of record 3", got)
		}
		if !propagate && len(got) != 0 {
			t.Fatalf("propagate off: published %v, want nothing", ids(got))
		}
		if _, still := u.store.known["alpha"]["3"]; still {
			t.Fatalf("propagate %v: record 3 is still in the known set", propagate)
		}
	}
}

func TestAFailedBatchKeepsTheStateWhereItWas(t *testing.T) {
	u := newUnit(t, 10, nil)
	u.site.failExport = &redcap.Error{Site: "alpha", Call: "export records", Status: 403, Kind: redcap.KindPermanent, Message: "You do not have permissions to use the API"}
	err := u.runAt(u.now, false)
	if err == nil || !retry.IsPermanent(err) {
		t.Fatalf("a revoked token: %v, want a permanent failure (dead-lettered)", err)
	}
	if _, ok := u.store.state["alpha"]; ok {
		t.Fatal("the state moved on after a failed run")
	}
	if ev := u.store.lastEvent(); ev.Phase != messages.PhaseFailed || ev.Error == "" {
		t.Fatalf("run event %+v, want failed with the reason", ev)
	}
}

func TestALostAckFailsTheRunAndKeepsTheCursor(t *testing.T) {
	u := newUnit(t, 10, nil)
	u.store.failWait = errors.New("nats: timeout")
	if err := u.runAt(u.now, false); err == nil || retry.IsPermanent(err) {
		t.Fatalf("a publish whose ack never came: %v, want a transient failure (redelivered)", err)
	}
	if _, ok := u.store.state["alpha"]; ok {
		t.Fatal("the cursor moved on although the run's messages were not stored")
	}
	if err := u.runAt(u.now, false); err != nil {
		t.Fatal(err)
	}
	if got := u.store.take(); len(got) != 10 {
		t.Fatalf("the redone run published %d records, want 10", len(got))
	}
}

func TestABusySiteIsSkipped(t *testing.T) {
	u := newUnit(t, 3, nil)
	release, _ := u.store.Lease(context.Background(), "alpha", "other-run")
	defer release()
	if err := u.runAt(u.now, false); err != nil {
		t.Fatalf("a busy site: %v, want the request acked", err)
	}
	if ev := u.store.lastEvent(); ev.Phase != messages.PhaseFailed || ev.Error == "" {
		t.Fatalf("run event %+v, want a skipped run", ev)
	}
}

func TestPlanRun(t *testing.T) {
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	st := messages.SiteState{Cursor: now.Add(-time.Hour), LastFull: now.Add(-24 * time.Hour), SnapshotHash: "s", PolicyVersion: "p"}
	week := 7 * 24 * time.Hour
	for _, c := range []struct {
		name        string
		req         messages.ExportRequested
		st          messages.SiteState
		snap, pol   string
		full, force bool
	}{
		{"nothing changed", messages.ExportRequested{}, st, "s", "p", false, false},
		{"asked for a full run", messages.ExportRequested{Full: true}, st, "s", "p", true, true},
		{"first run", messages.ExportRequested{}, messages.SiteState{}, "s", "p", true, true},
		{"dictionary changed", messages.ExportRequested{}, st, "s2", "p", true, true},
		{"policy changed", messages.ExportRequested{}, st, "s", "p2", true, true},
		{"full sync due", messages.ExportRequested{}, messages.SiteState{Cursor: st.Cursor, LastFull: now.Add(-8 * 24 * time.Hour), SnapshotHash: "s", PolicyVersion: "p"}, "s", "p", true, false},
	} {
		p := planRun(c.req, c.st, c.snap, c.pol, now, week)
		if p.Full != c.full || p.Force != c.force {
			t.Errorf("%s: plan %+v, want full=%v force=%v", c.name, p, c.full, c.force)
		}
	}
}

func TestAnUnreachableSiteIsRetriedVisiblyThenFails(t *testing.T) {
	u := newUnit(t, 5, nil)
	u.site.failAll = &redcap.Error{Site: "alpha", Call: "export metadata", Kind: redcap.KindTransient, Message: "cannot reach the REDCap server",
		Err: errors.New("dial tcp 127.0.0.1:9: connect: connection refused")}
	err := u.runAt(u.now, false)
	if err == nil || !retry.IsPermanent(err) || !errors.Is(err, retry.ErrBudgetSpent) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("an unreachable site: %v, want a permanent failure after the retry budget, naming the cause", err)
	}
	var retrying []messages.RunEvent
	for _, ev := range u.store.events {
		if ev.Phase == messages.PhaseRetrying {
			retrying = append(retrying, ev)
		}
	}
	if len(retrying) == 0 || retrying[0].Attempt != 1 || retrying[0].NextAt.IsZero() || !strings.Contains(retrying[0].Error, "connection refused") {
		t.Fatalf("retrying events %+v: want the attempt, the next try and the cause", retrying)
	}
	if ev := u.store.lastEvent(); ev.Phase != messages.PhaseFailed {
		t.Fatalf("last event %+v, want the run failed", ev)
	}
}
