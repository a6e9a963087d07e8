package e2e

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/pipeline/app"
	"github.com/redcap-relay/relay/services/internal/pipeline/broker"
	"github.com/redcap-relay/relay/services/internal/pipeline/exportreq"
)

// natsCluster is three embedded nats-server nodes routed to each other on
// loopback, each with its own store, on fixed ports so a node restarts
// where the clients and the other nodes look for it.
type natsCluster struct {
	t     *testing.T
	opts  []broker.EmbeddedOptions
	nodes []*server.Server
}

func freePort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func startCluster(t *testing.T, dir string) *natsCluster {
	c := &natsCluster{t: t}
	var routes []string
	var cports, ports []int
	for i := 0; i < 3; i++ {
		ports, cports = append(ports, freePort(t)), append(cports, freePort(t))
		routes = append(routes, fmt.Sprintf("127.0.0.1:%d", cports[i]))
	}
	for i := 0; i < 3; i++ {
		c.opts = append(c.opts, broker.EmbeddedOptions{StoreDir: filepath.Join(dir, fmt.Sprintf("n%d", i+1)), Port: ports[i],
			ServerName: fmt.Sprintf("n%d", i+1), ClusterName: "relay-e2e", ClusterListen: fmt.Sprintf("127.0.0.1:%d", cports[i]), Routes: routes})
		c.nodes = append(c.nodes, nil)
		c.start(i)
	}
	t.Cleanup(func() {
		for i := range c.nodes {
			c.stop(i)
		}
	})
	// JetStream is usable once the nodes elected a meta leader.
	deadline := time.Now().Add(30 * time.Second)
	for !c.metaLeader() {
		if time.Now().After(deadline) {
			t.Fatal("the three nodes elected no JetStream meta leader within 30s")
		}
		time.Sleep(100 * time.Millisecond)
	}
	return c
}

func (c *natsCluster) start(i int) {
	s, err := broker.StartEmbedded(c.opts[i])
	if err != nil {
		c.t.Fatalf("node %s: %v", c.opts[i].ServerName, err)
	}
	c.nodes[i] = s
}

func (c *natsCluster) stop(i int) {
	if s := c.nodes[i]; s != nil {
		s.Shutdown()
		s.WaitForShutdown()
		c.nodes[i] = nil
	}
}

func (c *natsCluster) metaLeader() bool {
	for _, s := range c.nodes {
		if s != nil && s.JetStreamIsLeader() {
			return true
		}
	}
	return false
}

func (c *natsCluster) urls() string {
	var u []string
	for _, o := range c.opts {
		u = append(u, fmt.Sprintf("nats://127.0.0.1:%d", o.Port))
	}
	return strings.Join(u, ",")
}

func (c *natsCluster) index(name string) int {
	for i, o := range c.opts {
		if o.ServerName == name {
			return i
		}
	}
	c.t.Fatalf("no node named %q", name)
	return -1
}

