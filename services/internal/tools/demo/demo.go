// Package demo sets up a complete, simulated coordinating-center network on
// one machine: three REDCap sites of different sizes and schedules (synthetic
// participants on the HEAL core instruments, longitudinal events, one
// repeating instrument, identifiers in an enrollment form) and a destination
// project, all in the REDCap simulator; the network file, transfer policy and
// token files that point the pipeline at them; and `relay demo` itself: one
// full sync through the real pipeline and a protocol report.
package demo

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/redcap-relay/relay/services/internal/tools/redcapsim"
	"github.com/redcap-relay/relay/services/internal/tools/redcapsim/faults"
)

// SiteSpec describes one simulated site.
type SiteSpec struct {
	ID, Name     string
	Participants int
	Schedule     string
	TimeZone     string
	DAG          string
	// Variant makes the site deviate from the protocol the way real sites
	// do (see design.go); "" is a conformant site.
	Variant string
}

// Sites are the demo network's sites.
var Sites = []SiteSpec{
	{ID: "riverside", Name: "Riverside Medical Center", Participants: 400, Schedule: "0 2 * * *", TimeZone: "America/New_York", DAG: "riverside"},
	{ID: "lakeshore", Name: "Lakeshore University Hospital", Participants: 150, Schedule: "30 3 * * *", TimeZone: "America/Chicago", DAG: "lakeshore", Variant: "drift"},
	{ID: "hillcrest", Name: "Hillcrest Pain Clinic", Participants: 60, Schedule: "0 */6 * * *", TimeZone: "America/Denver", DAG: "hillcrest", Variant: "partial"},
}

// Setup is a built demo network.
type Setup struct {
	Dir         string // holds network.yaml, policies/, secrets/, reports/
	NetworkFile string
	SimURL      string
	Projects    map[string]int // site ID (and "destination") to simulator project ID
	Expected    map[string]int // site ID to the number of records it holds
}

// Options for Build.
type Options struct {
	Dir   string // where to write the files; created if missing
	Sites []SiteSpec
	// Scale multiplies every site's participant count (benchmarks).
	Scale float64
	Seed  uint64
}

