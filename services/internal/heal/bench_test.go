package heal

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/protocol"
	"github.com/redcap-relay/relay/services/internal/tools/bench"
	"github.com/redcap-relay/relay/services/internal/tools/demo"
	"github.com/redcap-relay/relay/services/internal/tools/redcapsim"
)

// BenchmarkExport exports 3 sites x N records from a destination seeded
// through the simulator's Go API with what the pipeline writes (each
// site's generated records through its compiled policy; the benchmark
// project's 40 fields, the third site with three events). It reports
// records/s and the live heap the export adds at its peak (sampled).
//
//	go test -run - -bench Export -benchtime 1x ./services/internal/heal/
func BenchmarkExport(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(fmt.Sprintf("3x%d", n), func(b *testing.B) {
			net := benchNetwork(b, n)
			p, err := protocol.HEALAdult()
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				start := time.Now()
				res, err := Export(context.Background(), Options{Network: net, Protocol: p, Out: filepath.Join(b.TempDir(), "pkg")})
				took := time.Since(start)
				if err != nil {
					b.Fatal(err)
				}
				if res.Records != 3*n {
					b.Fatalf("exported %d records, want %d", res.Records, 3*n)
				}
				b.ReportMetric(float64(res.Records)/took.Seconds(), "records/s")
				b.ReportMetric(took.Seconds(), "s/export")
				b.ReportMetric(float64(res.Rows), "rows")
				// Memory, in a second untimed export: the live heap (after a
				// forced GC, sampled) above what the simulator's data holds.
				b.StopTimer()
				runtime.GC()
				var base runtime.MemStats
				runtime.ReadMemStats(&base)
				peak := sampleLiveHeap()
				if _, err := Export(context.Background(), Options{Network: net, Protocol: p, Out: filepath.Join(b.TempDir(), "pkg")}); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(peak()-base.HeapAlloc)/(1<<20), "MB-live-added")
				b.StartTimer()
			}
		})
	}
}

// sampleLiveHeap measures the live heap (HeapAlloc right after a forced
// GC) every 250 ms until the returned func is called, which gives the
// peak. The simulator's records in the same process make the GC's target
// large, so uncollected garbage would hide what the export keeps.
func sampleLiveHeap() func() uint64 {
	var peak atomic.Uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		var m runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(250 * time.Millisecond):
			}
			runtime.GC()
			runtime.ReadMemStats(&m)
			if m.HeapAlloc > peak.Load() {
				peak.Store(m.HeapAlloc)
			}
		}
	}()
	return func() uint64 { close(stop); wg.Wait(); return peak.Load() }
}

func benchNetwork(b *testing.B, n int) *config.Network {
	b.Helper()
	sim, err := redcapsim.New(redcapsim.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { sim.Close() })
	url, err := sim.Listen("127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	dir := b.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			b.Fatal(err)
		}
	}
	token := func(pid int, name string, r redcapsim.Rights) {
		tok := fmt.Sprintf("%032X", 1000+pid)
		if err := sim.AddToken(pid, tok, r, ""); err != nil {
			b.Fatal(err)
		}
		write(name+".token", tok)
	}
	write("policy.yaml", bench.PolicyYAML)
	write("pseudonym.key", "0123456789abcdef0123456789abcdef")
	dest := bench.Design(3)
	var destFields []messages.Field
	for _, f := range dest.Fields {
		switch f.FieldName {
		case "first_name", "last_name", "email", "phone", "comments":
			continue
		case "dob", "zip":
			f.TextValidationTypeOrShowSlider = ""
		}
		destFields = append(destFields, f)
	}
	dpid, err := sim.CreateProject(redcapsim.ProjectSpec{Title: "bench destination", Fields: destFields,
		Arms: []messages.Arm{{ArmNum: 1, Name: "Arm 1"}}, Events: dest.Events, FormEventMapping: dest.FEM})
	if err != nil {
		b.Fatal(err)
	}
	token(dpid, "destination", redcapsim.Rights{Export: true, Metadata: true})
	yaml := fmt.Sprintf("destination:\n  url: %s\n  token: {file: destination.token}\n  calls_per_minute: -1\npseudonym_key: {file: pseudonym.key}\nsites:\n", url)
	type siteDesign struct {
		id string
		d  demo.Design
	}
	var sites []siteDesign
	for i := 1; i <= 3; i++ {
		events := 1
		if i == 3 {
			events = 3
		}
		d := bench.Design(events)
		id := fmt.Sprintf("site%d", i)
		pid, err := sim.CreateProject(redcapsim.ProjectSpec{Title: id, Fields: d.Fields, Arms: []messages.Arm{{ArmNum: 1, Name: "Arm 1"}}, Events: d.Events, FormEventMapping: d.FEM})
		if err != nil {
			b.Fatal(err)
		}
		token(pid, id, redcapsim.Rights{Export: true, Metadata: true})
		yaml += fmt.Sprintf("  - {id: %s, url: %s, token: {file: %s.token}, policy: policy.yaml, calls_per_minute: -1}\n", id, url, id)
		sites = append(sites, siteDesign{id, d})
	}
	write("network.yaml", yaml)
	net, err := config.Load(filepath.Join(dir, "network.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	// The destination as the pipeline fills it: generated site records
	// through each site's compiled policy, in chunks.
	for i, s := range sites {
		st, _ := net.Site(s.id)
		c := compileSite(b, net, st)
		const chunk = 5000
		for from := 0; from < n; from += chunk {
			k := min(chunk, n-from)
			gen := demo.Generate(s.d, k, uint64(i*1_000_003+from))
			byRec := map[string][]messages.Row{}
			var order []string
			for _, r := range gen.Rows {
				id, _ := strconv.Atoi(r["record_id"])
				r["record_id"] = strconv.Itoa(from + id)
				if _, ok := byRec[r["record_id"]]; !ok {
					order = append(order, r["record_id"])
				}
				byRec[r["record_id"]] = append(byRec[r["record_id"]], r)
			}
			var out []messages.Row
			for _, id := range order {
				cl, err := c.Apply(messages.RecordExported{Site: s.id, RecordID: id, Rows: byRec[id]})
				if err != nil {
					b.Fatal(err)
				}
				out = append(out, cl.Rows...)
			}
			if err := sim.ImportRows(dpid, out, false); err != nil {
				b.Fatal(err)
			}
		}
	}
	return net
}
