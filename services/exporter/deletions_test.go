package exporter

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/redcap"
)

func deletedIDs(ms []messages.RecordExported) []string {
	var out []string
	for _, m := range ms {
		if m.Deleted {
			out = append(out, m.RecordID)
		}
	}
	return out
}

func propagate(s *config.Site) { s.PropagateDeletions = true }

// synced is a unit whose site has been fully synced once.
func synced(t *testing.T, records int, mutate func(*config.Site)) *unit {
	t.Helper()
	u := newUnit(t, records, func(s *config.Site) {
		propagate(s)
		s.DeletionDelay = config.DeletionDelay{Mode: config.DelayRun}
		s.MaxDeletionsPerRun = config.Limit{Percent: 2, AtLeast: 5}
		if mutate != nil {
			mutate(s)
		}
	})
	if err := u.runAt(u.now, false); err != nil {
		t.Fatal(err)
	}
	u.store.take()
	return u
}

func (u *unit) next() error {
	u.t.Helper()
	return u.runAt(u.now.Add(time.Hour), false)
}

func TestAListThatOmitsRecordsDeletesNothing(t *testing.T) {
	u := synced(t, 30, nil)
	u.site.omitFromList = map[string]bool{"4": true, "17": true, "22": true}
	u.site.omitAnswers = 1 // one short answer, as a truncated list that still parses
	if err := u.next(); err != nil {
		t.Fatal(err)
	}
	if got := deletedIDs(u.store.take()); len(got) != 0 {
		t.Fatalf("deleted %v on one short record-ID list", got)
	}
	ev := u.store.lastEvent()
	if ev.DeletionsPending != 0 || ev.ShortAnswers == 0 || len(ev.Warnings) == 0 {
		t.Fatalf("run event %+v: want no pending deletion and the short answer reported", ev)
	}
	if len(u.store.known["alpha"]) != 30 {
		t.Fatalf("known set holds %d records, want all 30", len(u.store.known["alpha"]))
	}
	if err := u.next(); err != nil {
		t.Fatal(err)
	}
	if got := deletedIDs(u.store.take()); len(got) != 0 {
		t.Fatalf("the next normal run deleted %v", got)
	}
}

func TestARealDeletionWaitsForTheNextRunOrTheDelay(t *testing.T) {
	u := synced(t, 30, nil)
	for _, id := range []string{"2", "5", "9"} {
		u.site.remove(id)
	}
	if err := u.next(); err != nil {
		t.Fatal(err)
	}
	if got := deletedIDs(u.store.take()); len(got) != 0 {
		t.Fatalf("deleted %v at the first run they were missing", got)
	}
	if ev := u.store.lastEvent(); ev.DeletionsPending != 3 {
		t.Fatalf("run event %+v: want 3 pending deletions", ev)
	}
	if err := u.next(); err != nil {
		t.Fatal(err)
	}
	if got := deletedIDs(u.store.take()); fmt.Sprint(got) != "[2 5 9]" {
		t.Fatalf("second run deleted %v, want 2, 5, 9", got)
	}
	if _, ok := u.store.known["alpha"]["5"]; ok || len(u.store.deletions["alpha"].Pending) != 0 {
		t.Fatal("deleted records are still known or pending")
	}

	d := synced(t, 30, func(s *config.Site) {
		s.DeletionDelay = config.DeletionDelay{Mode: config.DelayFor, For: 90 * time.Minute}
	})
	d.site.remove("7")
	for i, want := range []string{"[]", "[]", "[7]"} { // +1h pending, +2h... the delay is from the first sighting
		if err := d.next(); err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(deletedIDs(d.store.take())); got != want && !(want == "[]" && got == "[]") {
			t.Fatalf("delay 90m, run %d: deleted %s, want %s", i+1, got, want)
		}
	}
}

func TestARecordBackAtTheSiteIsNotDeleted(t *testing.T) {
	u := synced(t, 10, nil)
	u.site.remove("3")
	if err := u.next(); err != nil {
		t.Fatal(err)
	}
	u.site.put("3", "3", u.now.Add(-48*time.Hour)) // restored from a backup: unchanged since long ago
	if err := u.next(); err != nil {
		t.Fatal(err)
	}
	if got := deletedIDs(u.store.take()); len(got) != 0 {
		t.Fatalf("deleted %v although record 3 came back", got)
	}
	if len(u.store.deletions["alpha"].Pending) != 0 {
		t.Fatal("record 3 is still pending")
	}
}

func TestARecordMissingFromTheKnownSetIsExportedAgain(t *testing.T) {
	u := synced(t, 10, nil)
	delete(u.store.known["alpha"], "6") // wrongly dropped earlier (a wrong deletion)
	if err := u.next(); err != nil {
		t.Fatal(err)
	}
	got := u.store.take()
	if len(got) != 1 || got[0].RecordID != "6" || got[0].Deleted {
		t.Fatalf("incremental run published %v, want record 6 again (unchanged at the site, unknown here)", ids(got))
	}
}