// The pipeline on a three-node JetStream cluster with R3 streams: the
// stream leader of RECORDS_CLEAN is shut down mid-run, comes back, then a
// second node restarts; the services (given all three URLs) ride out the
// elections, and the destination ends equal to the sites with the DLQ empty.
func TestClusterRidesOutLeaderLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("a three-node cluster sync with node restarts (~30 s)")
	}
	start := time.Now()
	sites := []string{"alpha", "beta", "gamma"}
	const perSite = 400
	n := newNet(t, netOpts{sites: sites, records: perSite, batchSize: 20, importBatch: 20, streamsExtra: "  replicas: 3\n"})
	cl := startCluster(t, filepath.Join(n.dir, "cluster"))
	n.writeNetwork(cl.urls())
	log, w := testLogger(t)
	n.logs = w
	st, err := app.Start(context.Background(), app.Options{Network: n.network, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	n.stack = st
	t.Cleanup(n.stop)
	ctx := context.Background()
	if info := streamInfo(t, n, messages.StreamRecordsClean); info.Config.Replicas != 3 {
		t.Fatalf("RECORDS_CLEAN has %d replicas, want 3", info.Config.Replicas)
	}

	// Every leader election of a stream or consumer, as the servers announce it.
	var elections atomic.Int64
	sub, err := n.stack.NC.Subscribe("$JS.EVENT.ADVISORY.*.LEADER_ELECTED.>", func(*nats.Msg) { elections.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	setup := elections.Load()

	n.runServices(pipeline...)
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	runs := map[string]string{}
	for _, s := range sites {
		req := exportreq.New(s, at, true, "test")
		if err := exportreq.Publish(ctx, n.stack.JS, req); err != nil {
			t.Fatal(err)
		}
		runs[s] = req.RunID
	}
	syncStart := time.Now()

	// Mid-run: once the destination holds some records but not all, shut
	// down RECORDS_CLEAN's stream leader.
	waitFor(t, 2*time.Minute, "the first imports", func() bool {
		return destCount(n) > 0
	})
	imported := destCount(n)
	leader := streamLeader(t, n, messages.StreamRecordsClean)
	killed := cl.index(leader)
	cl.stop(killed)
	t.Logf("shut down %s, RECORDS_CLEAN's stream leader, with %d of %d records at the destination", leader, imported, perSite*len(sites))
	waitFor(t, 30*time.Second, "a new RECORDS_CLEAN leader", func() bool {
		l := streamLeaderOrEmpty(n, messages.StreamRecordsClean)
		return l != "" && l != leader
	})
	time.Sleep(2 * time.Second)
	cl.start(killed)
	// Later, a second node restarts (the one the stream leads on now).
	time.Sleep(2 * time.Second)
	second := cl.index(streamLeader(t, n, messages.StreamRecordsClean))
	cl.stop(second)
	time.Sleep(time.Second)
	cl.start(second)
	t.Logf("restarted %s, then %s", leader, cl.opts[second].ServerName)

	failed := waitExported(t, n, runs, 4*time.Minute)
	n.assertEqual(n.expected())
	if d := n.dlqTotal(); d != 0 {
		t.Errorf("DLQ holds %d, want 0", d)
	}
	total := destCount(n)
	t.Logf("cluster figures: %d records (3 sites x %d) at the destination, sync %s (whole test %s), %d leader elections after the setup's %d, %d runs failed and were redone",
		total, perSite, time.Since(syncStart).Round(time.Millisecond), time.Since(start).Round(time.Millisecond), elections.Load()-setup, setup, failed)
}

// waitExported waits until every run exported and the pipeline drained; a run
// that failed on the way (an election) is redelivered and counted.
func waitExported(t *testing.T, n *testNet, runs map[string]string, timeout time.Duration) int {
	t.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(timeout)
	failed := map[string]bool{}
	for time.Now().Before(deadline) {
		done := 0
		for s, run := range runs {
			var ev messages.RunEvent
			if broker.LastJSON(ctx, n.stack.JS, messages.StreamAudit, messages.RunSubject(s), &ev) && ev.RunID == run {
				switch ev.Phase {
				case messages.PhaseExported:
					done++
				case messages.PhaseFailed:
					if !failed[s+ev.At.String()] {
						t.Logf("run %s failed on the way (%s); it is redone", run, ev.Error)
					}
					failed[s+ev.At.String()] = true
				}
			}
		}
		if done == len(runs) && broker.Drained(ctx, n.stack.JS) {
			return len(failed)
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("runs %v did not all export and drain within %s", runs, timeout)
	return 0
}

func destCount(n *testNet) int {
	rows, err := n.sim.ExportRows(n.dest)
	if err != nil {
		return 0
	}
	ids := map[string]bool{}
	for _, r := range rows {
		ids[r["record_id"]] = true
	}
	return len(ids)
}

func streamInfo(t *testing.T, n *testNet, name string) *jetstream.StreamInfo {
	t.Helper()
	var last error
	for i := 0; i < 50; i++ {
		st, err := n.stack.JS.Stream(context.Background(), name)
		if err == nil {
			info, err := st.Info(context.Background())
			if err == nil {
				return info
			}
			last = err
		} else {
			last = err
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("stream %s: %v", name, last)
	return nil
}

func streamLeaderOrEmpty(n *testNet, name string) string {
	st, err := n.stack.JS.Stream(context.Background(), name)
	if err != nil {
		return ""
	}
	info, err := st.Info(context.Background())
	if err != nil || info.Cluster == nil {
		return ""
	}
	return info.Cluster.Leader
}

func streamLeader(t *testing.T, n *testNet, name string) string {
	t.Helper()
	var l string
	waitFor(t, 30*time.Second, "a leader of "+name, func() bool {
		l = streamLeaderOrEmpty(n, name)
		return l != ""
	})
	return l
}
