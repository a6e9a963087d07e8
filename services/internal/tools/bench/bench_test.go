package bench

import (
	"context"
	"log/slog"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"
)

// TestBenchReport runs the quick benchmark in this process (so that
// `go test -cpuprofile` sees the pipeline); set RELAY_BENCH=1 to run it.
// RELAY_BENCH_RECORDS overrides the records per site.
func TestBenchReport(t *testing.T) {
	if os.Getenv("RELAY_BENCH") == "" {
		t.Skip("set RELAY_BENCH=1 to run the benchmark report (scripts/bench.sh runs the full one)")
	}
	o := Options{Quick: true, Dir: t.TempDir(), Out: os.Stdout}
	if os.Getenv("RELAY_BENCH_ZERO_ONLY") != "" {
		n, _ := strconv.Atoi(os.Getenv("RELAY_BENCH_RECORDS"))
		o.Scales = []Scale{{Name: "3x" + strconv.Itoa(max(n, 2000)), Sites: 3, Records: max(n, 2000)}}
	}
	o.Parallel, _ = strconv.Atoi(os.Getenv("RELAY_BENCH_PARALLEL"))
	if f := os.Getenv("RELAY_BENCH_LOG"); f != "" {
		w, err := os.Create(f)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		o.Logger = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	if f := os.Getenv("RELAY_BENCH_HEAPPROFILE"); f != "" {
		// Keep the heap profile taken at the largest heap seen.
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			var peak uint64
			for {
				select {
				case <-stop:
					return
				case <-time.After(250 * time.Millisecond):
				}
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				if ms.HeapInuse > peak {
					peak = ms.HeapInuse
					if w, err := os.Create(f); err == nil {
						pprof.WriteHeapProfile(w)
						w.Close()
					}
				}
			}
		}()
	}
	if _, err := Run(context.Background(), o); err != nil {
		t.Fatal(err)
	}
}