func TestManyDeletionsAreHeldUntilAnOperatorDecides(t *testing.T) {
	for _, decision := range []string{messages.DecisionApprove, messages.DecisionReject} {
		u := synced(t, 50, nil)
		for i := 1; i <= 20; i++ { // 40% at once
			u.site.remove(fmt.Sprint(i))
		}
		u.next()
		if err := u.next(); err != nil {
			t.Fatal(err)
		}
		if got := deletedIDs(u.store.take()); len(got) != 0 {
			t.Fatalf("deleted %d records, over the limit", len(got))
		}
		ev := u.store.lastEvent()
		held := u.store.deletions["alpha"].Held
		if ev.DeletionsHeld != 20 || held == nil || held.Limit != 5 || held.Reason != messages.HeldOverLimit ||
			len(ev.Warnings) == 0 || !strings.Contains(ev.Warnings[0], "relay deletions approve --site alpha --run "+held.Run) {
			t.Fatalf("run event %+v, held %+v: want 20 held over the limit of 5 with the command to confirm", ev, held)
		}
		if held.DestRecords[0] != "alpha-"+held.Records[0] {
			t.Fatalf("held records named %v at the destination", held.DestRecords[:1])
		}
		// Held stays held, however many runs go by.
		if err := u.next(); err != nil {
			t.Fatal(err)
		}
		if got := deletedIDs(u.store.take()); len(got) != 0 || u.store.deletions["alpha"].Held == nil {
			t.Fatalf("a run without a decision deleted %v", got)
		}
		run := u.store.deletions["alpha"].Held.Run
		u.site.put("20", "0", u.now) // one comes back meanwhile: the site's data wins
		u.store.decisions[messages.DeletionDecisionKey("alpha", run)] = &messages.DeletionDecision{Site: "alpha", Run: run, Decision: decision, By: "dm"}
		if err := u.next(); err != nil {
			t.Fatal(err)
		}
		got := deletedIDs(u.store.take())
		switch decision {
		case messages.DecisionApprove:
			if len(got) != 19 {
				t.Fatalf("approved: deleted %d, want the 19 still gone", len(got))
			}
		default:
			if len(got) != 0 {
				t.Fatalf("rejected: deleted %v", got)
			}
			if _, known := u.store.known["alpha"]["1"]; known {
				t.Fatal("rejected: the records are still candidates")
			}
		}
		if st := u.store.deletions["alpha"]; st.Held != nil || len(st.Pending) != 0 {
			t.Fatalf("%s: still held or pending after the decision: %+v", decision, st)
		}
	}
}

func TestATokenNowRestrictedToADAGDeletesNothing(t *testing.T) {
	u := synced(t, 40, func(s *config.Site) { s.MaxDeletionsPerRun = config.Limit{Count: 1000} })
	u.site.hide = map[string]bool{}
	for i := 1; i <= 20; i++ {
		u.site.hide[fmt.Sprint(i)] = true
	}
	u.site.dagRestricted = true
	u.next()
	if err := u.next(); err != nil {
		t.Fatal(err)
	}
	if got := deletedIDs(u.store.take()); len(got) != 0 {
		t.Fatalf("deleted %d records after the token's DAG changed", len(got))
	}
	held := u.store.deletions["alpha"].Held
	if held == nil || held.Reason != messages.HeldAccessChanged || !strings.Contains(held.Detail, "data access group") {
		t.Fatalf("held %+v: want the run's deletions held because the token's access changed", held)
	}
}

func TestShortBatchAnswersAreAskedAgainUntilComplete(t *testing.T) {
	u := newUnit(t, 40, propagate)
	u.site.dropEvery = 7 // every 7th row of every record export is missing
	if err := u.runAt(u.now, false); err != nil {
		t.Fatal(err)
	}
	got := u.store.take()
	if len(got) != 40 {
		t.Fatalf("published %d records, want all 40", len(got))
	}
	for _, m := range got {
		if len(m.Rows) != 1 || m.Rows[0]["score"] == "" {
			t.Fatalf("record %s published with rows %v", m.RecordID, m.Rows)
		}
	}
	if ev := u.store.lastEvent(); ev.ShortAnswers == 0 {
		t.Fatalf("run event %+v: the short answers are not counted", ev)
	}
}

