package ops

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/pipeline/broker"
	"github.com/redcap-relay/relay/services/internal/pipeline/router"
	"github.com/redcap-relay/relay/services/internal/pipeline/topology"
)

func publishClean(t *testing.T, js jetstream.JetStream, site, run string, n int) {
	t.Helper()
	for i := 1; i <= n; i++ {
		rec := messages.RecordCleaned{V: messages.V, Site: site, RunID: run, DestRecordID: fmt.Sprintf("%s-%d", site, i), Version: 1,
			Hash: fmt.Sprintf("h%d", i), Rows: []messages.Row{{"record_id": fmt.Sprintf("%s-%d", site, i), "age": "41"}}}
		if err := broker.Publish(ctx(t), js, messages.RecordsCleanSubject(site), rec.MsgID()+run, broker.Route{Site: site, Run: run, Record: rec.DestRecordID}, rec); err != nil {
			t.Fatal(err)
		}
	}
}

// drainImporter acts as the importer: fetches and acks everything pending.
func drainImporter(t *testing.T, js jetstream.JetStream) []jetstream.Msg {
	t.Helper()
	c, err := js.Consumer(ctx(t), messages.StreamRecordsClean, topology.Import.Consumer)
	if err != nil {
		t.Fatal(err)
	}
	var got []jetstream.Msg
	for {
		b, err := c.Fetch(100, jetstream.FetchMaxWait(300*time.Millisecond))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range b.Messages() {
			n++
			got = append(got, m)
			if err := m.DoubleAck(ctx(t)); err != nil {
				t.Fatal(err)
			}
		}
		if n == 0 {
			return got
		}
	}
}

func importerPending(t *testing.T, js jetstream.JetStream) uint64 {
	t.Helper()
	info, err := consumerInfo(ctx(t), js, topology.Import)
	if err != nil {
		t.Fatal(err)
	}
	return info.NumPending + uint64(info.NumAckPending)
}

