package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/redcap"
	"github.com/redcap-relay/relay/services/internal/tools/redcapsim"
)

// Scale is one benchmark size.
type Scale struct {
	Name    string `json:"name"`
	Sites   int    `json:"sites"`
	Records int    `json:"records_per_site"`
}

// Total is the number of records over all sites.
func (s Scale) Total() int { return s.Sites * s.Records }

// Env is a simulated network: one simulator holding every site project
// and the destinations, each site served on its own port (its own REDCap
// server, so its own rate limiter in the client), the destination on
// another; files on disk for the pipeline and the baseline.
type Env struct {
	Dir    string
	Scale  Scale
	Sim    *redcapsim.Server
	RawURL string // the simulator without the latency model (checks only)
	Sites  []*Site
	Dest   *endpoint
	// DestURL is the destination server's API URL.
	DestURL string
	servers []*http.Server
	nDest   int
	destTok map[int]string // destination project ID to its token file
}

// Site is one simulated site.
type Site struct {
	ID       string
	PID      int
	URL      string
	Events   int
	endpoint *endpoint
}

// NewEnv builds and seeds the sites of a scale. Site 3 (and every third)
// is longitudinal with three events; the others have one.
func NewEnv(dir string, sc Scale, log *slog.Logger) (*Env, error) {
	// The baseline imports a whole site in one call: let the simulator
	// take it (a real server's post_max_size would refuse it).
	sim, err := redcapsim.New(redcapsim.Options{MaxRequestBytes: 4 << 30, Logger: log})
	if err != nil {
		return nil, err
	}
	e := &Env{Dir: dir, Scale: sc, Sim: sim, destTok: map[int]string{}}
	if e.RawURL, err = sim.Listen("127.0.0.1:0"); err != nil {
		e.Close()
		return nil, err
	}
	for _, d := range []string{"secrets", "runs", "reports"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			e.Close()
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(PolicyYAML), 0o600); err != nil {
		e.Close()
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "secrets", "pseudonym.key"), []byte(randomHex(32)+"\n"), 0o600); err != nil {
		e.Close()
		return nil, err
	}
	for i := 0; i < sc.Sites; i++ {
		events := 1
		if i%3 == 2 {
			events = 3
		}
		d := Design(events)
		s := &Site{ID: fmt.Sprintf("site%d", i+1), Events: events}
		s.PID, err = sim.CreateProject(redcapsim.ProjectSpec{Title: "bench " + s.ID, Fields: d.Fields,
			Arms: []messages.Arm{{ArmNum: 1, Name: "Arm 1"}}, Events: d.Events, FormEventMapping: d.FEM})
		if err != nil {
			e.Close()
			return nil, err
		}
		if err := seed(sim, s.PID, d, sc.Records, uint64(i+1)); err != nil {
			e.Close()
			return nil, err
		}
		if err := e.token(s.PID, s.ID, redcapsim.Rights{Export: true, Metadata: true}); err != nil {
			e.Close()
			return nil, err
		}
		s.endpoint = newEndpoint(sim.Handler())
		if s.URL, err = e.serve(s.endpoint); err != nil {
			e.Close()
			return nil, err
		}
		e.Sites = append(e.Sites, s)
	}
	e.Dest = newEndpoint(sim.Handler())
	if e.DestURL, err = e.serve(e.Dest); err != nil {
		e.Close()
		return nil, err
	}
	return e, nil
}

func (e *Env) serve(h http.Handler) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	e.servers = append(e.servers, srv)
	return "http://" + ln.Addr().String() + "/api/", nil
}

// SetRegime sets the latency model of the sites and of the destination.
func (e *Env) SetRegime(r Regime) {
	for _, s := range e.Sites {
		s.endpoint.setModel(r.Site)
	}
	e.Dest.setModel(r.Dest)
}

// Imports returns the destination's import calls and the values they sent
// so far (values only under a model with latency).
func (e *Env) Imports() (calls, values int64) {
	return e.Dest.imports.Load(), e.Dest.importValues.Load()
}

// Calls returns the API calls made so far to the sites and to the destination.
func (e *Env) Calls() (sites, dest int64) {
	for _, s := range e.Sites {
		sites += s.endpoint.calls.Load()
	}
	return sites, e.Dest.calls.Load()
}

