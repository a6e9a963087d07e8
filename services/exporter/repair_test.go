package exporter

import (
	"context"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/pipeline/retry"
)

func (u *unit) repair(at time.Time, records, dels []string) error {
	u.t.Helper()
	u.now = at
	req := messages.ExportRequested{V: messages.V, Site: "alpha", RunID: "alpha-repair-x", Reason: messages.ReasonRepair, RequestedAt: at,
		Records: records, DeleteDest: dels}
	return u.exp.Export(context.Background(), req)
}

// A repair exports exactly the records asked for, although the known set
// says they were sent unchanged, with the repair's (newer) version; it
// moves no cursor.
func TestARepairExportsExactlyItsRecordsForced(t *testing.T) {
	u := synced(t, 20, nil)
	before, _ := u.store.State(context.Background(), "alpha")
	at := u.now.Add(time.Hour)
	if err := u.repair(at, []string{"3", "12", "gone-since"}, nil); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range u.store.take() {
		if m.Version != at.UnixMilli() || m.Deleted || !m.Repair {
			t.Fatalf("repair message %+v: want version %d, a repair, not a deletion", m, at.UnixMilli())
		}
		got = append(got, m.RecordID)
	}
	sort.Strings(got)
	if !reflect.DeepEqual(got, []string{"12", "3"}) {
		t.Fatalf("the repair published %v, want exactly 12 and 3 (a record gone since is skipped)", got)
	}
	after, _ := u.store.State(context.Background(), "alpha")
	if !after.Cursor.Equal(before.Cursor) || after.LastRun != before.LastRun {
		t.Fatalf("the repair moved the site's state: %+v -> %+v", before, after)
	}
	if ev := u.store.lastEvent(); ev.Phase != messages.PhaseExported || ev.Exported != 2 {
		t.Fatalf("run event %+v", ev)
	}
}

// A repair's deletions keep the deletion safety: only with
// propagate_deletions, and within max_deletions_per_run.
func TestARepairDeletesExtrasOnlyWhereTheSiteAllows(t *testing.T) {
	u := synced(t, 20, nil)
	if err := u.repair(u.now.Add(time.Hour), nil, []string{"alpha-99"}); err != nil {
		t.Fatal(err)
	}
	ms := u.store.take()
	if len(ms) != 1 || !ms[0].Deleted || ms[0].DestRecordID != "alpha-99" || ms[0].RecordID != "" {
		t.Fatalf("repair deletion published %+v", ms)
	}
	many := []string{"alpha-90", "alpha-91", "alpha-92", "alpha-93", "alpha-94", "alpha-95"}
	err := u.repair(u.now.Add(2*time.Hour), nil, many)
	if err == nil || !retry.IsPermanent(err) || !strings.Contains(err.Error(), "max_deletions_per_run") || len(u.store.take()) != 0 {
		t.Fatalf("6 deletions over a limit of 5: %v", err)
	}

	off := synced(t, 20, func(s *config.Site) { s.PropagateDeletions = false })
	err = off.repair(off.now.Add(time.Hour), nil, []string{"alpha-99"})
	if err == nil || !strings.Contains(err.Error(), "propagate_deletions is off") || len(off.store.take()) != 0 {
		t.Fatalf("a repair deletion without propagate_deletions: %v", err)
	}
}
