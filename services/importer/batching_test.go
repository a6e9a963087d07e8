package importer

import (
	"testing"
	"time"
)

// model is a REDCap server's import cost: a fixed cost per call and a cost
// per record (the benchmark's latency model: 300 ms a call, 20 µs a value,
// 62 values a record).
func model(fixed, perRecord time.Duration) func(n int) time.Duration {
	return func(n int) time.Duration { return fixed + time.Duration(n)*perRecord }
}

func settle(b *batchSizer, cost func(int) time.Duration, calls int) {
	for i := 0; i < calls; i++ {
		n := b.Size()
		b.observe(n, cost(n))
	}
}

func TestBatchesGrowWhileTheFixedCostMatters(t *testing.T) {
	cost := model(300*time.Millisecond, 1240*time.Microsecond)
	b := newBatchSizer(500, 5000, 5*time.Minute)
	settle(b, cost, 40)
	size := b.Size()
	share := func(n int) float64 { return float64(300*time.Millisecond) / float64(cost(n)) }
	if share(size) > fixedShareToGrow || share(size*2/3) <= fixedShareToGrow {
		t.Fatalf("settled at %d records (fixed cost %.0f%% of a call; at 2/3 of it %.0f%%); want the first size where it is under %.0f%%",
			size, 100*share(size), 100*share(size*2/3), 100*fixedShareToGrow)
	}
	t.Logf("REDCap-like latency: 500 -> %d records a call (fixed cost %.1f%%)", size, 100*share(size))
}

func TestBatchesStayWhenCallsCostNothing(t *testing.T) {
	b := newBatchSizer(500, 5000, 5*time.Minute)
	settle(b, model(time.Millisecond, 20*time.Microsecond), 40)
	if size := b.Size(); size > 1200 {
		t.Fatalf("a server with almost no fixed cost per call: batches grew to %d", size)
	}
}

func TestBatchesNeverPassTheMaximumOrGrowOnATail(t *testing.T) {
	b := newBatchSizer(500, 800, 5*time.Minute)
	settle(b, model(time.Second, time.Microsecond), 20)
	if b.Size() != 800 {
		t.Fatalf("size %d, want the maximum 800", b.Size())
	}
	c := newBatchSizer(500, 5000, 5*time.Minute)
	for i := 0; i < 20; i++ {
		c.observe(120, time.Second) // the end of a sync: part batches
	}
	if c.Size() != 500 {
		t.Fatalf("part batches grew the batch to %d", c.Size())
	}
}

func TestAnOverloadHalvesTheBatchForAWhile(t *testing.T) {
	now := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	b := newBatchSizer(2000, 5000, 5*time.Minute)
	b.now = func() time.Time { return now }
	cost := model(300*time.Millisecond, 1240*time.Microsecond)
	b.overload(2000)
	if b.Size() != 1000 {
		t.Fatalf("after REDCap ran out of memory on 2000 records: %d, want 1000", b.Size())
	}
	settle(b, cost, 20)
	if b.Size() != 1000 {
		t.Fatalf("grew back to %d within the overload memory", b.Size())
	}
	now = now.Add(overloadMemory + time.Minute)
	settle(b, cost, 20)
	if b.Size() <= 1000 {
		t.Fatalf("never grew again after the overload memory: %d", b.Size())
	}
	// A call slower than a quarter of the client's timeout shrinks it.
	before := b.Size()
	b.observe(before, 2*time.Minute)
	if b.Size() >= before {
		t.Fatalf("a two-minute call left the batch at %d", b.Size())
	}
}
