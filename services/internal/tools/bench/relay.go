package bench

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/pipeline/app"
	"github.com/redcap-relay/relay/services/internal/pipeline/broker"
	"github.com/redcap-relay/relay/services/internal/pipeline/exportreq"
	"github.com/redcap-relay/relay/services/internal/pipeline/topology"
)

// Pipeline is REDCap Relay running against one Run: `relay all` as a child
// process (exe set), or the exporter, transformer and importer in this
// process (exe empty; used by go test).
type Pipeline struct {
	env   *Env
	run   *RunSetup
	net   *config.Network
	cmd   *exec.Cmd
	exit  chan error
	stack *app.Stack
	stop  context.CancelFunc
	nc    *nats.Conn
	js    jetstream.JetStream
	tick  time.Time
}

// StartPipeline starts the pipeline and waits until it is provisioned.
func StartPipeline(ctx context.Context, env *Env, run *RunSetup, exe string, parallel int, log *slog.Logger) (*Pipeline, error) {
	net, err := config.Load(run.NetworkFile)
	if err != nil {
		return nil, err
	}
	p := &Pipeline{env: env, run: run, net: net}
	if exe == "" {
		st, err := app.Start(ctx, app.Options{Network: net, Embedded: true, DataDir: run.DataDir, NATSPort: -1, Logger: log, TransformerParallel: parallel})
		if err != nil {
			return nil, err
		}
		p.stack, p.js = st, st.JS
		rctx, cancel := context.WithCancel(context.Background())
		p.stop = cancel
		p.exit = make(chan error, 1)
		go func() { p.exit <- st.Run(rctx, app.Exporter, app.Transformer, app.Importer) }()
		return p, nil
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(filepath.Dir(run.NetworkFile), "relay.log"))
	if err != nil {
		return nil, err
	}
	args := []string{"all", "--network", run.NetworkFile, "--data", run.DataDir, "--nats-port", strconv.Itoa(port), "--log-level", "warn"}
	if parallel > 0 {
		args = append(args, "--parallel", strconv.Itoa(parallel))
	}
	p.cmd = exec.Command(exe, args...)
	p.cmd.Stdout, p.cmd.Stderr = logf, logf
	if err := p.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s all: %w", exe, err)
	}
	p.exit = make(chan error, 1)
	go func() { p.exit <- p.cmd.Wait(); logf.Close() }()
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	// Stop waiting for the server as soon as the child dies.
	go func() {
		select {
		case err := <-p.exit:
			p.exit <- err
			cancel()
		case <-cctx.Done():
		}
	}()
	p.nc, err = broker.Connect(cctx, fmt.Sprintf("nats://127.0.0.1:%d", port), broker.ConnectOptions{Name: "bench", Logger: log})
	if err != nil {
		p.Stop()
		return nil, fmt.Errorf("%w; see %s", err, logf.Name())
	}
	if p.js, err = broker.JetStream(p.nc); err != nil {
		p.Stop()
		return nil, err
	}
	// relay all provisions at start-up: wait for the importer's consumer.
	for {
		if _, err := p.js.Consumer(cctx, topology.Import.Stream, topology.Import.Consumer); err == nil {
			break
		}
		select {
		case err := <-p.exit:
			p.exit <- err
			p.Stop()
			return nil, fmt.Errorf("relay all exited at start-up (%v); see %s", err, logf.Name())
		case <-cctx.Done():
			p.Stop()
			return nil, fmt.Errorf("relay all was not provisioned within a minute; see %s", logf.Name())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return p, nil
}

// SyncResult is one sync of every site, from the requests to drained.
type SyncResult struct {
	Full         bool          `json:"full"`
	Wall         time.Duration `json:"wall_ns"`
	Exported     int           `json:"records_published"` // records the exporters published
	Unchanged    int           `json:"records_unchanged"`
	RawMessages  uint64        `json:"raw_messages"` // RECORDS_RAW growth
	SiteCalls    int64         `json:"site_calls"`
	MaxSiteCalls int           `json:"max_calls_per_site"`
	DestCalls    int64         `json:"destination_calls"`
	Imported     int           `json:"destination_records"`
	// When each stage was last seen busy, from the requests: where the
	// time goes.
	ExportDone    time.Duration `json:"exported_ns"`
	TransformDone time.Duration `json:"transformed_ns"`
	Failed        []string      `json:"failed,omitempty"`
}

// Sync requests a run of every site and waits until each finished and the
// pipeline drained.
func (p *Pipeline) Sync(ctx context.Context, full bool, timeout time.Duration) (SyncResult, error) {
	res := SyncResult{Full: full}
	// Run IDs are per second: a new tick for every sync.
	now := time.Now().Truncate(time.Second)
	if !now.After(p.tick) {
		time.Sleep(time.Until(p.tick.Add(time.Second)))
		now = p.tick.Add(time.Second)
	}
	p.tick = now
	raw0 := p.streamMsgs(ctx, messages.StreamRecordsRaw)
	s0, d0 := p.env.Calls()
	start := time.Now()
	runs := map[string]string{}
	for _, s := range p.net.Sites {
		req := exportreq.New(s.ID, now, full, "bench")
		if err := exportreq.Publish(ctx, p.js, req); err != nil {
			return res, err
		}
		runs[s.ID] = req.RunID
	}
	deadline := time.Now().Add(timeout)
	events := map[string]messages.RunEvent{}
	for {
		for site, run := range runs {
			if _, ok := events[site]; ok {
				continue
			}
			var ev messages.RunEvent
			if broker.LastJSON(ctx, p.js, messages.StreamAudit, messages.RunSubject(site), &ev) && ev.RunID == run &&
				(ev.Phase == messages.PhaseExported || ev.Phase == messages.PhaseFailed) {
				events[site] = ev
			}
		}
		if len(events) == len(runs) && res.ExportDone == 0 {
			res.ExportDone = time.Since(start)
		}
		if n, err := broker.Backlog(ctx, p.js, topology.Transform); err == nil && n > 0 {
			res.TransformDone = time.Since(start)
		}
		if len(events) == len(runs) && broker.Drained(ctx, p.js) {
			break
		}
		select {
		case err := <-p.exit:
			p.exit <- err
			return res, fmt.Errorf("the pipeline stopped during the sync: %v", err)
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return res, fmt.Errorf("sync did not finish within %s (%d of %d sites exported)", timeout, len(events), len(runs))
		}
	}
	res.Wall = time.Since(start)
	s1, d1 := p.env.Calls()
	res.SiteCalls, res.DestCalls = s1-s0, d1-d0
	for site, ev := range events {
		res.Exported += ev.Exported
		res.Unchanged += ev.Unchanged
		res.MaxSiteCalls = max(res.MaxSiteCalls, ev.Calls)
		if ev.Phase == messages.PhaseFailed {
			res.Failed = append(res.Failed, site+": "+ev.Error)
		}
	}
	res.RawMessages = p.streamMsgs(ctx, messages.StreamRecordsRaw) - raw0
	n, err := p.env.DestRecords(ctx, p.run.DestPID)
	if err != nil {
		return res, err
	}
	res.Imported = n
	if len(res.Failed) > 0 {
		return res, fmt.Errorf("runs failed: %s", strings.Join(res.Failed, "; "))
	}
	return res, nil
}

func (p *Pipeline) streamMsgs(ctx context.Context, name string) uint64 {
	st, err := p.js.Stream(ctx, name)
	if err != nil {
		return 0
	}
	info, err := st.Info(ctx)
	if err != nil {
		return 0
	}
	return info.State.Msgs
}

// Usage is the child process's peak RSS and CPU time so far (zero when the
// pipeline runs in this process).
func (p *Pipeline) Usage() (peakRSS int64, cpu time.Duration) {
	if p.cmd == nil || p.cmd.Process == nil {
		return 0, 0
	}
	return procUsage(p.cmd.Process.Pid)
}

// Stop ends the pipeline (SIGTERM, then SIGKILL after 30 s).
func (p *Pipeline) Stop() {
	if p.nc != nil {
		p.nc.Close()
	}
	if p.stack != nil {
		p.stop()
		<-p.exit
		p.stack.Close()
		return
	}
	if p.cmd != nil && p.cmd.Process != nil {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.exit:
		case <-time.After(30 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.exit
		}
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// procUsage reads VmHWM (peak resident set) from /proc/<pid>/status and
// utime+stime from /proc/<pid>/stat.
func procUsage(pid int) (int64, time.Duration) {
	var rss int64
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
				kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				rss = kb << 10
			}
		}
	}
	var cpu time.Duration
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		// Fields after the command name (which may hold spaces) start at ')'.
		if i := strings.LastIndexByte(string(b), ')'); i > 0 {
			f := strings.Fields(string(b)[i+1:])
			if len(f) > 13 {
				u, _ := strconv.ParseInt(f[11], 10, 64)
				s, _ := strconv.ParseInt(f[12], 10, 64)
				cpu = time.Duration(u+s) * (time.Second / 100) // USER_HZ is 100 on Linux
			}
		}
	}
	return rss, cpu
}

// SelfUsage is this process's own peak RSS and CPU time.
func SelfUsage() (int64, time.Duration) { return procUsage(os.Getpid()) }
