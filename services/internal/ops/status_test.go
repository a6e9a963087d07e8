package ops

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/pipeline/broker"
	"github.com/redcap-relay/relay/services/internal/pipeline/router"
)

func runEvent(t *testing.T, js jetstream.JetStream, ev messages.RunEvent) {
	t.Helper()
	ev.V = messages.V
	if ev.At.IsZero() {
		ev.At = time.Now().UTC()
	}
	if err := broker.Publish(ctx(t), js, messages.RunSubject(ev.Site), ev.MsgID(), broker.Route{Site: ev.Site, Run: ev.RunID}, ev); err != nil {
		t.Fatal(err)
	}
}

// copyClean republishes a cleaned record the way relay replay --site and
// relay dlq retry do: the same body and headers, a message ID of their own.
func copyClean(t *testing.T, js jetstream.JetStream, site, run, record, id string) {
	t.Helper()
	m := nats.NewMsg(messages.RecordsCleanSubject(site))
	m.Data = []byte(`{"v":1}`)
	m.Header.Set(jetstream.MsgIDHeader, id)
	m.Header.Set(messages.HeaderSite, site)
	m.Header.Set(messages.HeaderRun, run)
	m.Header.Set(messages.HeaderRecord, record)
	if _, err := js.PublishMsg(ctx(t), m); err != nil {
		t.Fatal(err)
	}
}

func siteOf(t *testing.T, st *Status, site string) SiteStatus {
	t.Helper()
	for _, s := range st.Sites {
		if s.Site == site {
			return s
		}
	}
	t.Fatalf("no site %s in %+v", site, st.Sites)
	return SiteStatus{}
}