func TestPlanDeletions(t *testing.T) {
	now := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	runDelay := config.DeletionDelay{Mode: config.DelayRun}
	pending := func(run string) messages.PendingDeletion {
		return messages.PendingDeletion{Since: now.Add(-time.Hour), Run: run}
	}
	for _, c := range []struct {
		name                string
		in                  deletionInput
		del, forget, stillP []string
		held                string
	}{
		{name: "first seen: pending", in: deletionInput{Run: "r2", Absent: []string{"a"}, Delay: runDelay, Limit: 5}, stillP: []string{"a"}},
		{name: "seen in an earlier run: deleted", in: deletionInput{Run: "r2", Absent: []string{"a"}, Delay: runDelay, Limit: 5,
			State: messages.DeletionState{Pending: map[string]messages.PendingDeletion{"a": pending("r1")}}}, del: []string{"a"}},
		{name: "no delay", in: deletionInput{Run: "r2", Absent: []string{"a"}, Delay: config.DeletionDelay{Mode: config.DelayNone}, Limit: 5}, del: []string{"a"}},
		{name: "back at the site: forgotten from pending", in: deletionInput{Run: "r2", Delay: runDelay, Limit: 5,
			State: messages.DeletionState{Pending: map[string]messages.PendingDeletion{"a": pending("r1")}}}},
		{name: "over the limit: held", in: deletionInput{Run: "r2", Absent: []string{"a", "b", "c"}, Delay: runDelay, Limit: 2,
			State: messages.DeletionState{Pending: map[string]messages.PendingDeletion{"a": pending("r1"), "b": pending("r1"), "c": pending("r1")}}},
			stillP: []string{"a", "b", "c"}, held: messages.HeldOverLimit},
		{name: "access changed: held", in: deletionInput{Run: "r2", Absent: []string{"a"}, Delay: runDelay, Limit: 5, AccessChanged: "DAG",
			State: messages.DeletionState{Pending: map[string]messages.PendingDeletion{"a": pending("r1")}}}, stillP: []string{"a"}, held: messages.HeldAccessChanged},
		{name: "decision for another run: ignored", in: deletionInput{Run: "r3", Absent: []string{"a", "b", "c"}, Delay: runDelay, Limit: 2,
			State:    messages.DeletionState{Pending: map[string]messages.PendingDeletion{"a": pending("r1"), "b": pending("r1"), "c": pending("r1")}, Held: &messages.HeldDeletions{Run: "r2", Reason: messages.HeldOverLimit, Records: []string{"a", "b", "c"}}},
			Decision: &messages.DeletionDecision{Run: "r1", Decision: messages.DecisionApprove}},
			stillP: []string{"a", "b", "c"}, held: messages.HeldOverLimit},
	} {
		p := planDeletions(func() deletionInput { c.in.Now = now; return c.in }())
		var stillP []string
		for id := range p.State.Pending {
			stillP = append(stillP, id)
		}
		sortStrings(stillP)
		held := ""
		if p.State.Held != nil {
			held = p.State.Held.Reason
		}
		if !reflect.DeepEqual(p.Delete, c.del) || !reflect.DeepEqual(p.Forget, c.forget) || !reflect.DeepEqual(stillP, c.stillP) || held != c.held {
			t.Errorf("%s: delete %v forget %v pending %v held %q; want %v %v %v %q", c.name, p.Delete, p.Forget, stillP, held, c.del, c.forget, c.stillP, c.held)
		}
	}
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

func TestARecordRenamedAtTheSiteIsCarriedOverAsARename(t *testing.T) {
	for _, withLog := range []bool{true, false} {
		u := synced(t, 10, nil)
		if withLog {
			u.site.logs = []redcap.LogEntry{}
		}
		u.site.rename("4", "104", u.now.Add(time.Minute))
		if err := u.next(); err != nil {
			t.Fatal(err)
		}
		got := u.store.take()
		if len(got) != 1 || got[0].RecordID != "104" || got[0].RenamedFrom != "4" || got[0].Deleted {
			t.Fatalf("log=%v: published %+v; want record 104 renamed from 4, and no deletion", withLog, got)
		}
		ev := u.store.lastEvent()
		if ev.DeletionsPending != 0 || ev.Deleted != 0 {
			t.Fatalf("log=%v: run %+v: a rename is not a deletion", withLog, ev)
		}
		if _, ok := u.store.known["alpha"]["4"]; ok {
			t.Fatalf("log=%v: the old ID is still known", withLog)
		}
		if err := u.next(); err != nil || len(u.store.take()) != 0 {
			t.Fatalf("log=%v: the next run published something again (%v)", withLog, err)
		}
	}
}

func TestTwoLookAlikeRecordsAreNotTakenForARename(t *testing.T) {
	u := synced(t, 10, nil)
	// Records 5 and 6 hold the same values: gone together, two new ones
	// alike: nothing says which became which. No rename, no guess.
	u.site.put("6", "5", u.now.Add(-time.Hour))
	u.store.known["alpha"]["6"] = u.store.known["alpha"]["5"]
	u.site.rename("5", "105", u.now.Add(time.Minute))
	u.site.rename("6", "106", u.now.Add(time.Minute))
	if err := u.next(); err != nil {
		t.Fatal(err)
	}
	for _, m := range u.store.take() {
		if m.RenamedFrom != "" {
			t.Fatalf("%s taken for a rename of %s", m.RecordID, m.RenamedFrom)
		}
	}
}
