package importer

import (
	"math"
	"sync"
	"time"
)

// batchSizer chooses how many records an Import Records call takes. REDCap
// charges a fixed cost per call (PHP start-up, token and project checks)
// and a cost per value; bigger batches spread the fixed cost, up to the
// point where it no longer matters, and past that only risk REDCap's
// memory limit and time-outs. So the sizer fits call time = fixed + per
// record × records over the last calls, grows the batch (×1.5) while the
// fixed part is over a tenth of a full batch's time, and halves it (with a
// ceiling for a while) when REDCap runs out of memory or times out.
type batchSizer struct {
	mu       sync.Mutex
	size     int
	min, max int
	maxCall  time.Duration // a call should not take longer (well under the client's timeout)
	samples  []callSample
	ceiling  int // after an overload: no growth past this until ceilUntil
	ceilTill time.Time
	// The last fit, kept while the window holds one batch size only (a
	// settled batch).
	fixed, perRecord float64
	fitted           bool
	now              func() time.Time
}

type callSample struct {
	records int
	took    time.Duration
}

const (
	sizerWindow      = 16
	fixedShareToGrow = 0.10
	overloadMemory   = 30 * time.Minute
)

func newBatchSizer(start, maxSize int, timeout time.Duration) *batchSizer {
	if start < 1 {
		start = 500
	}
	maxCall := min(timeout/4, time.Minute)
	if maxCall <= 0 {
		maxCall = time.Minute
	}
	return &batchSizer{size: start, min: min(start, 10), max: max(maxSize, start), maxCall: maxCall, now: time.Now}
}

// Size is the batch to fetch next.
func (b *batchSizer) Size() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.size
}

// observe records a successful call of n records and maybe grows the batch.
// Calls of part batches (the tail of a sync) teach the fit but never make
// the batch grow.
func (b *batchSizer) observe(n int, took time.Duration) {
	if n <= 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.samples = append(b.samples, callSample{n, took})
	if len(b.samples) > sizerWindow {
		b.samples = b.samples[len(b.samples)-sizerWindow:]
	}
	if took > b.maxCall {
		b.size = max(b.min, b.size*3/4)
		return
	}
	if n < b.size*4/5 {
		return
	}
	limit := b.max
	if b.ceiling > 0 && b.now().Before(b.ceilTill) {
		limit = min(limit, b.ceiling)
	}
	if b.size >= limit {
		return
	}
	next := min(limit, b.size*3/2+1)
	if f, p, ok := fit(b.samples); ok {
		b.fixed, b.perRecord, b.fitted = f, p, true
	}
	fixed, perRecord, ok := b.fixed, b.perRecord, b.fitted
	switch {
	case !ok:
		// One batch size seen so far: probe a bigger one while calls are
		// quick, which also gives the fit its second point.
		if took > b.maxCall/4 {
			return
		}
	case fixed/(fixed+perRecord*float64(b.size)) <= fixedShareToGrow:
		return // the fixed cost is spread well enough
	case time.Duration(fixed+perRecord*float64(next)) > b.maxCall:
		return
	}
	b.size = next
}

// overload halves the batch after REDCap ran out of memory or timed out,
// and keeps it from growing back past that for a while.
func (b *batchSizer) overload(n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.size = max(b.min, min(b.size, n/2))
	b.ceiling, b.ceilTill = b.size, b.now().Add(overloadMemory)
}

// fit is the least-squares line took = fixed + perRecord × records, in
// nanoseconds; ok is false until the samples span two batch sizes.
func fit(ss []callSample) (fixed, perRecord float64, ok bool) {
	if len(ss) < 2 {
		return 0, 0, false
	}
	var sx, sy, sxx, sxy float64
	lo, hi := math.MaxInt, 0
	for _, s := range ss {
		x, y := float64(s.records), float64(s.took)
		sx, sy, sxx, sxy = sx+x, sy+y, sxx+x*x, sxy+x*y
		lo, hi = min(lo, s.records), max(hi, s.records)
	}
	if hi < lo*5/4 {
		return 0, 0, false
	}
	n := float64(len(ss))
	perRecord = (n*sxy - sx*sy) / (n*sxx - sx*sx)
	fixed = (sy - perRecord*sx) / n
	if perRecord <= 0 {
		// Time does not grow with the batch: all of it is fixed cost.
		return math.Max(sy/n, 1), 1e-9, true
	}
	return math.Max(fixed, 0), perRecord, true
}
