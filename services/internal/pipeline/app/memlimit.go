package app

import (
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
)

// cgroupMemoryFiles hold the container's memory limit: cgroup v2 first,
// then v1 (Docker with cgroupfs).
var cgroupMemoryFiles = []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"}

// softLimitShare of the container's limit becomes the Go heap's soft limit:
// the rest is stacks, the runtime and (for `relay nats`) the server's
// buffers. Without it the heap may double between collections and the
// container is OOM-killed well before the live heap needs the limit.
const softLimitShare = 0.8

var softLimitOnce sync.Once

// SoftMemoryLimit sets the Go soft memory limit (GOMEMLIMIT semantics) to
// 80% of the container's memory limit, or to fallback (> 0) where there is
// none, unless the operator set GOMEMLIMIT. The first call in a process
// decides; it returns the limit now in force (math.MaxInt64: none).
func SoftMemoryLimit(log *slog.Logger, fallback int64) int64 {
	softLimitOnce.Do(func() {
		if os.Getenv("GOMEMLIMIT") != "" {
			log.Debug("soft memory limit from GOMEMLIMIT", "bytes", debug.SetMemoryLimit(-1))
			return
		}
		if limit, file := containerMemoryLimit(); limit > 0 {
			soft := int64(float64(limit) * softLimitShare)
			debug.SetMemoryLimit(soft)
			log.Info("soft memory limit: 80% of the container's (override with GOMEMLIMIT)", "bytes", soft, "container_bytes", limit, "from", file)
			return
		}
		if fallback > 0 {
			debug.SetMemoryLimit(fallback)
			log.Debug("soft memory limit set (override with GOMEMLIMIT)", "bytes", fallback)
		}
	})
	return debug.SetMemoryLimit(-1)
}

// containerMemoryLimit reads the cgroup memory limit; 0 when there is none
// ("max", v1's "unlimited" near 2^63, or no cgroup file).
func containerMemoryLimit() (int64, string) {
	for _, f := range cgroupMemoryFiles {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		v := strings.TrimSpace(string(b))
		if v == "max" {
			return 0, f
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 || n >= 1<<60 {
			return 0, f
		}
		return n, f
	}
	return 0, ""
}
