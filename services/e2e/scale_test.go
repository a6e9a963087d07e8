package e2e

import (
	"bufio"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redcap-relay/relay/services/internal/pipeline/app"
)

// Three transformer processes share one durable through their queue group:
// together they clean every exported record exactly once, and each takes a
// share of the work.
func TestTransformersScaleWithoutDuplicates(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the relay binary; skipped with -short")
	}
	n := newNet(t, netOpts{sites: []string{"alpha", "beta"}, records: 300})
	n.start()
	n.writeNetwork(n.stack.URL)
	var metrics []string
	for i := 0; i < 3; i++ {
		addr := freeAddr(t)
		metrics = append(metrics, addr)
		n.spawnArgs(t, app.Transformer, "--metrics", addr)
	}
	for _, addr := range metrics {
		waitFor(t, 30*time.Second, "transformer "+addr+" to serve /readyz", func() bool {
			r, err := http.Get("http://" + addr + "/readyz")
			if err != nil {
				return false
			}
			r.Body.Close()
			return r.StatusCode == 200
		})
	}
	time.Sleep(time.Second) // subscribed shortly after ready
	n.runServices(app.Exporter, app.Importer)
	n.sync(false, time.Now())
	n.assertEqual(n.expected())

	total := 0
	for i, addr := range metrics {
		c := scrapeCounter(t, addr, `relay_records_total{outcome="cleaned"`)
		t.Logf("transformer %d cleaned %d records", i+1, c)
		if c == 0 {
			t.Errorf("transformer %d took no work: the queue group does not spread messages", i+1)
		}
		total += c
	}
	if total != 600 {
		t.Errorf("the transformers cleaned %d records in all, want exactly 600 (no record twice)", total)
	}
}

func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// scrapeCounter sums the samples of a metric whose line starts with prefix.
func scrapeCounter(t *testing.T, addr, prefix string) int {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sum := 0.0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		name, _, _ := strings.Cut(line, "{")
		if !strings.HasPrefix(line, "relay_records_total{") || name != "relay_records_total" || !strings.Contains(line, `stage="transform"`) || !strings.Contains(line, prefix[len("relay_records_total{"):]) {
			continue
		}
		f := strings.Fields(line)
		v, _ := strconv.ParseFloat(f[len(f)-1], 64)
		sum += v
	}
	return int(sum)
}

func (n *testNet) spawnArgs(t *testing.T, service string, extra ...string) *proc {
	t.Helper()
	return n.spawnWith(t, service, extra)
}
