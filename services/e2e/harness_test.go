package e2e

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/pipeline/app"
	"github.com/redcap-relay/relay/services/internal/pipeline/broker"
	"github.com/redcap-relay/relay/services/internal/pipeline/exportreq"
	"github.com/redcap-relay/relay/services/internal/tools/redcapsim"
	"github.com/redcap-relay/relay/services/internal/tools/redcapsim/faults"
)

// The test project: a survey with one identifier (dropped by the policy)
// and a date (dropped), so the expected destination can be computed by hand,
// independently of the policy engine.
var surveyFields = []messages.Field{
	{FieldName: "record_id", FormName: "survey", FieldType: "text", FieldLabel: "ID"},
	{FieldName: "name", FormName: "survey", FieldType: "text", FieldLabel: "Name", Identifier: "y"},
	{FieldName: "visit_date", FormName: "survey", FieldType: "text", FieldLabel: "Visit date", TextValidationTypeOrShowSlider: "date_ymd"},
	{FieldName: "score", FormName: "survey", FieldType: "text", FieldLabel: "Score", TextValidationTypeOrShowSlider: "integer", TextValidationMin: "0", TextValidationMax: "10"},
	{FieldName: "mood", FormName: "survey", FieldType: "radio", FieldLabel: "Mood", SelectChoicesOrCalculations: "1, Low | 2, Medium | 3, High"},
	{FieldName: "weight", FormName: "survey", FieldType: "text", FieldLabel: "Weight", TextValidationTypeOrShowSlider: "number"},
	{FieldName: "notes", FormName: "survey", FieldType: "notes", FieldLabel: "Notes"},
}

// approved is what the policy lets through (plus survey_complete).
var approved = []string{"record_id", "score", "mood", "weight", "survey_complete"}

const testPolicy = `name: e2e
approved:
  forms: [survey]
record_id: {mode: namespace}
dates: drop
free_text: drop
rules:
  - field: name
    rule: drop
`

// destFields is the destination's dictionary.
func destFields(scoreCodes string) []messages.Field {
	var out []messages.Field
	for _, f := range surveyFields {
		switch f.FieldName {
		case "name", "visit_date", "notes":
			continue
		case "score":
			if scoreCodes != "" {
				f.FieldType, f.TextValidationTypeOrShowSlider, f.TextValidationMin, f.TextValidationMax = "dropdown", "", "", ""
				f.SelectChoicesOrCalculations = scoreCodes
			}
		}
		out = append(out, f)
	}
	return out
}

// timing is the ack waits a test network runs with (written into its
// network file).
type timing struct{ ExportAckWait, TransformAckWait, ImportAckWait, CheckAckWait time.Duration }

type netOpts struct {
	sites   []string
	records int
	// destScoreCodes, when set, makes the destination score a dropdown with
	// these codes: the destination check passes (numbers into codes) but
	// REDCap rejects other values at import.
	destScoreCodes string
	deletions      bool
	// dags puts each site's records in two data access groups (east, west).
	dags bool
	// siteExtra is appended to every site's entry in the network file
	// (YAML lines indented by four spaces), e.g. "    max_deletions_per_run: 10\n".
	siteExtra string
	// reports gives the network a reports folder, for the checker.
	reports bool
	// policy replaces the test policy; destExtra adds destination fields;
	// surveys makes the sites' survey form a survey; key gives the network
	// a pseudonym key (keyed rules: shift, hash, hmac IDs).
	policy    string
	destExtra []messages.Field
	// siteExtra adds fields to the sites' dictionary; repeating makes
	// forms repeating at the sites and the destination.
	siteFieldsExtra []messages.Field
	repeating       []messages.RepeatingForm
	destDAGs        []messages.DAG
	surveys         bool
	key             bool
	// netExtra is appended to the network file (top-level YAML, e.g. an
	// alerts: section).
	netExtra string
	// streamsExtra is appended to the streams: section (YAML lines
	// indented by two spaces), e.g. "  replicas: 3\n".
	streamsExtra string
	timing       timing
	batchSize    int
	importBatch  int
	natsPort     int
}