func TestStatusCountsLastRunLagAndDLQ(t *testing.T) {
	_, _, js := startNATS(t, "", "", "")
	run := messages.RunID("alpha", time.Now().Add(-time.Second))
	for _, ev := range []messages.RunEvent{
		{V: 1, Site: "alpha", RunID: run, Phase: messages.PhaseStarted, At: time.Now()},
		{V: 1, Site: "alpha", RunID: run, Phase: messages.PhaseCompleted, Exported: 4, Deleted: 1, Calls: 7, At: time.Now()},
	} {
		if err := broker.Publish(ctx(t), js, messages.RunSubject(ev.Site), ev.MsgID(), broker.Route{Site: ev.Site, Run: ev.RunID}, ev); err != nil {
			t.Fatal(err)
		}
	}
	publishClean(t, js, "alpha", run, 4)
	publishClean(t, js, "alpha", "alpha-20200101T000000Z", 2) // an older run: not counted
	publishClean(t, js, "beta", "beta-x", 3)
	done := messages.ImportDone{V: 1, Site: "alpha", Records: []string{"alpha-1", "alpha-2"}, Deleted: []string{"alpha-9"}, Runs: []string{run}, At: time.Now()}
	if err := broker.Publish(ctx(t), js, messages.ImportDoneSubject("alpha"), "done1", broker.Route{Site: "alpha"}, done); err != nil {
		t.Fatal(err)
	}
	if err := router.DeadLetter(ctx(t), js, nil, messages.DeadLetter{Stage: messages.StageImport, Site: "alpha", RunID: run, RecordID: "alpha-4", Error: "field age: out of range", MsgID: "m4"}); err != nil {
		t.Fatal(err)
	}
	if err := router.DeadLetter(ctx(t), js, nil, messages.DeadLetter{Stage: messages.StageTransform, Site: "gamma", RunID: "gamma-r", RecordID: "7", Error: "policy refused", MsgID: "m7"}); err != nil {
		t.Fatal(err)
	}
	raw := messages.RecordExported{V: 1, Site: "beta", RunID: "beta-x", RecordID: "1", Version: 1, Hash: "x"}
	if err := broker.Publish(ctx(t), js, messages.RecordsRawSubject("beta"), raw.MsgID(), broker.Route{Site: "beta"}, raw); err != nil {
		t.Fatal(err)
	}

	st, err := GetStatus(ctx(t), js, []string{"alpha", "beta", "delta"})
	if err != nil {
		t.Fatal(err)
	}
	by := map[string]SiteStatus{}
	for _, s := range st.Sites {
		by[s.Site] = s
	}
	if len(by) != 4 { // alpha, beta, delta (network file), gamma (DLQ only)
		t.Fatalf("sites %v, want alpha beta delta gamma", by)
	}
	a := by["alpha"]
	// One record dead-lettered, one not imported yet: partial, and the
	// counts add up (4 exported + 1 deleted = 3 imported + 1 + 1 waiting).
	if a.LastRun == nil || a.LastRun.RunID != run || a.Result() != ResultPartial || !strings.Contains(a.Reason, "field age: out of range") {
		t.Fatalf("alpha last run %+v: %s (%s)", a.LastRun, a.Result(), a.Reason)
	}
	want := RunCounts{Exported: 4, Deleted: 1, Cleaned: 4, Imported: 3, DeadLettered: 1, Waiting: 1}
	if a.Counts != want {
		t.Fatalf("alpha counts %+v, want %+v", a.Counts, want)
	}
	if a.DLQ[messages.StageImport] != 1 || by["gamma"].DLQ[messages.StageTransform] != 1 {
		t.Fatalf("dlq counts alpha %v gamma %v", a.DLQ, by["gamma"].DLQ)
	}
	if by["delta"].Result() != "never run" {
		t.Fatalf("delta %+v", by["delta"])
	}
	lag := map[string]StageLag{}
	for _, l := range st.Lag {
		lag[l.Stage] = l
	}
	if lag["import"].Lag != 9 || lag["transform"].Lag != 1 || lag["export"].Lag != 0 {
		t.Fatalf("lag %+v", st.Lag)
	}
	// Nothing reads the stages: each backlog says why it does not move.
	if !strings.HasPrefix(lag["import"].Stuck, "no importer connected: 9 message(s) wait") ||
		!strings.HasPrefix(lag["transform"].Stuck, "no transformer connected: 1 message(s) wait") || lag["export"].Stuck != "" {
		t.Fatalf("stuck reasons: import %q, transform %q, export %q", lag["import"].Stuck, lag["transform"].Stuck, lag["export"].Stuck)
	}
	var buf bytes.Buffer
	if err := st.WriteTable(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, s := range []string{run, "partial", "import:1", "RECORDS_CLEAN", "never run", "import: stuck: no importer connected"} {
		if !strings.Contains(out, s) {
			t.Errorf("table lacks %q:\n%s", s, out)
		}
	}
	if _, err := json.Marshal(st); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", out)

	// A stream the NATS server lost (here: deleted) is named with the remedy.
	if err := js.DeleteStream(ctx(t), messages.StreamRecordsRaw); err != nil {
		t.Fatal(err)
	}
	lags, err := Lag(ctx(t), js)
	if err != nil {
		t.Fatal(err)
	}
	buf.Reset()
	(&Status{Lag: lags}).WriteTable(&buf)
	for _, l := range lags {
		if (l.Stream == messages.StreamRecordsRaw) != l.StreamMissing {
			t.Errorf("%s: stream_missing = %v", l.Stream, l.StreamMissing)
		}
	}
	if !strings.Contains(buf.String(), "stream missing: run `relay provision`") {
		t.Errorf("table does not name the remedy for a missing stream:\n%s", buf.String())
	}
}

func TestReplayResetsTheDurableForEverySite(t *testing.T) {
	_, _, js := startNATS(t, "", "", "")
	publishClean(t, js, "alpha", "r1", 3)
	publishClean(t, js, "beta", "r1", 2)
	if got := len(drainImporter(t, js)); got != 5 {
		t.Fatalf("importer got %d, want 5", got)
	}
	res, err := Replay(ctx(t), js, ReplayOptions{Stage: "import", FromSeq: 3, DryRun: true})
	if err != nil || res.Matched != 3 || importerPending(t, js) != 0 {
		t.Fatalf("dry run %+v %v (pending %d)", res, err, importerPending(t, js))
	}
	res, err = Replay(ctx(t), js, ReplayOptions{Stage: "import", Since: time.Now().Add(-time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if res.Mode != ModeReset || res.Matched != 5 || res.Pending != 5 {
		t.Fatalf("replay %+v", res)
	}
	if got := len(drainImporter(t, js)); got != 5 {
		t.Fatalf("after replay the importer got %d, want 5", got)
	}
	// New messages still reach the reset consumer.
	publishClean(t, js, "alpha", "r2", 1)
	if got := len(drainImporter(t, js)); got != 1 {
		t.Fatalf("after replay a new record: got %d, want 1", got)
	}
}

func TestReplayOneSiteRepublishesOnlyThatSite(t *testing.T) {
	_, _, js := startNATS(t, "", "", "")
	publishClean(t, js, "alpha", "r1", 3)
	publishClean(t, js, "beta", "r1", 2)
	drainImporter(t, js)
	res, err := Replay(ctx(t), js, ReplayOptions{Stage: "import", Site: "alpha", Since: time.Now().Add(-time.Hour), Tag: "t1"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Mode != ModeRepublish || res.Matched != 3 || res.Republished != 3 {
		t.Fatalf("replay %+v", res)
	}
	got := drainImporter(t, js)
	if len(got) != 3 {
		t.Fatalf("importer got %d, want 3", len(got))
	}
	for _, m := range got {
		if m.Subject() != messages.RecordsCleanSubject("alpha") || !strings.HasPrefix(m.Headers().Get(jetstream.MsgIDHeader), "replay.t1.") || m.Headers().Get(messages.HeaderRun) != "r1" {
			t.Fatalf("replayed %s %v", m.Subject(), m.Headers())
		}
		var rec messages.RecordCleaned
		if err := json.Unmarshal(m.Data(), &rec); err != nil || rec.Site != "alpha" {
			t.Fatalf("replayed body %v %+v", err, rec)
		}
	}
	// The same tag again (an interrupted replay re-run) stores nothing new.
	res, err = Replay(ctx(t), js, ReplayOptions{Stage: "import", Site: "alpha", FromSeq: 1, Tag: "t1"})
	if err != nil || res.Republished != 0 {
		t.Fatalf("same tag: %+v %v", res, err)
	}
	if _, err := Replay(ctx(t), js, ReplayOptions{Stage: "check", Since: time.Now()}); err == nil {
		t.Fatal("stage check accepted")
	}
	if _, err := Replay(ctx(t), js, ReplayOptions{Stage: "import"}); err == nil {
		t.Fatal("no start point accepted")
	}
}

func TestDLQListShowRedactRetryPurge(t *testing.T) {
	_, _, js := startNATS(t, "", "", "")
	rec := messages.RecordCleaned{V: 1, Site: "alpha", RunID: "r1", SourceRecord: "MRN-778812", DestRecordID: "alpha-1", Version: 5, Hash: "abc",
		Rows: []messages.Row{{"record_id": "alpha-1", "dob": "1961-02-03", "note": ""}}}
	payload, _ := json.Marshal(rec)
	for i, site := range []string{"alpha", "alpha", "beta"} {
		dl := messages.DeadLetter{Stage: messages.StageImport, Site: site, RunID: "r1", RecordID: "alpha-1", Error: "dob: not a valid date",
			Subject: messages.RecordsCleanSubject(site), MsgID: fmt.Sprintf("m%d", i), Payload: payload, Attempts: 1}
		if err := router.DeadLetter(ctx(t), js, nil, dl); err != nil {
			t.Fatal(err)
		}
	}
	if err := router.DeadLetter(ctx(t), js, nil, messages.DeadLetter{Stage: messages.StageTransform, Site: "alpha", Error: "malformed", MsgID: "x"}); err != nil {
		t.Fatal(err)
	}
	all, err := ListDLQ(ctx(t), js, DLQFilter{}, 0)
	if err != nil || len(all) != 4 {
		t.Fatalf("list %d %v", len(all), err)
	}
	imp, _ := ListDLQ(ctx(t), js, DLQFilter{Stage: "import", Site: "alpha"}, 0)
	if len(imp) != 2 {
		t.Fatalf("import/alpha %d", len(imp))
	}
	var buf bytes.Buffer
	WriteDLQTable(&buf, all)
	if strings.Contains(buf.String(), "1961") || strings.Contains(buf.String(), "MRN") {
		t.Fatalf("table shows values:\n%s", buf.String())
	}
	e, err := GetDLQ(ctx(t), js, imp[0].Seq)
	if err != nil {
		t.Fatal(err)
	}
	red, _ := json.Marshal(e.Redacted())
	if bytes.Contains(red, []byte("1961-02-03")) || bytes.Contains(red, []byte("MRN-778812")) || !bytes.Contains(red, []byte(`"dob":"[redacted]"`)) ||
		!bytes.Contains(red, []byte(`"note":""`)) || !bytes.Contains(red, []byte(`"site":"alpha"`)) {
		t.Fatalf("redacted: %s", red)
	}
	full, _ := json.Marshal(e.Letter)
	if !bytes.Contains(full, []byte("1961-02-03")) {
		t.Fatalf("--show-values lost the value: %s", full)
	}

	subj, err := RetryDLQ(ctx(t), js, imp[0].Seq)
	if err != nil || subj != messages.RecordsCleanSubject("alpha") {
		t.Fatalf("retry: %s %v", subj, err)
	}
	got := drainImporter(t, js)
	if len(got) != 1 || !bytes.Equal(got[0].Data(), payload) || got[0].Headers().Get(jetstream.MsgIDHeader) != fmt.Sprintf("dlqretry.%d", imp[0].Seq) ||
		got[0].Headers().Get(messages.HeaderSite) != "alpha" {
		t.Fatalf("retried message: %d %v", len(got), got)
	}
	if _, err := GetDLQ(ctx(t), js, imp[0].Seq); err == nil {
		t.Fatal("retried dead letter still held")
	}
	tr, _ := ListDLQ(ctx(t), js, DLQFilter{Stage: "transform"}, 0)
	if _, err := RetryDLQ(ctx(t), js, tr[0].Seq); err == nil || !strings.Contains(err.Error(), "relay sync --site alpha") {
		t.Fatalf("retry without payload: %v", err)
	}
	n, err := PurgeDLQ(ctx(t), js, DLQFilter{Site: "alpha"})
	if err != nil || n != 2 {
		t.Fatalf("purge alpha: %d %v", n, err)
	}
	left, _ := ListDLQ(ctx(t), js, DLQFilter{}, 0)
	if len(left) != 1 || left[0].Letter.Site != "beta" {
		t.Fatalf("left %+v", left)
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 5, 10, 12, 0, 0, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"2026-05-01T02:00:00Z": time.Date(2026, 5, 1, 2, 0, 0, 0, time.UTC),
		"2026-05-01":           time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC),
		"6h":                   now.Add(-6 * time.Hour),
		"7d":                   now.Add(-7 * 24 * time.Hour),
	} {
		got, err := ParseSince(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("%s: %v %v, want %v", in, got, err, want)
		}
	}
	if _, err := ParseSince("yesterday", now); err == nil {
		t.Error("yesterday accepted")
	}
}

func TestHealthcheck(t *testing.T) {
	ready := true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		if !ready {
			http.Error(w, "not ready: NATS is not connected", http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	}))
	defer srv.Close()
	if err := Healthcheck(ctx(t), srv.URL+"/readyz", time.Second); err != nil {
		t.Fatal(err)
	}
	ready = false
	if err := Healthcheck(ctx(t), srv.URL+"/readyz", time.Second); err == nil || !strings.Contains(err.Error(), "NATS is not connected") {
		t.Fatalf("not ready: %v", err)
	}
	if err := Healthcheck(ctx(t), "http://127.0.0.1:1/readyz", time.Second); err == nil {
		t.Fatal("closed port healthy")
	}
}
