package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/pipeline/app"
	"github.com/redcap-relay/relay/services/internal/pipeline/broker"
	"github.com/redcap-relay/relay/services/internal/pipeline/exportreq"
	"github.com/redcap-relay/relay/services/internal/pipeline/topology"
	"github.com/redcap-relay/relay/services/internal/tools/redcapsim/faults"
)

var (
	buildOnce sync.Once
	relayBin  string
	buildErr  error
)

// relayBinary builds the relay command once per test run, so scenarios can
// run services as separate processes and SIGKILL them.
func relayBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "relay-e2e-bin-")
		if err != nil {
			buildErr = err
			return
		}
		relayBin = filepath.Join(dir, "relay")
		out, err := exec.Command("go", "build", "-o", relayBin, "github.com/redcap-relay/relay/services/cmd/relay").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return relayBin
}

// proc is a service running as its own process.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *bytes.Buffer
}

func (n *testNet) spawn(t *testing.T, service string) *proc {
	t.Helper()
	return n.spawnWith(t, service, nil)
}

func (n *testNet) spawnWith(t *testing.T, service string, extra []string) *proc {
	t.Helper()
	var out bytes.Buffer
	args := append([]string{service, "-n", filepath.Join(n.dir, "network.yaml"), "--log-level", "warn"}, extra...)
	cmd := exec.Command(relayBinary(t), args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{name: service, cmd: cmd, out: &out}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Signal(syscall.SIGTERM)
			done := make(chan struct{})
			go func() { cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				cmd.Process.Kill()
			}
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", service, out.String())
		}
	})
	return p
}

func (p *proc) kill(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	p.cmd.Wait()
	t.Logf("SIGKILL %s (pid %d)", p.name, p.cmd.Process.Pid)
}

