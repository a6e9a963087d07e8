// Package bench measures REDCap Relay against the original tool's approach
// (one export and one import call per site, in turn, no broker) and against
// the machine's ceilings (raw JetStream, the simulator's own speed), in a
// CPU-bound regime (simulators with no latency) and a REDCap-like one (a
// documented latency model). `relay bench` (scripts/bench.sh) runs it and
// writes a Markdown table and a JSON file.
package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/config"
)

// Options configures a benchmark run.
type Options struct {
	Quick bool
	// Exe is the relay binary: the pipeline runs as `Exe all` and the
	// baseline as `Exe bench baseline` in child processes, so each has its
	// own peak RSS. Empty: both run in this process (no RSS figures).
	Exe     string
	Dir     string // work folder (simulator data is in memory; NATS stores go here)
	Out     io.Writer
	JSON    string // where to write the JSON results ("" = nowhere)
	Logger  *slog.Logger
	Scales  []Scale
	Latency []string // names of the scales that also run the REDCap-like regime
	// SlowSites names the scales that also run the slow-sites regime.
	SlowSites []string
	Keep      bool // keep Dir
	// Parallel is passed to relay all's --parallel (0 = its default).
	Parallel int
	// SyncInterval is the embedded server's nats.sync_interval ("" = 2m).
	SyncInterval string
}

// Report is everything one run measured.
type Report struct {
	Machine  Machine       `json:"machine"`
	Started  time.Time     `json:"started"`
	Duration time.Duration `json:"duration_ns"`
	Mode     string        `json:"mode"`
	Models   []Model       `json:"models"`
	Net      NetOptions    `json:"network"`
	Results  []Result      `json:"results"`
	Targets  []Target      `json:"targets"`
}

// Machine describes where it ran.
type Machine struct {
	CPU   string `json:"cpu"`
	Cores int    `json:"cores"`
	MemMB int64  `json:"mem_mb"`
	OS    string `json:"os"`
	Go    string `json:"go"`
}

// Result is one scale in one regime.
type Result struct {
	Scale        Scale             `json:"scale"`
	Regime       string            `json:"regime"`
	Seed         time.Duration     `json:"seed_ns,omitempty"`
	JetStream    *JetStreamCeiling `json:"jetstream,omitempty"`
	Baseline     BaselineResult    `json:"baseline"`
	Full         SyncResult        `json:"relay_full"`
	None         SyncResult        `json:"relay_incremental_none"`
	Changed      SyncResult        `json:"relay_incremental_1pct"`
	ChangedCount int               `json:"records_changed"`
	RelayRSS     int64             `json:"relay_peak_rss_bytes"` // after every sync of this result
	RelayCPU     time.Duration     `json:"relay_cpu_ns"`
	// FullCPU is relay all's CPU time during the full sync alone.
	FullCPU time.Duration `json:"relay_full_cpu_ns"`
	// Bound and BaselineBound are the destination's capacity bound for
	// what the full sync and the baseline sent (regimes with latency).
	Bound         *Bound `json:"destination_bound,omitempty"`
	BaselineBound *Bound `json:"baseline_destination_bound,omitempty"`
}

// cpuPerRecord is µs of CPU per record (0 when not measured).
func cpuPerRecord(d time.Duration, records int) float64 {
	if records <= 0 {
		return 0
	}
	return float64(d.Microseconds()) / float64(records)
}

// Target is one of issue #7's targets, checked.
type Target struct {
	Name string `json:"name"`
	Want string `json:"want"`
	Got  string `json:"got"`
	OK   bool   `json:"ok"`
}