// testNet is one simulated network: a simulator (behind the faults
// middleware) hosting the sites and the destination, files on disk, and a
// NATS server with the pipeline.
type testNet struct {
	t       testing.TB
	dir     string
	sim     *redcapsim.Server
	faults  *faults.Injector
	simURL  string
	sites   map[string]int // site -> project ID
	tokens  map[string]string
	dest    int
	network *config.Network
	logs    *testWriter
	stack   *app.Stack
	cancel  context.CancelFunc
	done    chan error
	opts    netOpts
}

func newNet(t testing.TB, o netOpts) *testNet {
	t.Helper()
	if o.records == 0 {
		o.records = 50
	}
	if o.timing == (timing{}) {
		o.timing = timing{ExportAckWait: 2 * time.Minute, TransformAckWait: 20 * time.Second, ImportAckWait: 30 * time.Second, CheckAckWait: time.Minute}
	}
	if o.batchSize == 0 {
		o.batchSize = 20
	}
	if o.importBatch == 0 {
		o.importBatch = 25
	}
	n := &testNet{t: t, dir: t.TempDir(), sites: map[string]int{}, tokens: map[string]string{}, opts: o}
	sim, err := redcapsim.New(redcapsim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	n.sim = sim
	n.faults = faults.New(sim.Handler(), sim.ProjectIDForToken)
	if err := n.faults.Set(0, faults.Faults{BanThreshold: -1}); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: n.faults}
	go srv.Serve(n.faults.OutageListener(ln))
	t.Cleanup(func() { srv.Close() })
	n.simURL = "http://" + ln.Addr().String() + "/api/"

	os.MkdirAll(filepath.Join(n.dir, "secrets"), 0o700)
	for i, site := range o.sites {
		spec := redcapsim.ProjectSpec{Title: site, Fields: append(append([]messages.Field(nil), surveyFields...), o.siteFieldsExtra...), Repeating: o.repeating}
		if o.surveys {
			spec.Surveys = []redcapsim.Survey{{Form: "survey", Title: "Survey"}}
		}
		rows := siteRows(o.records, i)
		if o.dags {
			spec.DAGs = []messages.DAG{{Name: "East", Unique: "east"}, {Name: "West", Unique: "west"}}
			for j, r := range rows {
				r["redcap_data_access_group"] = []string{"east", "west"}[j%2]
			}
		}
		pid, err := sim.CreateProject(spec)
		if err != nil {
			t.Fatal(err)
		}
		if err := sim.ImportRows(pid, rows, false); err != nil {
			t.Fatalf("seed %s: %v", site, err)
		}
		n.sites[site] = pid
		n.tokens[site] = n.addToken(pid, site, redcapsim.Rights{Export: true, Metadata: true})
	}
	n.dest, err = sim.CreateProject(redcapsim.ProjectSpec{Title: "destination", Fields: append(destFields(o.destScoreCodes), o.destExtra...), Repeating: o.repeating, DAGs: o.destDAGs})
	if err != nil {
		t.Fatal(err)
	}
	n.addToken(n.dest, "destination", redcapsim.FullRights())
	pol := testPolicy
	if o.policy != "" {
		pol = o.policy
	}
	os.WriteFile(filepath.Join(n.dir, "policy.yaml"), []byte(pol), 0o600)
	if o.key {
		os.WriteFile(filepath.Join(n.dir, "secrets", "pseudonym.key"), []byte("e2e-pseudonym-key-0123456789abcdef\n"), 0o600)
	}
	return n
}

func (n *testNet) addToken(pid int, name string, r redcapsim.Rights) string {
	b := make([]byte, 16)
	rand.Read(b)
	tok := strings.ToUpper(hex.EncodeToString(b))
	if err := n.sim.AddToken(pid, tok, r, ""); err != nil {
		n.t.Fatal(err)
	}
	os.WriteFile(filepath.Join(n.dir, "secrets", name+".token"), []byte(tok+"\n"), 0o600)
	return tok
}

// siteRows makes records; values depend on the site so sites differ.
func siteRows(count, site int) []messages.Row {
	var rows []messages.Row
	for i := 1; i <= count; i++ {
		rows = append(rows, messages.Row{
			"record_id": strconv.Itoa(i), "name": fmt.Sprintf("Person %d-%d", site, i),
			"visit_date": "2026-03-0" + strconv.Itoa(1+i%9), "score": strconv.Itoa((i + site) % 11),
			"mood": strconv.Itoa(1 + (i+site)%3), "weight": fmt.Sprintf("%d.5", 50+i%40),
			"notes": "private note " + strconv.Itoa(i), "survey_complete": "2",
		})
	}
	return rows
}

