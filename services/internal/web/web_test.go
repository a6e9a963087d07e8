package web

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/browser"
	"github.com/redcap-relay/relay/services/internal/ops"
)

// sample is a network as the status reads it: a healthy site, one with
// dead letters, one failing, a stuck importer, 30 runs of history.
func sample() *ops.Status {
	now := time.Date(2026, 12, 2, 9, 30, 0, 0, time.UTC)
	score := func(v float64) *float64 { return &v }
	hist := func(n, size int, failEvery int) (runs []ops.RunPoint, scores []ops.ScorePoint) {
		for i := 0; i < n; i++ {
			at := now.Add(time.Duration(i-n) * 6 * time.Hour)
			ph := messages.PhaseExported
			if failEvery > 0 && i%failEvery == 0 {
				ph = messages.PhaseFailed
			}
			runs = append(runs, ops.RunPoint{ID: "r", At: at, Phase: ph, Exported: size + i*3})
			scores = append(scores, ops.ScorePoint{At: at, Score: 90 + float64(i%5)})
		}
		return
	}
	rh, rs := hist(30, 400, 0)
	lh, ls := hist(12, 150, 0)
	hh, _ := hist(8, 60, 2)
	next := now.Add(17 * time.Hour)
	return &ops.Status{At: now,
		Sites: []ops.SiteStatus{
			{Site: "hillcrest", Name: "Hillcrest Pain Clinic", Outcome: ops.ResultFailed, Reason: "hillcrest: export metadata: HTTP 403: You do not have permissions to use the API",
				Run: &ops.RunSummary{ID: "hillcrest-20261202T060000Z", Started: now.Add(-3 * time.Hour), Seconds: 1.2}, History: hh, NextRun: &next},
			{Site: "lakeshore", Name: "Lakeshore University Hospital", Outcome: ops.ResultPartial, Reason: "4 record(s) dead-lettered: destination rejected record lakeshore-17: not a valid category (score)",
				Run:    &ops.RunSummary{ID: "lakeshore-20261202T033000Z", Started: now.Add(-6 * time.Hour), Seconds: 14.3},
				Counts: ops.RunCounts{Exported: 150, Cleaned: 150, Imported: 146, DeadLettered: 4}, Again: ops.Again{Replayed: 150, Retried: 4, FailedAgain: 4},
				DLQ: map[string]uint64{"import": 4}, History: lh, Scores: ls, NextRun: &next,
				Protocol: &ops.ProtocolSummary{Score: score(97.8), Status: "deviations"}},
			{Site: "riverside", Name: "Riverside Medical Center", Outcome: ops.ResultSynced,
				Run:    &ops.RunSummary{ID: "riverside-20261202T020000Z", Started: now.Add(-7 * time.Hour), Seconds: 21.9},
				Counts: ops.RunCounts{Exported: 487, Cleaned: 487, Imported: 487}, History: rh, Scores: rs, NextRun: &next,
				LastSuccess: &ops.RunRef{ID: "riverside-20261202T020000Z", At: now.Add(-7 * time.Hour)},
				Protocol:    &ops.ProtocolSummary{Score: score(100), Status: "conformant"}},
		},
		Lag: []ops.StageLag{{Stage: "export", Stream: "EXPORT_REQUESTS", Consumer: "exporter"}, {Stage: "transform", Stream: "RECORDS_RAW", Consumer: "transformer"},
			{Stage: "import", Stream: "RECORDS_CLEAN", Consumer: "importer", Pending: 12, AckPending: 25, Lag: 37, Stuck: "destination unreachable: the importer holds 25 record(s) and has confirmed none for 4m0s"},
			{Stage: "check", Stream: "METADATA", Consumer: "checker"}},
		DLQ:      map[string]map[string]uint64{"import": {"lakeshore": 4}},
		Notifier: &ops.NotifierStatus{Channels: []ops.ChannelStatus{{Channel: "email", Sent: 3}, {Channel: "slack", Sent: 2, Failures: 1, LastError: "slack: HTTP 500"}}},
	}
}

func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String() + "/"
}

func fixed(st *ops.Status) Source {
	return func(context.Context) (*ops.Status, error) { return st, nil }
}

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func TestNonLoopbackNeedsBasicAuth(t *testing.T) {
	if _, err := Handler(fixed(sample()), Options{Addr: "0.0.0.0:8470", Logger: quiet}); err == nil || !strings.Contains(err.Error(), "--web-password-file") {
		t.Fatalf("a public address without a password: %v", err)
	}
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("open-sesame\n"), 0o600)
	h, err := Handler(fixed(sample()), Options{Addr: "0.0.0.0:8470", PasswordFile: pw, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	url := serve(t, h)
	for _, c := range []struct {
		user, pw string
		want     int
	}{{"", "", 401}, {"relay", "wrong", 401}, {"admin", "open-sesame", 401}, {"relay", "open-sesame", 200}} {
		req, _ := http.NewRequest("GET", url, nil)
		if c.user != "" {
			req.SetBasicAuth(c.user, c.pw)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Errorf("%s/%s: HTTP %d, want %d", c.user, c.pw, resp.StatusCode, c.want)
		}
		if c.want == 200 && !strings.Contains(resp.Header.Get("Content-Security-Policy"), "default-src 'none'") {
			t.Errorf("no content security policy: %v", resp.Header)
		}
	}
	if !Loopback("127.0.0.1:1") || !Loopback("[::1]:1") || !Loopback("localhost:1") || Loopback(":8470") || Loopback("10.0.0.1:80") {
		t.Error("Loopback misjudges an address")
	}
}

// TestDashboardInChromium renders the page in a real headless browser,
// keeps a screenshot, and reads the table back from the browser's DOM.
func TestDashboardInChromium(t *testing.T) {
	bin := browser.Find(t)
	h, err := Handler(fixed(sample()), Options{Addr: DefaultAddr, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	url := serve(t, h)
	shot := filepath.Join(browser.Artifacts(t), "dashboard-sample.png")
	browser.Run(t, bin, "--screenshot="+shot, "--window-size=1640,1000", "--hide-scrollbars", url)
	if st, err := os.Stat(shot); err != nil || st.Size() < 20000 {
		t.Fatalf("screenshot %s: %v", shot, err)
	}
	dom := string(browser.Run(t, bin, "--dump-dom", url))
	got := SiteRows(dom)
	want := map[string]string{
		"hillcrest": "failed 0 0 0 0 -",
		"lakeshore": "partial 150 146 4 0 97.8",
		"riverside": "synced 487 487 0 0 100.0",
	}
	if len(got) != len(want) {
		t.Fatalf("site rows in the DOM: %v", got)
	}
	for s, w := range want {
		if got[s] != w {
			t.Errorf("site %s: the browser shows %q, want %q", s, got[s], w)
		}
	}
	if n := strings.Count(dom, `<rect class="ok"`); n != 30+12+4 {
		t.Errorf("%d bars of successful runs drawn, want 46", n)
	}
	if n := strings.Count(dom, `<rect class="bad"`); n != 4 {
		t.Errorf("%d bars of failed runs drawn, want 4", n)
	}
	for _, s := range []string{"destination unreachable: the importer holds 25 record(s)", "150 replayed, 4 retried from the DLQ", "slack: HTTP 500"} {
		if !strings.Contains(dom, s) {
			t.Errorf("the page lacks %q", s)
		}
	}
	if strings.Contains(dom, "<script") || regexp.MustCompile(`(src|href)="https?://`).MatchString(dom) {
		t.Error("the page loads something from elsewhere")
	}
	t.Logf("screenshot: %s; rows: %v", shot, got)
}
