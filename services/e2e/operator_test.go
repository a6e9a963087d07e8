package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	dto "github.com/prometheus/client_model/go"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/browser"
	"github.com/redcap-relay/relay/services/internal/ops"
	"github.com/redcap-relay/relay/services/internal/pipeline/app"
	"github.com/redcap-relay/relay/services/internal/pipeline/broker"
	"github.com/redcap-relay/relay/services/internal/pipeline/telemetry"
	"github.com/redcap-relay/relay/services/internal/redcap"
	"github.com/redcap-relay/relay/services/internal/web"
)

// inbox is an SMTP server on loopback (emersion/go-smtp) keeping every
// message it takes.
type inbox struct {
	addr string
	mu   sync.Mutex
	msgs []string
}

func startInbox(t *testing.T) *inbox {
	in := &inbox{}
	s := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &inboxSession{in: in}, nil }))
	s.Domain = "localhost"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	in.addr = ln.Addr().String()
	return in
}

func (in *inbox) all() string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return strings.Join(in.msgs, "\n----\n")
}

type inboxSession struct{ in *inbox }

func (s *inboxSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s *inboxSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s *inboxSession) Data(r io.Reader) error {
	b, _ := io.ReadAll(r)
	s.in.mu.Lock()
	s.in.msgs = append(s.in.msgs, string(b))
	s.in.mu.Unlock()
	return nil
}
func (s *inboxSession) Reset()        {}
func (s *inboxSession) Logout() error { return nil }

// hooks is a webhook receiver on loopback.
type hooks struct {
	url    string
	mu     sync.Mutex
	bodies []string
}

func startHooks(t *testing.T) *hooks {
	h := &hooks{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		h.bodies = append(h.bodies, string(b))
		h.mu.Unlock()
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	h.url = "http://" + ln.Addr().String() + "/hook/secret"
	return h
}

func (h *hooks) all() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return strings.Join(h.bodies, "\n")
}

