package app

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"testing"
)

// The soft limit is 80% of the container's cgroup limit (v2 or v1), the
// fallback without one, and GOMEMLIMIT wins over both.
func TestSoftMemoryLimitFollowsTheContainerLimit(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	defer func(f []string) { cgroupMemoryFiles = f }(cgroupMemoryFiles)
	dir := t.TempDir()
	v2, v1 := filepath.Join(dir, "memory.max"), filepath.Join(dir, "memory.limit_in_bytes")
	cgroupMemoryFiles = []string{v2, v1}
	write := func(f, v string) {
		if err := os.WriteFile(f, []byte(v+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	run := func(fallback int64) (int64, string) {
		softLimitOnce = sync.Once{}
		debug.SetMemoryLimit(1 << 62)
		var logs bytes.Buffer
		got := SoftMemoryLimit(slog.New(slog.NewTextHandler(&logs, nil)), fallback)
		return got, logs.String()
	}
	t.Setenv("GOMEMLIMIT", "")
	write(v2, "268435456") // 256 MiB
	if got, logs := run(0); got != 214748364 {
		t.Errorf("cgroup v2 256 MiB: soft limit %d, want 80%% = 214748364 (%s)", got, logs)
	}
	write(v2, "max")
	if got, _ := run(512 << 20); got != 512<<20 {
		t.Errorf("no container limit: soft limit %d, want the fallback", got)
	}
	os.Remove(v2)
	write(v1, "9223372036854771712") // v1 without a limit
	if got, _ := run(0); got != 1<<62 {
		t.Errorf("cgroup v1 unlimited: soft limit %d, want unchanged", got)
	}
	write(v1, "1073741824")
	if got, _ := run(0); got != 858993459 {
		t.Errorf("cgroup v1 1 GiB: soft limit %d, want 858993459", got)
	}
	t.Setenv("GOMEMLIMIT", "100MiB")
	if got, _ := run(0); got != 1<<62 {
		t.Errorf("GOMEMLIMIT set: soft limit %d, want it left to the runtime", got)
	}
}
