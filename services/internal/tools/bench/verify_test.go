package bench

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redcap-relay/relay/services/internal/pipeline/sitekit"
	"github.com/redcap-relay/relay/services/verifier"
)

// TestVerifyVersusSync times `relay verify --all` of 3 sites against the
// full sync of the same network (zero-latency simulator, in this process),
// with the peak heap of each. Set RELAY_BENCH_VERIFY=<records per site>
// to run it (the target: verify under 1.5x the sync, memory flat in the
// record count); RELAY_BENCH_VERIFY_EXE=<relay binary> also runs `relay
// verify --all` as a process of its own, for its peak RSS.
func TestVerifyVersusSync(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("RELAY_BENCH_VERIFY"))
	if n == 0 {
		t.Skip("set RELAY_BENCH_VERIFY=<records per site> to benchmark relay verify against the full sync")
	}
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)
	env, err := NewEnv(t.TempDir(), Scale{Name: fmt.Sprintf("3x%d", n), Sites: 3, Records: n}, log)
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	run, err := env.NewRun("verify", DefaultNet)
	if err != nil {
		t.Fatal(err)
	}
	p, err := StartPipeline(ctx, env, run, "", 0, log)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop()

	peak := heapPeak()
	sync, err := p.Sync(ctx, true, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	syncHeap := peak()

	sites := p.net.SiteIDs()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	before := ms.HeapInuse // the simulator's projects and the NATS server
	peak = heapPeak()
	start := time.Now()
	rep := verifier.Run(ctx, verifier.Options{Kit: sitekit.New(p.net, log), JS: p.js, Sites: sites, Logger: log})
	wall := time.Since(start)
	verifyHeap := peak()
	if rep.ExitCode() != verifier.ExitEqual {
		t.Fatalf("verify after the sync: %s (%+v)", rep.Status, rep.Sites)
	}
	records := 0
	for _, r := range rep.Sites {
		records += r.Counts.Equal
	}
	if exe := os.Getenv("RELAY_BENCH_VERIFY_EXE"); exe != "" {
		// The command in a process of its own: its peak RSS is the verifier's
		// alone (no simulator, no NATS server in it).
		cmd := exec.CommandContext(ctx, exe, "verify", "-n", run.NetworkFile, "--all", "--json", "--data", filepath.Join(t.TempDir(), "none"))
		var stdout strings.Builder
		cmd.Stdout = &stdout
		start := time.Now()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// VmHWM while it runs: the rusage of an exec'd child also counts
		// the forking test process's memory.
		var rss int64
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
	poll:
		for {
			if r, _ := procUsage(cmd.Process.Pid); r > rss {
				rss = r
			}
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("%s verify: %v\n%s", exe, err, stdout.String())
				}
				break poll
			case <-time.After(20 * time.Millisecond):
			}
		}
		rss >>= 20
		fmt.Printf("3x%d: relay verify --all as a process: %.2fs, peak RSS %d MiB\n", n, time.Since(start).Seconds(), rss)
	}
	fmt.Printf("3x%d: full sync %.2fs (peak heap %d MiB, pipeline included); verify --all %.2fs (%d records equal, peak heap %d MiB, %d MiB above the %d MiB before it); verify/sync = %.2f\n",
		n, sync.Wall.Seconds(), syncHeap>>20, wall.Seconds(), records, verifyHeap>>20, (verifyHeap-min(verifyHeap, before))>>20, before>>20, wall.Seconds()/sync.Wall.Seconds())
}

// heapPeak samples the heap in use until the returned function is called,
// which gives the largest value seen.
func heapPeak() func() uint64 {
	var peak atomic.Uint64
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	return func() uint64 { close(stop); <-done; return peak.Load() }
}