// TestOperatorViewTellsOneStory: a network with a site whose token is
// wrong, one whose records the destination partly rejects, and a healthy
// one. relay status, the metrics, the dashboard and the alerts (mail and
// webhook) all say the same; a replay and a dead-letter retry afterwards
// keep the run's counts true.
func TestOperatorViewTellsOneStory(t *testing.T) {
	if testing.Short() {
		t.Skip("long scenario")
	}
	mail, hook := startInbox(t), startHooks(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "hook.url"), []byte(hook.url), 0o600)
	alerts := fmt.Sprintf(`alerts:
  check_every: 1s
  max_per_hour: 3600
  email:
    smtp: %s
    starttls: false
    from: relay@center.test
    to: [dm@center.test]
  webhooks:
    - name: chat
      url: {file: %s}
`, mail.addr, filepath.Join(dir, "hook.url"))
	codes := "0, 0 | 1, 1 | 2, 2 | 3, 3 | 4, 4 | 5, 5 | 6, 6 | 7, 7 | 8, 8 | 9, 9"
	n := newNet(t, netOpts{sites: []string{"riverside", "lakeshore", "hillcrest"}, records: 8, destScoreCodes: codes, reports: true, netExtra: alerts})
	// lakeshore: three records the destination rejects (score 10).
	var bad []messages.Row
	for i := 101; i <= 103; i++ {
		bad = append(bad, messages.Row{"record_id": fmt.Sprint(i), "name": "Person bad", "score": "10", "mood": "2", "weight": "77.5", "survey_complete": "2"})
	}
	if err := n.sim.ImportRows(n.sites["lakeshore"], bad, false); err != nil {
		t.Fatal(err)
	}
	// hillcrest: a token the server does not know.
	os.WriteFile(filepath.Join(n.dir, "secrets", "hillcrest.token"), []byte("0123456789ABCDEF0123456789ABCDEF\n"), 0o600)
	n.start(append(pipeline, app.Checker)...)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	wg.Add(2)
	go func() { defer wg.Done(); n.stack.Run(ctx, app.Notifier) }()
	webAddr := make(chan string, 1)
	go func() {
		defer wg.Done()
		web.Serve(ctx, n.stack.NC, n.stack.JS, web.Options{Addr: "127.0.0.1:0", Network: n.network, Logger: slog.New(slog.NewTextHandler(n.logs, nil)), Listening: func(a string) { webAddr <- a }})
	}()

	t0 := time.Now()
	runs := n.sync(true, t0)
	if runs["hillcrest"].Phase != messages.PhaseFailed || runs["riverside"].Exported != 8 || runs["lakeshore"].Exported != 11 {
		t.Fatalf("runs: %+v", runs)
	}
	waitFor(t, time.Minute, "the protocol reports", func() bool {
		return broker.CountSubject(ctx, n.stack.JS, messages.StreamReports, messages.SubjectProtocolReport+".*") >= 2
	})

	// relay status.
	st := collect(t, n)
	want := map[string]struct {
		result string
		counts ops.RunCounts
	}{
		"riverside": {ops.ResultSynced, ops.RunCounts{Exported: 8, Cleaned: 8, Imported: 8}},
		"lakeshore": {ops.ResultPartial, ops.RunCounts{Exported: 11, Cleaned: 11, Imported: 8, DeadLettered: 3}},
		"hillcrest": {ops.ResultFailed, ops.RunCounts{}},
	}
	for site, w := range want {
		s := siteNamed(t, st, site)
		if s.Result() != w.result || s.Counts != w.counts {
			t.Errorf("status %s: %s %+v, want %s %+v (%s)", site, s.Result(), s.Counts, w.result, w.counts, s.Reason)
		}
	}
	if r := siteNamed(t, st, "hillcrest").Reason; !strings.Contains(r, "403") {
		t.Errorf("hillcrest's reason does not name the refused token: %q", r)
	}
	if r := siteNamed(t, st, "lakeshore").Reason; !strings.Contains(r, "3 record(s) dead-lettered") || !strings.Contains(r, "score") {
		t.Errorf("lakeshore's reason: %q", r)
	}
	if s := siteNamed(t, st, "riverside"); s.LastSuccess == nil || s.NextRun == nil || s.Protocol == nil {
		t.Errorf("riverside: last success %v, next run %v, protocol %v", s.LastSuccess, s.NextRun, s.Protocol)
	}
	var table bytes.Buffer
	st.WriteTable(&table)
	t.Logf("relay status:\n%s", table.String())

	// The alerts: one mail and one webhook message tell the failure and
	// the dead letters, with no field value.
	waitFor(t, time.Minute, "the alerts", func() bool {
		m := mail.all()
		return strings.Contains(m, "site hillcrest: run failed") && strings.Contains(m, "site lakeshore: 3 new dead letter(s) at stage import") &&
			strings.Contains(hook.all(), "site hillcrest: run failed")
	})
	for _, leak := range []string{"Person", "private note", "77.5", "50.5"} {
		if strings.Contains(mail.all(), leak) || strings.Contains(hook.all(), leak) {
			t.Errorf("an alert holds a field value (%q)", leak)
		}
	}
	if strings.Contains(mail.all(), "riverside") {
		t.Errorf("the healthy site was alerted:\n%s", mail.all())
	}

	// The metrics.
	waitFor(t, 30*time.Second, "the pipeline metrics", func() bool { return gauge(t, "relay_site_result", "site=hillcrest", "result=failed") == 1 })
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"relay_site_result", []string{"site=lakeshore", "result=partial"}, 1},
		{"relay_site_result", []string{"site=riverside", "result=synced"}, 1},
		{"relay_dlq_messages", []string{"stage=import", "site=lakeshore"}, 3},
		{"relay_dlq_messages", []string{"stage=export", "site=hillcrest"}, 1},
		{"relay_site_run_records", []string{"site=lakeshore", "stage=imported"}, 8},
		{"relay_dead_letters_total", []string{"stage=import", "site=lakeshore"}, 3},
	} {
		if got := gauge(t, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if gauge(t, "relay_redcap_call_errors_total", "site=hillcrest", "outcome=permanent") < 1 || count(t, "relay_redcap_call_seconds", "site=riverside", "call=export records", "outcome=ok") < 1 ||
		count(t, "relay_redcap_call_seconds", "site=destination", "call=import records", "outcome=rejected") < 1 {
		t.Error("REDCap calls are not timed for site exports, refused tokens and rejected imports alike")
	}

	// The dashboard, in a real browser when there is one.
	addr := <-webAddr
	page := get(t, "http://"+addr+"/")
	rows := web.SiteRows(page)
	for site, w := range want {
		c := w.counts
		prefix := fmt.Sprintf("%s %d %d %d %d ", w.result, c.Exported, c.Imported, c.DeadLettered, c.Waiting)
		if !strings.HasPrefix(rows[site], prefix) {
			t.Errorf("dashboard %s: %q, want %q...", site, rows[site], prefix)
		}
	}
	if bin, err := exec.LookPath("chromium"); err == nil {
		shot := filepath.Join(browser.Artifacts(t), "dashboard.png")
		browser.Run(t, bin, "--screenshot="+shot, "--window-size=1640,1000", "--hide-scrollbars", "http://"+addr+"/")
		dom := browser.Run(t, bin, "--dump-dom", "http://"+addr+"/")
		if got := web.SiteRows(string(dom)); len(got) != 3 || got["lakeshore"] != rows["lakeshore"] {
			t.Errorf("the browser shows %v, the server sent %v", got, rows)
		}
		t.Logf("dashboard screenshot: %s", shot)
	} else {
		t.Log("chromium not installed: the dashboard was checked over HTTP only")
	}

	// A replay of lakeshore's cleaned records and, after the destination
	// takes score 10, a retry of every dead letter: the run's counts stay
	// its distinct records, the deliveries made again are on their own line.
	if _, err := ops.Replay(ctx, n.stack.JS, ops.ReplayOptions{Stage: messages.StageImport, Site: "lakeshore", Since: t0.Add(-time.Minute), Tag: "e2e"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, time.Minute, "the replay to drain", func() bool { return broker.Drained(ctx, n.stack.JS) })
	s := siteNamed(t, collect(t, n), "lakeshore")
	if s.Counts != want["lakeshore"].counts || s.Again.Replayed != 11 || s.Result() != ops.ResultPartial {
		t.Fatalf("after the replay: %s %+v again %+v", s.Result(), s.Counts, s.Again)
	}
	dest, err := redcap.New(redcap.Options{Site: "destination", URL: n.simURL, Token: readToken(t, n, "destination"), CallsPerMinute: -1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dest.ImportMetadata(ctx, destFields(codes+" | 10, 10")); err != nil {
		t.Fatal(err)
	}
	letters, err := ops.ListDLQ(ctx, n.stack.JS, ops.DLQFilter{Stage: messages.StageImport, Site: "lakeshore"}, 0)
	if err != nil || len(letters) != 6 { // 3, and the replay's 3 rejected again
		t.Fatalf("dead letters after the replay: %d (%v)", len(letters), err)
	}
	for _, l := range letters {
		if _, err := ops.RetryDLQ(ctx, n.stack.JS, l.Seq); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, time.Minute, "the retries to be imported", func() bool {
		return broker.Drained(ctx, n.stack.JS) && siteNamed(t, collect(t, n), "lakeshore").Counts.Imported == 11
	})
	s = siteNamed(t, collect(t, n), "lakeshore")
	if s.Counts != (ops.RunCounts{Exported: 11, Cleaned: 11, Imported: 11}) || s.Result() != ops.ResultSynced || s.Again != (ops.Again{Replayed: 11, Retried: 6}) {
		t.Fatalf("after the retry: %s %+v again %+v", s.Result(), s.Counts, s.Again)
	}
	waitFor(t, 30*time.Second, "the metrics to follow", func() bool { return gauge(t, "relay_site_result", "site=lakeshore", "result=synced") == 1 })
	table.Reset()
	collect(t, n).WriteTable(&table)
	if !strings.Contains(table.String(), "lakeshore: delivered again since the run (not in its counts): 11 replayed, 6 retried from the DLQ (0 failed again)") {
		t.Errorf("status after the replay and the retry:\n%s", table.String())
	}
	t.Logf("relay status after the replay and the retry:\n%s", table.String())
}

func collect(t *testing.T, n *testNet) *ops.Status {
	t.Helper()
	st, err := ops.Collect(context.Background(), n.stack.JS, ops.StatusOptions{Network: n.network})
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func siteNamed(t *testing.T, st *ops.Status, site string) ops.SiteStatus {
	t.Helper()
	for _, s := range st.Sites {
		if s.Site == site {
			return s
		}
	}
	t.Fatalf("no site %s", site)
	return ops.SiteStatus{}
}

func readToken(t *testing.T, n *testNet, name string) string {
	b, err := os.ReadFile(filepath.Join(n.dir, "secrets", name+".token"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// metric finds a series of the process's registry by name and labels.
func metric(t *testing.T, name string, labels ...string) *dto.Metric {
	t.Helper()
	fams, err := telemetry.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for _, kv := range labels {
				k, v, _ := strings.Cut(kv, "=")
				if have[k] != v {
					continue next
				}
			}
			return m
		}
	}
	return nil
}

func gauge(t *testing.T, name string, labels ...string) float64 {
	m := metric(t, name, labels...)
	switch {
	case m == nil:
		return -1
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Counter != nil:
		return m.Counter.GetValue()
	}
	return -1
}

func count(t *testing.T, name string, labels ...string) uint64 {
	if m := metric(t, name, labels...); m != nil && m.Histogram != nil {
		return m.Histogram.GetSampleCount()
	}
	return 0
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return string(b)
}