// writeNetwork writes and loads the network file.
func (n *testNet) writeNetwork(natsURL string) *config.Network {
	var b strings.Builder
	fmt.Fprintf(&b, "streams:\n  export_ack_wait: %s\n  transform_ack_wait: %s\n  import_ack_wait: %s\n  check_ack_wait: %s\n",
		n.opts.timing.ExportAckWait, n.opts.timing.TransformAckWait, n.opts.timing.ImportAckWait, n.opts.timing.CheckAckWait)
	b.WriteString(n.opts.streamsExtra)
	if n.opts.reports {
		b.WriteString("reports_dir: reports\n")
	}
	if n.opts.key {
		b.WriteString("pseudonym_key: {file: secrets/pseudonym.key}\n")
	}
	fmt.Fprintf(&b, "nats:\n  url: %q\ndestination:\n  url: %s\n  token: {file: secrets/destination.token}\n  batch_size: %d\n  concurrency: 3\n  calls_per_minute: -1\nsites:\n",
		natsURL, n.simURL, n.opts.importBatch)
	for _, s := range n.opts.sites {
		fmt.Fprintf(&b, "  - id: %s\n    url: %s\n    token: {file: secrets/%s.token}\n    schedule: \"@yearly\"\n    policy: policy.yaml\n    propagate_deletions: %v\n    batch_size: %d\n    calls_per_minute: -1\n    overlap: 1s\n",
			s, n.simURL, s, n.opts.deletions, n.opts.batchSize)
		b.WriteString(n.opts.siteExtra)
	}
	b.WriteString(n.opts.netExtra)
	path := filepath.Join(n.dir, "network.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		n.t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		n.t.Fatal(err)
	}
	n.network = cfg
	return cfg
}

// start runs an embedded NATS server and the given services in-process.
func (n *testNet) start(services ...string) {
	n.t.Helper()
	n.writeNetwork("")
	port := n.opts.natsPort
	if port == 0 {
		port = -1
	}
	ctx := context.Background()
	log, w := testLogger(n.t)
	n.logs = w
	st, err := app.Start(ctx, app.Options{Network: n.network, Embedded: true, DataDir: filepath.Join(n.dir, "nats"), NATSPort: port, Logger: log})
	if err != nil {
		n.t.Fatal(err)
	}
	n.stack = st
	n.runServices(services...)
	n.t.Cleanup(n.stop)
}