// Build creates the site and destination projects in sim (which must be
// listening at simURL) and writes the files the pipeline reads.
func Build(sim *redcapsim.Server, simURL string, o Options) (*Setup, error) {
	if o.Sites == nil {
		o.Sites = Sites
	}
	if o.Scale == 0 {
		o.Scale = 1
	}
	for _, d := range []string{"policies", "secrets", "reports"} {
		if err := os.MkdirAll(filepath.Join(o.Dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	st := &Setup{Dir: o.Dir, NetworkFile: filepath.Join(o.Dir, "network.yaml"), SimURL: simURL,
		Projects: map[string]int{}, Expected: map[string]int{}}
	base, err := baseDesign()
	if err != nil {
		return nil, err
	}
	var dags []string
	for i, s := range o.Sites {
		design := variant(base, s.Variant)
		n := max(1, int(float64(s.Participants)*o.Scale))
		p := Generate(design, n, o.Seed+uint64(i)+1)
		pid, err := sim.CreateProject(redcapsim.ProjectSpec{
			Title: "HEAL core - " + s.Name, Fields: p.Fields, Arms: p.Arms, Events: p.Events,
			FormEventMapping: p.FEM, Repeating: p.Repeating,
		})
		if err != nil {
			return nil, fmt.Errorf("demo site %s: %w", s.ID, err)
		}
		if err := sim.ImportRows(pid, p.Rows, false); err != nil {
			return nil, fmt.Errorf("demo site %s: seed data: %w", s.ID, err)
		}
		if err := addToken(sim, pid, filepath.Join(o.Dir, "secrets", s.ID+".token"), redcapsim.Rights{Export: true, Metadata: true, Logging: true}); err != nil {
			return nil, err
		}
		st.Projects[s.ID] = pid
		st.Expected[s.ID] = n
		dags = append(dags, s.DAG)
	}
	dest := destinationDesign(base)
	pid, err := sim.CreateProject(redcapsim.ProjectSpec{
		Title: "HEAL core - coordinating center", Fields: dest.Fields, Arms: dest.Arms, Events: dest.Events,
		FormEventMapping: dest.FEM, Repeating: dest.Repeating, DAGs: dagList(dags),
	})
	if err != nil {
		return nil, fmt.Errorf("demo destination: %w", err)
	}
	if err := addToken(sim, pid, filepath.Join(o.Dir, "secrets", "destination.token"), redcapsim.FullRights()); err != nil {
		return nil, err
	}
	st.Projects["destination"] = pid
	if err := writeKey(filepath.Join(o.Dir, "secrets", "pseudonym.key")); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(o.Dir, "policies", "heal-core.yaml"), []byte(policyYAML(base)), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(st.NetworkFile, []byte(networkYAML(simURL, o.Sites)), 0o600); err != nil {
		return nil, err
	}
	return st, nil
}

// simulated is the demo's running simulator.
type simulated struct {
	sim      *redcapsim.Server
	setup    *Setup
	adminURL string // the fault admin API ("" when not served)
	restart  bool   // the network, tokens and key were there already
	close    func()
}

// simOptions say where the simulator keeps its state and what it serves.
type simOptions struct {
	dir     string
	scale   float64
	persist bool   // keep the projects, tokens and key in dir/redcap and restart on them
	admin   string // address of the fault admin API ("" = none)
}

// stateFile records a persisted demo network, so a restart serves the same
// projects on the same address.
const stateFile = "demo.json"

type demoState struct {
	SimAddress string         `json:"sim_address"`
	Projects   map[string]int `json:"projects"`
	Expected   map[string]int `json:"expected"`
	Scale      float64        `json:"scale"`
}

// startSimulated starts the simulator on a loopback port and builds the
// demo network in it (the same seed every time, so every demo has the same
// participants); with persist, a folder that holds a demo network already
// is restarted on: the same projects, data, tokens and key.
func startSimulated(log *slog.Logger, o simOptions) (*simulated, error) {
	so := redcapsim.Options{Logger: log}
	var prev *demoState
	if o.persist {
		so.DataDir = filepath.Join(o.dir, "redcap")
		if b, err := os.ReadFile(filepath.Join(o.dir, stateFile)); err == nil {
			prev = &demoState{}
			if err := json.Unmarshal(b, prev); err != nil {
				return nil, fmt.Errorf("demo: %s is damaged (%v); delete the folder for a new demo network", filepath.Join(o.dir, stateFile), err)
			}
		}
		if err := os.MkdirAll(so.DataDir, 0o700); err != nil {
			return nil, err
		}
	}
	sim, err := redcapsim.New(so)
	if err != nil {
		return nil, err
	}
	// Behind the fault injector, which is what the admin API drives. The
	// demo's network has no rate limit, so REDCap's IP ban stays off, also
	// after DELETE /faults.
	inj := faults.New(sim.Handler(), sim.ProjectIDForToken)
	inj.SetBanDefault(-1)
	inj.SetRecordIDField(sim.RecordIDFieldForToken)
	var servers []*http.Server
	out := &simulated{sim: sim, restart: prev != nil}
	out.close = func() {
		for _, hs := range servers {
			hs.Close()
		}
		sim.Close()
	}
	fail := func(err error) (*simulated, error) { out.close(); return nil, err }
	addr := "127.0.0.1:0"
	if prev != nil {
		addr = prev.SimAddress
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil && prev != nil {
		ln, err = net.Listen("tcp", "127.0.0.1:0") // taken since: move, and say so in the network file
	}
	if err != nil {
		return fail(err)
	}
	api := &http.Server{Handler: inj, ReadHeaderTimeout: 10 * time.Second}
	servers = append(servers, api)
	go func() { _ = api.Serve(inj.OutageListener(ln)) }()
	url := "http://" + ln.Addr().String() + "/api/"
	if o.admin != "" {
		aln, err := net.Listen("tcp", o.admin)
		if err != nil {
			return fail(fmt.Errorf("demo: fault admin API: listen on %s: %w", o.admin, err))
		}
		mux := http.NewServeMux()
		mux.Handle("/faults", inj.AdminHandler())
		mux.Handle("/faults/", inj.AdminHandler())
		admin := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		servers = append(servers, admin)
		go func() { _ = admin.Serve(aln) }()
		out.adminURL = "http://" + aln.Addr().String() + "/faults"
	}

	if prev != nil {
		out.setup, err = reopen(o.dir, url, prev)
		if err != nil {
			return fail(err)
		}
		return out, nil
	}
	if out.setup, err = Build(sim, url, Options{Dir: o.dir, Scale: o.scale, Seed: 2026}); err != nil {
		return fail(err)
	}
	if o.persist {
		st := demoState{SimAddress: ln.Addr().String(), Projects: out.setup.Projects, Expected: out.setup.Expected, Scale: o.scale}
		b, _ := json.MarshalIndent(st, "", "  ")
		if err := os.WriteFile(filepath.Join(o.dir, stateFile), b, 0o600); err != nil {
			return fail(err)
		}
	}
	return out, nil
}

// reopen is the Setup of a persisted demo network, its network file
// pointed at the simulator's address if that had to move.
func reopen(dir, url string, st *demoState) (*Setup, error) {
	setup := &Setup{Dir: dir, NetworkFile: filepath.Join(dir, "network.yaml"), SimURL: url, Projects: st.Projects, Expected: st.Expected}
	old := "http://" + st.SimAddress + "/api/"
	if old == url {
		return setup, nil
	}
	b, err := os.ReadFile(setup.NetworkFile)
	if err != nil {
		return nil, fmt.Errorf("demo: %s holds a demo network but %w", dir, err)
	}
	if err := os.WriteFile(setup.NetworkFile, []byte(strings.ReplaceAll(string(b), old, url)), 0o600); err != nil {
		return nil, err
	}
	st.SimAddress = strings.TrimSuffix(strings.TrimPrefix(url, "http://"), "/api/")
	nb, _ := json.MarshalIndent(st, "", "  ")
	return setup, os.WriteFile(filepath.Join(dir, stateFile), nb, 0o600)
}

func addToken(sim *redcapsim.Server, pid int, file string, rights redcapsim.Rights) error {
	tok := randomHex(16)
	if err := sim.AddToken(pid, tok, rights, ""); err != nil {
		return err
	}
	return os.WriteFile(file, []byte(tok+"\n"), 0o600)
}

func writeKey(file string) error { return os.WriteFile(file, []byte(randomHex(32)+"\n"), 0o600) }

// randomHex makes REDCap-style tokens (32 upper-case hex characters for 16 bytes).
func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return strings.ToUpper(hex.EncodeToString(b))
}

func networkYAML(simURL string, sites []SiteSpec) string {
	return networkYAMLFor(simURL, simURL, "reports", "nats", sites)
}

// networkYAMLFor writes the demo's network file. The sites' schedules run in
// their own time zones, but the simulator's clock (dateRangeBegin, the
// change log) is UTC: server_time_zone says so, or every changed-since
// window would be hours off.
func networkYAMLFor(siteURL, destURL, reports, storeDir string, sites []SiteSpec) string {
	var b strings.Builder
	store := ""
	if storeDir != "" {
		store = "\n  store_dir: " + storeDir + "   # the embedded server's store; relay status, sync, dlq find its URL here"
	}
	fmt.Fprintf(&b, `# REDCap Relay demo network (written by relay demo). Paths are relative to this file.
nats:
  url: ""            # empty: relay all / relay demo run an embedded NATS server%s
destination:
  url: %s
  token: {file: secrets/destination.token}
  calls_per_minute: -1   # the simulator has no IP ban; for real servers leave unset (300/minute)
pseudonym_key: {file: secrets/pseudonym.key}
reports_dir: %s
sites:
`, store, destURL, reports)
	for _, s := range sites {
		fmt.Fprintf(&b, `  - id: %s
    name: %s
    url: %s
    token: {file: secrets/%s.token}
    schedule: "%s"
    time_zone: %s
    server_time_zone: UTC   # the simulator's clock
    policy: policies/heal-core.yaml
    namespace: %s
    dag: %s
    propagate_deletions: true
    calls_per_minute: -1
`, s.ID, s.Name, siteURL, s.ID, s.Schedule, s.TimeZone, s.ID, s.DAG)
	}
	return b.String()
}
