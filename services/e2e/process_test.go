package e2e

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redcap-relay/relay/services/internal/app"
	"github.com/redcap-relay/relay/services/internal/broker"
	"github.com/redcap-relay/relay/services/internal/redcapsim/faults"
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
		timing: broker.Timing{ExportAckWait: 2 * time.Minute, TransformAckWait: 6 * time.Second, ImportAckWait: 6 * time.Second, CheckAckWait: time.Minute}})
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
		timing: broker.Timing{ExportAckWait: time.Minute, TransformAckWait: 6 * time.Second, ImportAckWait: 6 * time.Second, CheckAckWait: time.Minute}})
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