// A replay and a dead-letter retry deliver some of a run's records again:
// the run's counts stay those of its distinct records, and the deliveries
// made again are counted on their own.
func TestReplayAndRetryKeepTheRunsCounts(t *testing.T) {
	_, _, js := startNATS(t, "", "", "")
	run := messages.RunID("alpha", time.Now().Add(-time.Second))
	runEvent(t, js, messages.RunEvent{Site: "alpha", RunID: run, Phase: messages.PhaseStarted})
	runEvent(t, js, messages.RunEvent{Site: "alpha", RunID: run, Phase: messages.PhaseExported, Exported: 4})
	publishClean(t, js, "alpha", run, 4)
	done := messages.ImportDone{V: 1, Site: "alpha", Records: []string{"alpha-1", "alpha-2", "alpha-3"}, Runs: []string{run}, At: time.Now()}
	if err := broker.Publish(ctx(t), js, messages.ImportDoneSubject("alpha"), "done1", broker.Route{Site: "alpha"}, done); err != nil {
		t.Fatal(err)
	}
	if err := router.DeadLetter(ctx(t), js, nil, messages.DeadLetter{Stage: messages.StageImport, Site: "alpha", RunID: run, RecordID: "alpha-4", Error: "destination rejected record alpha-4: not a valid category (score)", MsgID: "clean.a4"}); err != nil {
		t.Fatal(err)
	}
	st, err := GetStatus(ctx(t), js, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := siteOf(t, st, "alpha")
	if want := (RunCounts{Exported: 4, Cleaned: 4, Imported: 3, DeadLettered: 1}); a.Counts != want || a.Result() != ResultPartial {
		t.Fatalf("before: %s %+v, want partial %+v", a.Result(), a.Counts, want)
	}

	// Replay all four, and retry the dead letter, which fails again.
	for i := 1; i <= 4; i++ {
		copyClean(t, js, "alpha", run, fmt.Sprintf("alpha-%d", i), fmt.Sprintf("replay.202611250300.%d", i))
	}
	copyClean(t, js, "alpha", run, "alpha-4", "dlqretry.9")
	if err := router.DeadLetter(ctx(t), js, nil, messages.DeadLetter{Stage: messages.StageImport, Site: "alpha", RunID: run, RecordID: "alpha-4", Error: "destination rejected record alpha-4: not a valid category (score)", MsgID: "dlqretry.9"}); err != nil {
		t.Fatal(err)
	}
	again := messages.ImportDone{V: 1, Site: "alpha", Records: []string{"alpha-1", "alpha-2", "alpha-3"}, Runs: []string{run}, At: time.Now()}
	if err := broker.Publish(ctx(t), js, messages.ImportDoneSubject("alpha"), "done-replay", broker.Route{Site: "alpha"}, again); err != nil {
		t.Fatal(err)
	}
	st, err = GetStatus(ctx(t), js, nil)
	if err != nil {
		t.Fatal(err)
	}
	a = siteOf(t, st, "alpha")
	if want := (RunCounts{Exported: 4, Cleaned: 4, Imported: 3, DeadLettered: 1}); a.Counts != want {
		t.Fatalf("after a replay and a retry the counts are %+v, want %+v", a.Counts, want)
	}
	if want := (Again{Replayed: 4, Retried: 1, FailedAgain: 1}); a.Again != want {
		t.Fatalf("again %+v, want %+v", a.Again, want)
	}
	var b strings.Builder
	st.WriteTable(&b)
	if !strings.Contains(b.String(), "alpha: delivered again since the run (not in its counts): 4 replayed, 1 retried from the DLQ (1 failed again)") {
		t.Fatalf("table:\n%s", b.String())
	}

	// The retry succeeds after a fix: the dead letter is gone, the record
	// imported; the run is whole.
	letters, _ := ListDLQ(ctx(t), js, DLQFilter{Site: "alpha"}, 0)
	for _, l := range letters {
		DeleteDLQ(ctx(t), js, l.Seq)
	}
	fixed := messages.ImportDone{V: 1, Site: "alpha", Records: []string{"alpha-4"}, Runs: []string{run}, At: time.Now()}
	if err := broker.Publish(ctx(t), js, messages.ImportDoneSubject("alpha"), "done-retry", broker.Route{Site: "alpha"}, fixed); err != nil {
		t.Fatal(err)
	}
	st, _ = GetStatus(ctx(t), js, nil)
	if a = siteOf(t, st, "alpha"); a.Counts.Imported != 4 || a.Counts.DeadLettered != 0 || a.Result() != ResultSynced || a.LastSuccess == nil || a.LastSuccess.ID != run {
		t.Fatalf("after a successful retry: %s %+v, last success %+v", a.Result(), a.Counts, a.LastSuccess)
	}
}

// A run that failed on a transient error (a NATS restart) is redone: it is
// retrying, not failed; one whose request was dead-lettered failed.
func TestTransientFailureIsNotFailed(t *testing.T) {
	_, _, js := startNATS(t, "", "", "")
	runEvent(t, js, messages.RunEvent{Site: "alpha", RunID: "alpha-20261125T020000Z", Phase: messages.PhaseStarted})
	runEvent(t, js, messages.RunEvent{Site: "alpha", RunID: "alpha-20261125T020000Z", Phase: messages.PhaseFailed, Error: "publish relay.records.raw.alpha: nats: connection closed"})
	runEvent(t, js, messages.RunEvent{Site: "beta", RunID: "beta-20261125T020000Z", Phase: messages.PhaseStarted})
	runEvent(t, js, messages.RunEvent{Site: "beta", RunID: "beta-20261125T020000Z", Phase: messages.PhaseFailed, Error: "beta: export metadata: HTTP 403: You do not have permissions to use the API"})
	if err := router.DeadLetter(ctx(t), js, nil, messages.DeadLetter{Stage: messages.StageExport, Site: "beta", RunID: "beta-20261125T020000Z", Error: "beta: export metadata: HTTP 403: You do not have permissions to use the API"}); err != nil {
		t.Fatal(err)
	}
	// A skipped request is not a run: the run before it is shown.
	runEvent(t, js, messages.RunEvent{Site: "beta", RunID: "beta-20261125T030000Z", Phase: messages.PhaseFailed, Error: "skipped: another run of this site is still in progress"})
	st, err := GetStatus(ctx(t), js, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a := siteOf(t, st, "alpha"); a.Result() != ResultRetrying || !strings.Contains(a.Reason, "run again") {
		t.Fatalf("alpha after a transient failure: %s (%s)", a.Result(), a.Reason)
	}
	b := siteOf(t, st, "beta")
	if b.Result() != ResultFailed || !strings.Contains(b.Reason, "HTTP 403") || b.Run.ID != "beta-20261125T020000Z" || len(b.Notes) != 1 || !strings.Contains(b.Notes[0], "was skipped") {
		t.Fatalf("beta: %s (%s) run %+v notes %v", b.Result(), b.Reason, b.Run, b.Notes)
	}
	// Long after, a failure that was never redone is a failure.
	st, err = Collect(ctx(t), js, StatusOptions{Now: func() time.Time { return time.Now().Add(time.Hour) }})
	if err != nil {
		t.Fatal(err)
	}
	if a := siteOf(t, st, "alpha"); a.Result() != ResultFailed {
		t.Fatalf("alpha an hour later: %s", a.Result())
	}
}

// A running run shows its progress; the network file gives the next run;
// the latest protocol report gives the score and its history.
func TestRunningRunScheduleAndProtocol(t *testing.T) {
	_, _, js := startNATS(t, "", "", "")
	run := messages.RunID("alpha", time.Now().Add(-2*time.Second))
	runEvent(t, js, messages.RunEvent{Site: "alpha", RunID: run, Phase: messages.PhaseStarted, Full: true, At: time.Now().Add(-2 * time.Second)})
	for i := 1; i <= 3; i++ {
		rec := messages.RecordExported{V: 1, Site: "alpha", RunID: run, RecordID: fmt.Sprint(i), Version: 1, Hash: fmt.Sprint(i)}
		if err := broker.Publish(ctx(t), js, messages.RecordsRawSubject("alpha"), rec.MsgID(), broker.Route{Site: "alpha", Run: run, Record: rec.RecordID}, rec); err != nil {
			t.Fatal(err)
		}
	}
	publishClean(t, js, "alpha", run, 2)
	for i, score := range []float64{91, 88.5} {
		r := messages.ProtocolReport{V: 1, Site: "alpha", RunID: fmt.Sprintf("r%d", i), Status: messages.ProtocolDeviations, Score: &score, Errors: 2, CheckedAt: time.Now().Add(time.Duration(i) * time.Second),
			Changes: []messages.ProtocolChange{{Kind: messages.ChangeNewFinding, Message: "new"}}}
		if err := broker.Publish(ctx(t), js, messages.ProtocolReportSubject("alpha"), r.MsgID(), broker.Route{Site: "alpha"}, r); err != nil {
			t.Fatal(err)
		}
	}
	net := testNetwork(t, "alpha", "0 2 * * *")
	st, err := Collect(ctx(t), js, StatusOptions{Network: net, History: 30})
	if err != nil {
		t.Fatal(err)
	}
	a := siteOf(t, st, "alpha")
	if a.Result() != ResultRunning || a.Progress == nil || a.Progress.Exported != 3 || a.Progress.Cleaned != 2 || a.Progress.Elapsed < 1 {
		t.Fatalf("running: %s %+v", a.Result(), a.Progress)
	}
	if a.NextRun == nil || a.NextRun.Before(time.Now()) || a.NextRun.UTC().Hour() != 2 || a.ScheduleSeconds != 86400 {
		t.Fatalf("next run %v every %vs", a.NextRun, a.ScheduleSeconds)
	}
	if a.Protocol == nil || *a.Protocol.Score != 88.5 || a.Protocol.New != 1 || len(a.Scores) != 2 || a.Scores[0].Score != 91 {
		t.Fatalf("protocol %+v scores %+v", a.Protocol, a.Scores)
	}
}

func testNetwork(t *testing.T, site, schedule string) *config.Network {
	t.Helper()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "tok"), []byte("0123456789ABCDEF0123456789ABCDEF"), 0o600)
	os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte("name: p\napproved: {forms: [f]}\n"), 0o600)
	y := fmt.Sprintf("destination: {url: http://127.0.0.1:1/api/, token: {file: tok}}\nsites:\n  - id: %s\n    url: http://127.0.0.1:1/api/\n    token: {file: tok}\n    policy: policy.yaml\n    schedule: %q\n    time_zone: UTC\n", site, schedule)
	p := filepath.Join(dir, "network.yaml")
	os.WriteFile(p, []byte(y), 0o600)
	n, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