// Run runs every scale and regime and reports.
func Run(ctx context.Context, o Options) (*Report, error) {
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Scales == nil {
		if o.Quick {
			o.Scales = []Scale{{Name: "3x2k", Sites: 3, Records: 2000}}
			o.Latency = []string{"3x2k"}
			o.SlowSites = []string{"3x2k"}
		} else {
			o.Scales = []Scale{{Name: "3x20k", Sites: 3, Records: 20000}, {Name: "3x100k", Sites: 3, Records: 100000}}
			o.Latency = []string{"3x20k", "3x100k"}
			o.SlowSites = []string{"3x20k"}
		}
	}
	if o.Dir == "" {
		d, err := os.MkdirTemp("", "relay-bench-")
		if err != nil {
			return nil, err
		}
		o.Dir = d
	}
	if !o.Keep {
		defer os.RemoveAll(o.Dir)
	}
	rep := &Report{Machine: machine(), Started: time.Now().UTC(), Mode: map[bool]string{true: "quick", false: "full"}[o.Quick],
		Models: []Model{ZeroLatency, REDCapLike, SlowSites.Site}, Net: DefaultNet}
	rep.Net.SyncInterval = o.SyncInterval
	progress := func(format string, a ...any) { fmt.Fprintf(os.Stderr, "bench: "+format+"\n", a...) }
	for _, sc := range o.Scales {
		progress("%s: seeding %d sites x %d records", sc.Name, sc.Sites, sc.Records)
		t := time.Now()
		env, err := NewEnv(filepath.Join(o.Dir, sc.Name), sc, o.Logger)
		if err != nil {
			return rep, err
		}
		seeded := time.Since(t)
		regimes := []Regime{Same(ZeroLatency)}
		for _, n := range o.Latency {
			if n == sc.Name {
				regimes = append(regimes, Same(REDCapLike))
			}
		}
		for _, n := range o.SlowSites {
			if n == sc.Name {
				regimes = append(regimes, SlowSites)
			}
		}
		for i, m := range regimes {
			r := Result{Scale: sc, Regime: m.Name}
			if i == 0 {
				r.Seed = seeded
				progress("%s: JetStream ceiling", sc.Name)
				js, err := jetStreamCeiling(ctx, env, filepath.Join(o.Dir, sc.Name, "ceiling"))
				if err != nil {
					env.Close()
					return rep, fmt.Errorf("%s: JetStream ceiling: %w", sc.Name, err)
				}
				r.JetStream = &js
			}
			env.SetRegime(m)
			if err := runRegime(ctx, o, env, m, &r, progress); err != nil {
				env.Close()
				return rep, fmt.Errorf("%s, %s: %w", sc.Name, m.Name, err)
			}
			rep.Results = append(rep.Results, r)
		}
		env.Close()
	}
	rep.Duration = time.Since(rep.Started)
	rep.Targets = targets(rep)
	WriteMarkdown(o.Out, rep)
	if o.JSON != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(o.JSON, append(b, '\n'), 0o644); err != nil {
			return rep, err
		}
	}
	return rep, nil
}

func jetStreamCeiling(ctx context.Context, env *Env, dir string) (JetStreamCeiling, error) {
	sample, err := env.SampleMessages(ctx, 2000)
	if err != nil {
		return JetStreamCeiling{}, err
	}
	defer os.RemoveAll(dir)
	return MeasureJetStream(ctx, dir, sample, min(env.Scale.Total(), 100000))
}

