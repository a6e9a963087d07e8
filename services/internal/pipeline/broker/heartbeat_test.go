package broker

import (
	"sync/atomic"
	"testing"
	"time"
)

// Beats come while the heartbeat runs, and none after stop returns (the
// exporter deletes the site's lease right after; a late renewal would
// recreate it).
func TestHeartbeatStopsForGood(t *testing.T) {
	var n atomic.Int64
	stop := Heartbeat(5*time.Millisecond, func() { n.Add(1); time.Sleep(2 * time.Millisecond) })
	deadline := time.Now().Add(5 * time.Second)
	for n.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n.Load() < 3 {
		t.Fatalf("%d beats in 5 s at a 5 ms interval", n.Load())
	}
	stop()
	after := n.Load()
	time.Sleep(30 * time.Millisecond)
	if got := n.Load(); got != after {
		t.Errorf("%d beats after stop returned", got-after)
	}
}
