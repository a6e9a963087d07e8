package bench

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/redcap-relay/relay/services/internal/tools/redcapsim/faults"
)

// Model is a REDCap server's cost, charged as sleeps in front of the
// simulator (which adds its own real CPU time). REDCap stores data as one
// row per value (the EAV table redcap_data), so an export or import costs
// per value, on top of a fixed cost per call (HTTP, PHP start-up, token and
// project checks). Exporting only the record-ID field is therefore cheap,
// as on a real server.
type Model struct {
	Name string `json:"name"`
	// ExportCall and ImportCall are charged once per call (any call
	// without data counts as an export; with data, as an import).
	ExportCall time.Duration `json:"export_call"`
	ImportCall time.Duration `json:"import_call"`
	// ExportValue and ImportValue are charged per value (cells of the flat
	// JSON answer, or of the data sent).
	ExportValue time.Duration `json:"export_value"`
	ImportValue time.Duration `json:"import_value"`
	// Concurrency is how many calls a server works on at once; later calls
	// queue (a PHP-FPM worker pool). 0 = unlimited.
	Concurrency int `json:"concurrency"`
}

// ZeroLatency is the simulator as fast as it is: CPU-bound.
var ZeroLatency = Model{Name: "zero latency"}

// REDCapLike models a production REDCap server within the 0.2-1 s per call
// seen in practice: exports 150 ms per call plus 4 µs per value (a 40-field
// row ≈ 0.17 ms, ~6,000 rows/s); imports, which validate every value and
// write REDCap's log, 300 ms per call plus 20 µs per value (5× slower per
// value); each server works on 4 calls at once.
var REDCapLike = Model{Name: "REDCap-like latency", ExportCall: 150 * time.Millisecond, ImportCall: 300 * time.Millisecond,
	ExportValue: 4 * time.Microsecond, ImportValue: 20 * time.Microsecond, Concurrency: 4}

// SlowSites is the regime where the sites are slower than the destination:
// the sites answer exports in 500 ms a call (plus REDCap-like per-value
// cost), the destination is REDCap-like; it shows the export side.
var SlowSites = Regime{Name: "slow sites (exports 500 ms/call)",
	Site: Model{Name: "slow site", ExportCall: 500 * time.Millisecond, ImportCall: REDCapLike.ImportCall,
		ExportValue: REDCapLike.ExportValue, ImportValue: REDCapLike.ImportValue, Concurrency: REDCapLike.Concurrency},
	Dest: REDCapLike}

// Regime is the latency of the sites and of the destination in one run.
type Regime struct {
	Name string
	Site Model
	Dest Model
}

// Same is the regime where every server follows m.
func Same(m Model) Regime { return Regime{Name: m.Name, Site: m, Dest: m} }

// Bound is the destination's capacity bound under its model: the time the
// destination needs for what was sent to it, its concurrency fully used.
// ValueOnly counts the values alone; AtCalls adds the per-call cost of the
// import calls actually made.
type Bound struct {
	Values      int64         `json:"import_values"`
	ImportCalls int64         `json:"import_calls"`
	ValueOnly   time.Duration `json:"value_only_ns"`
	AtCalls     time.Duration `json:"at_calls_made_ns"`
}

// boundOf is m's capacity bound for values sent in calls.
func boundOf(m Model, values, calls int64) *Bound {
	if m.ImportValue == 0 && m.ImportCall == 0 {
		return nil
	}
	c := time.Duration(max(1, m.Concurrency))
	v := m.ImportValue * time.Duration(values) / c
	return &Bound{Values: values, ImportCalls: calls, ValueOnly: v, AtCalls: v + m.ImportCall*time.Duration(calls)/c}
}

func (m Model) zero() bool {
	return m.ExportCall == 0 && m.ImportCall == 0 && m.ExportValue == 0 && m.ImportValue == 0
}

// endpoint is one simulated REDCap server: the latency model (swappable at
// run time) in front of the simulator, with call counters.
type endpoint struct {
	next    http.Handler
	model   atomic.Pointer[Model]
	sem     atomic.Pointer[chan struct{}]
	calls   atomic.Int64
	imports atomic.Int64
	// importValues is the values sent in imports (counted only under a
	// model with latency: counting parses the body).
	importValues atomic.Int64
}

func newEndpoint(next http.Handler) *endpoint {
	e := &endpoint{next: next}
	e.setModel(ZeroLatency)
	return e
}

func (e *endpoint) setModel(m Model) {
	e.model.Store(&m)
	var sem chan struct{}
	if m.Concurrency > 0 {
		sem = make(chan struct{}, m.Concurrency)
	}
	e.sem.Store(&sem)
}

func (e *endpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e.calls.Add(1)
	m := e.model.Load()
	if sem := *e.sem.Load(); sem != nil {
		select {
		case sem <- struct{}{}:
			defer func() { <-sem }()
		case <-r.Context().Done():
			return
		}
	}
	if m.zero() {
		e.next.ServeHTTP(w, r)
		return
	}
	body, _ := io.ReadAll(r.Body)
	r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(body))
	form, _ := url.ParseQuery(string(body))
	if data := form.Get("data"); data != "" {
		e.imports.Add(1)
		cells := countCells([]byte(data))
		e.importValues.Add(int64(cells))
		if !sleep(r.Context(), m.ImportCall+m.ImportValue*time.Duration(cells)) {
			return
		}
		e.next.ServeHTTP(w, r)
		return
	}
	rec := &recorder{header: http.Header{}, status: http.StatusOK}
	e.next.ServeHTTP(rec, r)
	if !sleep(r.Context(), m.ExportCall+m.ExportValue*time.Duration(countCells(rec.buf.Bytes()))) {
		return
	}
	for k, v := range rec.header {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.status)
	w.Write(rec.buf.Bytes())
}

func countCells(b []byte) int { _, n := faults.CountJSON(b); return n }

type recorder struct {
	header http.Header
	status int
	buf    bytes.Buffer
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) WriteHeader(s int)           { r.status = s }
func (r *recorder) Write(b []byte) (int, error) { return r.buf.Write(b) }

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