func (n *testNet) runServices(services ...string) {
	if len(services) == 0 {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	n.done = make(chan error, 1)
	go func() { n.done <- n.stack.Run(ctx, services...) }()
}

func (n *testNet) stopServices() {
	if n.cancel != nil {
		n.cancel()
		select {
		case <-n.done:
		case <-time.After(40 * time.Second):
			n.t.Error("services did not stop within 40s")
		}
		n.cancel = nil
	}
}

func (n *testNet) stop() {
	n.stopServices()
	if n.stack != nil {
		n.stack.Close()
		n.stack = nil
	}
}

// sync requests a run of every site and waits until each run ended and the
// pipeline drained.
func (n *testNet) sync(full bool, at time.Time) map[string]messages.RunEvent {
	n.t.Helper()
	ctx := context.Background()
	runs := map[string]string{}
	for _, s := range n.opts.sites {
		req := exportreq.New(s, at, full, "test")
		if err := exportreq.Publish(ctx, n.stack.JS, req); err != nil {
			n.t.Fatal(err)
		}
		runs[s] = req.RunID
	}
	return n.waitRuns(runs, 3*time.Minute)
}

func (n *testNet) waitRuns(runs map[string]string, timeout time.Duration) map[string]messages.RunEvent {
	n.t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(timeout)
	out := map[string]messages.RunEvent{}
	for time.Now().Before(deadline) {
		for s, run := range runs {
			var ev messages.RunEvent
			if broker.LastJSON(ctx, n.stack.JS, messages.StreamAudit, messages.RunSubject(s), &ev) && ev.RunID == run &&
				(ev.Phase == messages.PhaseExported || ev.Phase == messages.PhaseFailed) {
				out[s] = ev
			}
		}
		if len(out) == len(runs) && broker.Drained(ctx, n.stack.JS) {
			return out
		}
		time.Sleep(200 * time.Millisecond)
	}
	n.t.Fatalf("runs %v did not finish and drain within %s (finished: %v)", runs, timeout, out)
	return nil
}

// expected computes transform(site data) by hand: approved fields only,
// record IDs prefixed with the site's namespace.
func (n *testNet) expected() map[string]messages.Row {
	n.t.Helper()
	want := map[string]messages.Row{}
	for site, pid := range n.sites {
		rows, err := n.sim.ExportRows(pid)
		if err != nil {
			n.t.Fatal(err)
		}
		for _, r := range rows {
			if r["redcap_repeat_instrument"] != "" {
				continue
			}
			out := messages.Row{}
			for _, f := range approved {
				out[f] = r[f]
			}
			out["record_id"] = site + "-" + r["record_id"]
			want[out["record_id"]] = out
		}
	}
	return want
}

// destination returns the destination's records, approved fields only.
func (n *testNet) destination() map[string]messages.Row {
	n.t.Helper()
	rows, err := n.sim.ExportRows(n.dest)
	if err != nil {
		n.t.Fatal(err)
	}
	got := map[string]messages.Row{}
	for _, r := range rows {
		if r["redcap_repeat_instrument"] != "" {
			continue // the survey form's fields are on the record's own row
		}
		out := messages.Row{}
		for _, f := range approved {
			out[f] = r[f]
		}
		got[r["record_id"]] = out
	}
	return got
}

// assertEqual fails with the first differences between want and the destination.
func (n *testNet) assertEqual(want map[string]messages.Row) {
	n.t.Helper()
	got := n.destination()
	var diffs []string
	for id, w := range want {
		g, ok := got[id]
		if !ok {
			diffs = append(diffs, "missing "+id)
			continue
		}
		for k, v := range w {
			if g[k] != v {
				diffs = append(diffs, fmt.Sprintf("%s.%s: got %q want %q", id, k, g[k], v))
			}
		}
	}
	for id := range got {
		if _, ok := want[id]; !ok {
			diffs = append(diffs, "unexpected "+id)
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 0 {
		if len(diffs) > 10 {
			diffs = append(diffs[:10], fmt.Sprintf("... %d more", len(diffs)-10))
		}
		n.t.Fatalf("destination differs from transform(site data) (%d records wanted, %d present):\n  %s", len(want), len(got), strings.Join(diffs, "\n  "))
	}
}

// deadLetters returns the DLQ contents for a stage and site.
func (n *testNet) deadLetters(stage, site string) []messages.DeadLetter {
	var out []messages.DeadLetter
	broker.EachJSON(context.Background(), n.stack.JS, messages.StreamDLQ, messages.DLQSubject(stage, site), func(b []byte) {
		var dl messages.DeadLetter
		if json.Unmarshal(b, &dl) == nil {
			out = append(out, dl)
		}
	})
	return out
}

func (n *testNet) dlqTotal() int {
	return broker.CountSubject(context.Background(), n.stack.JS, messages.StreamDLQ, messages.SubjectDLQ+".>")
}

func (n *testNet) rawCount(site string) int {
	return broker.CountSubject(context.Background(), n.stack.JS, messages.StreamRecordsRaw, messages.RecordsRawSubject(site))
}

// testLogger sends service logs to the test log (shown on failure) and keeps
// them for PHI assertions.
func testLogger(t testing.TB) (*slog.Logger, *testWriter) {
	w := &testWriter{t: t}
	t.Cleanup(func() { w.closed.Store(true) })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})), w
}

func (w *testWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.all.String()
}

type testWriter struct {
	t      testing.TB
	closed atomic.Bool
	mu     sync.Mutex
	all    strings.Builder
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	w.all.Write(p)
	w.mu.Unlock()
	if !w.closed.Load() {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

var _ io.Writer = (*testWriter)(nil)