func runRegime(ctx context.Context, o Options, env *Env, rg Regime, r *Result, progress func(string, ...any)) error {
	tag := strings.ReplaceAll(strings.ToLower(r.Regime), " ", "-")
	progress("%s, %s: baseline", env.Scale.Name, r.Regime)
	br, err := env.NewRun("baseline-"+tag, DefaultNet)
	if err != nil {
		return err
	}
	i0, v0 := env.Imports()
	if r.Baseline, err = runBaseline(ctx, o, br); err != nil {
		return fmt.Errorf("baseline: %w", err)
	}
	i1, v1 := env.Imports()
	r.BaselineBound = boundOf(rg.Dest, v1-v0, i1-i0)
	if n, err := env.DestRecords(ctx, br.DestPID); err != nil || n != env.Scale.Total() {
		return fmt.Errorf("baseline: the destination holds %d records, want %d (%v)", n, env.Scale.Total(), err)
	}

	progress("%s, %s: relay full sync", env.Scale.Name, r.Regime)
	net := DefaultNet
	net.SyncInterval = o.SyncInterval
	rr, err := env.NewRun("relay-"+tag, net)
	if err != nil {
		return err
	}
	// Changed-since has a 1 s overlap and second resolution: keep the seed
	// (or the last change) out of the next run's window.
	time.Sleep(1100 * time.Millisecond)
	p, err := StartPipeline(ctx, env, rr, o.Exe, o.Parallel, o.Logger)
	if err != nil {
		return err
	}
	defer p.Stop()
	timeout := 30 * time.Minute
	_, cpu0 := p.Usage()
	i0, v0 = env.Imports()
	if r.Full, err = p.Sync(ctx, true, timeout); err != nil {
		return fmt.Errorf("relay full sync: %w", err)
	}
	_, cpu1 := p.Usage()
	r.FullCPU = cpu1 - cpu0
	i1, v1 = env.Imports()
	r.Bound = boundOf(rg.Dest, v1-v0, i1-i0)
	if r.Full.Imported != env.Scale.Total() {
		return fmt.Errorf("relay: the destination holds %d records, want %d", r.Full.Imported, env.Scale.Total())
	}
	time.Sleep(1100 * time.Millisecond)
	progress("%s, %s: relay incremental, nothing changed", env.Scale.Name, r.Regime)
	if r.None, err = p.Sync(ctx, false, timeout); err != nil {
		return fmt.Errorf("relay incremental sync: %w", err)
	}
	progress("%s, %s: relay incremental, 1%% changed", env.Scale.Name, r.Regime)
	if r.ChangedCount, err = env.Touch(0.01, r.Regime); err != nil {
		return err
	}
	time.Sleep(1100 * time.Millisecond)
	if r.Changed, err = p.Sync(ctx, false, timeout); err != nil {
		return fmt.Errorf("relay incremental sync: %w", err)
	}
	r.RelayRSS, r.RelayCPU = p.Usage()
	return nil
}

// runBaseline runs the baseline in a child process (`relay bench
// baseline`), or here without Exe.
func runBaseline(ctx context.Context, o Options, run *RunSetup) (BaselineResult, error) {
	if o.Exe == "" {
		net, err := config.Load(run.NetworkFile)
		if err != nil {
			return BaselineResult{}, err
		}
		return Baseline(ctx, net)
	}
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, o.Exe, "bench", "baseline", "--network", run.NetworkFile)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return BaselineResult{}, fmt.Errorf("%v: %s", err, strings.TrimSpace(errb.String()))
	}
	var res BaselineResult
	if err := json.Unmarshal(out.Bytes(), &res); err != nil {
		return res, fmt.Errorf("baseline child: %w", err)
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		res.PeakRSS = ru.Maxrss << 10
		res.CPU = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	return res, nil
}

// Touch changes one value in frac of every site's records (spread evenly)
// and returns how many records changed.
func (e *Env) Touch(frac float64, salt string) (int, error) {
	every := max(1, int(1/frac))
	total := 0
	v := 30 + len(salt)%100
	for _, s := range e.Sites {
		var rows []messages.Row
		for id := every; id <= e.Scale.Records; id += every {
			rows = append(rows, messages.Row{"record_id": strconv.Itoa(id), "redcap_event_name": "baseline_arm_1", "weight": fmt.Sprintf("%d.%d", v, id%10)})
		}
		if err := e.Sim.ImportRows(s.PID, rows, false); err != nil {
			return total, fmt.Errorf("site %s: change records: %w", s.ID, err)
		}
		total += len(rows)
	}
	return total, nil
}

func machine() Machine {
	m := Machine{Cores: runtime.NumCPU(), OS: runtime.GOOS + "/" + runtime.GOARCH, Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				m.MemMB = kb >> 10
			}
		}
	}
	return m
}