// The importer and one of two transformers, each a separate process, are
// killed with SIGKILL mid-run and started again: the destination ends equal
// to transform(site data), nothing is dead-lettered.
func TestSIGKILLImporterAndTransformer(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the relay binary; skipped with -short")
	}
	n := newNet(t, netOpts{sites: []string{"alpha", "beta"}, records: 300, batchSize: 25, importBatch: 10,
		timing: timing{ExportAckWait: 2 * time.Minute, TransformAckWait: 6 * time.Second, ImportAckWait: 6 * time.Second, CheckAckWait: time.Minute}})
	// A slow destination keeps the import running long enough to be killed mid-way.
	if err := n.faults.Set(n.dest, faults.Faults{Latency: faults.Duration(150 * time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	n.start() // the NATS server only
	n.writeNetwork(n.stack.URL)
	n.runServices(app.Exporter)
	t1 := n.spawn(t, app.Transformer)
	n.spawn(t, app.Transformer)
	imp := n.spawn(t, app.Importer)

	runs := map[string]string{"alpha": requestRun(t, n, "alpha", time.Now()), "beta": requestRun(t, n, "beta", time.Now())}
	waitFor(t, time.Minute, "the first records at the destination", func() bool { return len(n.destination()) >= 40 })
	imp.kill(t)
	t1.kill(t)
	mid := len(n.destination())
	if mid >= 600 {
		t.Fatalf("the run was over before the kill (%d records imported); slow the destination down", mid)
	}
	t.Logf("killed with %d of 600 records imported", mid)
	n.spawn(t, app.Importer)
	n.spawn(t, app.Transformer)
	n.waitRuns(runs, 3*time.Minute)
	n.assertEqual(n.expected())
	if d := n.dlqTotal(); d != 0 {
		t.Errorf("DLQ holds %d after the kills, want 0", d)
	}
}

// The NATS server is stopped mid-run and started again on the same port
// and store: services reconnect and nothing is lost.
func TestNATSRestartMidRun(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	n := newNet(t, netOpts{sites: []string{"alpha", "beta"}, records: 200, importBatch: 10, natsPort: port,
		timing: timing{ExportAckWait: time.Minute, TransformAckWait: 6 * time.Second, ImportAckWait: 6 * time.Second, CheckAckWait: time.Minute}})
	if err := n.faults.Set(n.dest, faults.Faults{Latency: faults.Duration(100 * time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	n.start(pipeline...)
	runs := map[string]string{"alpha": requestRun(t, n, "alpha", time.Now()), "beta": requestRun(t, n, "beta", time.Now())}
	waitFor(t, time.Minute, "the first records at the destination", func() bool { return len(n.destination()) >= 30 })

	storeDir := filepath.Join(n.dir, "nats", "jetstream")
	n.stack.Server.Shutdown()
	n.stack.Server.WaitForShutdown()
	t.Logf("NATS stopped with %d of 400 records imported", len(n.destination()))
	time.Sleep(2 * time.Second)
	srv, err := broker.StartEmbedded(broker.EmbeddedOptions{StoreDir: storeDir, Port: port})
	if err != nil {
		t.Fatal(err)
	}
	n.stack.Server = srv
	waitFor(t, 30*time.Second, "the services to reconnect", func() bool { return n.stack.NC.IsConnected() })
	n.waitRuns(runs, 3*time.Minute)
	n.assertEqual(n.expected())
	if d := n.dlqTotal(); d != 0 {
		t.Errorf("DLQ holds %d after the NATS restart, want 0", d)
	}
}

// An export run lasting several export_ack_waits stays with its exporter
// (heartbeats), and a SIGKILLed exporter's run is taken over by another
// exporter process about one export_ack_wait later, not at the end of the
// run timeout.
func TestCrashedExporterRunIsTakenOver(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the relay binary; skipped with -short")
	}
	const ackWait = 2 * time.Second
	n := newNet(t, netOpts{sites: []string{"alpha"}, records: 120, batchSize: 10,
		timing: timing{ExportAckWait: ackWait, TransformAckWait: 6 * time.Second, ImportAckWait: 6 * time.Second, CheckAckWait: time.Minute}})
	// 12 batches, 2 at a time, 600 ms each, plus the metadata calls: a run
	// of about 6 s, three ack waits.
	if err := n.faults.Set(n.sites["alpha"], faults.Faults{Latency: faults.Duration(600 * time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	n.start(app.Transformer, app.Importer)
	n.writeNetwork(n.stack.URL)
	exp := n.spawn(t, app.Exporter)
	deliveries := func() uint64 {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		st, err := n.stack.JS.Stream(ctx, messages.StreamExportRequests)
		if err != nil {
			t.Fatal(err)
		}
		c, err := st.PushConsumer(ctx, topology.Export.Consumer)
		if err != nil {
			t.Fatal(err)
		}
		return c.CachedInfo().Delivered.Consumer
	}

	start := time.Now()
	ev := n.waitRuns(map[string]string{"alpha": requestRun(t, n, "alpha", start)}, time.Minute)["alpha"]
	took := time.Since(start)
	if ev.Phase != messages.PhaseExported {
		t.Fatalf("first run: phase %s (%s)", ev.Phase, ev.Error)
	}
	if took < 2*ackWait {
		t.Fatalf("the run took %s, not longer than two ack waits (%s): slow the site down", took, ackWait)
	}
	if d := deliveries(); d != 1 {
		t.Fatalf("a %s run was delivered %d times, want once: the heartbeat did not hold it", took.Round(time.Millisecond), d)
	}
	t.Logf("a %s run (%.1f ack waits) was delivered once", took.Round(time.Millisecond), took.Seconds()/ackWait.Seconds())

	// Second run: kill the exporter once the run has started, start another.
	req := exportreq.New("alpha", time.Now().Add(time.Minute), true, "test") // full: as long as the first
	if err := exportreq.Publish(context.Background(), n.stack.JS, req); err != nil {
		t.Fatal(err)
	}
	run := req.RunID
	waitFor(t, 30*time.Second, "the second run to start", func() bool {
		var ev messages.RunEvent
		return broker.LastJSON(context.Background(), n.stack.JS, messages.StreamAudit, messages.RunSubject("alpha"), &ev) &&
			ev.RunID == run && ev.Phase == messages.PhaseStarted
	})
	time.Sleep(time.Second)
	exp.kill(t)
	killed := time.Now()
	n.spawn(t, app.Exporter)
	ev = n.waitRuns(map[string]string{"alpha": run}, time.Minute)["alpha"]
	if ev.Phase != messages.PhaseExported {
		t.Fatalf("second run: phase %s (%s)", ev.Phase, ev.Error)
	}
	t.Logf("the killed exporter's run finished %s after the kill", time.Since(killed).Round(time.Millisecond))
	if d := deliveries(); d != 3 {
		t.Errorf("deliveries = %d, want 3 (run 1 once, run 2 to the killed exporter and to its successor)", d)
	}
	n.assertEqual(n.expected())
	if d := n.dlqTotal(); d != 0 {
		t.Errorf("DLQ holds %d, want 0", d)
	}
}

// The NATS server loses RECORDS_RAW (its crash recovery can fail to load a
// stream) while a finished run's records still wait there for the
// transformers. The exporter says what to do, and the runbook it names
// (relay provision, then a full sync) brings the destination back equal:
// the records lost with the stream are published again although the
// known-record set says they were sent.
func TestLostStreamRecoversWithProvisionAndFullSync(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the relay binary; skipped with -short")
	}
	n := newNet(t, netOpts{sites: []string{"alpha", "beta"}, records: 100})
	n.start(app.Exporter, app.Importer) // no transformer yet: the runs' records wait in RECORDS_RAW
	n.writeNetwork(n.stack.URL)
	start := time.Now()
	requestRun(t, n, "alpha", start)
	requestRun(t, n, "beta", start)
	waitFor(t, time.Minute, "both runs exported", func() bool { return n.rawCount("alpha") == 100 && n.rawCount("beta") == 100 })

	ctx := context.Background()
	if err := n.stack.JS.DeleteStream(ctx, messages.StreamRecordsRaw); err != nil {
		t.Fatal(err)
	}
	run := requestRun(t, n, "alpha", start.Add(time.Minute))
	waitFor(t, time.Minute, "the exporter to name the remedy", func() bool {
		return strings.Contains(n.logs.String(), "run `relay provision`, then `relay sync --all --full`")
	})

	if err := broker.Provision(ctx, n.stack.JS, n.network.Streams); err != nil {
		t.Fatal(err)
	}
	n.spawn(t, app.Transformer)
	n.waitRuns(map[string]string{"alpha": run}, time.Minute)
	n.sync(true, start.Add(2*time.Minute))
	n.assertEqual(n.expected())
	if d := n.dlqTotal(); d != 0 {
		t.Errorf("DLQ holds %d, want 0", d)
	}
}