func (e *Env) token(pid int, name string, r redcapsim.Rights) error {
	tok := randomHex(16)
	if err := e.Sim.AddToken(pid, tok, r, ""); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(e.Dir, "secrets", name+".token"), []byte(tok+"\n"), 0o600)
}

// RunSetup is one approach's run against a fresh destination project.
type RunSetup struct {
	Name        string // folder under runs/
	NetworkFile string
	DestPID     int
	DataDir     string // the embedded NATS store of `relay all`
}

// NewRun creates a fresh destination project and writes a network file
// pointing at it. natsURL "" means relay all's embedded server.
func (e *Env) NewRun(name string, o NetOptions) (*RunSetup, error) {
	e.nDest++
	dir := filepath.Join(e.Dir, "runs", name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	pid, err := e.Sim.CreateProject(destinationSpec(fmt.Sprintf("destination %d (%s)", e.nDest, name)))
	if err != nil {
		return nil, err
	}
	destTok := fmt.Sprintf("destination%d", e.nDest)
	if err := e.token(pid, destTok, redcapsim.FullRights()); err != nil {
		return nil, err
	}
	e.destTok[pid] = filepath.Join(e.Dir, "secrets", destTok+".token")
	r := &RunSetup{Name: name, NetworkFile: filepath.Join(dir, "network.yaml"), DestPID: pid, DataDir: filepath.Join(dir, "nats")}
	if err := os.WriteFile(r.NetworkFile, []byte(e.networkYAML(destTok, o)), 0o600); err != nil {
		return nil, err
	}
	return r, nil
}

// NetOptions are the pipeline settings written into the network file.
type NetOptions struct {
	SiteBatch, ImportBatch, ImportConcurrency int
	// SyncInterval is nats.sync_interval for relay all's embedded server
	// ("" = 2m, "always" = fsync every write).
	SyncInterval string `json:"sync_interval,omitempty"`
}

// DefaultNet is the network file's defaults (config.Default*), with the
// importer's concurrency matching what the model's destination accepts.
var DefaultNet = NetOptions{SiteBatch: config.DefaultSiteBatchSize, ImportBatch: config.DefaultImportBatchSize, ImportConcurrency: config.DefaultImportConc}

func (e *Env) networkYAML(destTok string, o NetOptions) string {
	var b strings.Builder
	sec := filepath.Join(e.Dir, "secrets")
	// Rate limits are off: the simulator has no IP ban, and the latency
	// model already paces the calls.
	fmt.Fprintf(&b, "nats:\n  url: \"\"\n  sync_interval: %q\ndestination:\n  url: %s\n  token: {file: %s}\n  batch_size: %d\n  concurrency: %d\n  calls_per_minute: -1\n  timeout: 1h\n",
		o.SyncInterval, e.DestURL, filepath.Join(sec, destTok+".token"), o.ImportBatch, o.ImportConcurrency)
	fmt.Fprintf(&b, "pseudonym_key: {file: %s}\nreports_dir: %s\nsites:\n", filepath.Join(sec, "pseudonym.key"), filepath.Join(e.Dir, "reports"))
	for _, s := range e.Sites {
		fmt.Fprintf(&b, "  - id: %s\n    url: %s\n    token: {file: %s}\n    schedule: \"@yearly\"\n    policy: %s\n    batch_size: %d\n    calls_per_minute: -1\n    timeout: 1h\n    overlap: 1s\n",
			s.ID, s.URL, filepath.Join(sec, s.ID+".token"), filepath.Join(e.Dir, "policy.yaml"), o.SiteBatch)
	}
	return b.String()
}

// DestRecords counts the records a destination holds (one cheap call to the
// simulator without the latency model).
func (e *Env) DestRecords(ctx context.Context, pid int) (int, error) {
	tok, err := os.ReadFile(e.destTok[pid])
	if err != nil {
		return 0, err
	}
	c, err := redcap.New(redcap.Options{Site: "destination", URL: e.RawURL, Token: strings.TrimSpace(string(tok)), CallsPerMinute: -1, Timeout: time.Hour})
	if err != nil {
		return 0, err
	}
	ids, err := c.ExportRecordIDs(ctx, "record_id", time.Time{})
	return len(ids), err
}

// Close stops the servers and the simulator.
func (e *Env) Close() {
	for _, s := range e.servers {
		s.Close()
	}
	if e.Sim != nil {
		e.Sim.Close()
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return strings.ToUpper(hex.EncodeToString(b))
}
