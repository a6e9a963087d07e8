package telemetry

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// StreamUsage is one JetStream stream's size against its byte cap.
type StreamUsage struct {
	Account, Stream string
	Bytes, Msgs     uint64
	MaxBytes        int64 // <= 0: no cap
}

// Fill is the share of the cap in use (0 without a cap).
func (u StreamUsage) Fill() float64 {
	if u.MaxBytes <= 0 {
		return 0
	}
	return float64(u.Bytes) / float64(u.MaxBytes)
}

// StreamSource reads every stream's usage (the NATS server, in process).
type StreamSource func() ([]StreamUsage, error)

// streamCollector exports relay_stream_bytes, relay_stream_max_bytes and
// relay_stream_messages, read from the source at every scrape: a stream
// whose cap fills up refuses new messages (RECORDS_RAW, RECORDS_CLEAN, the
// buckets) or drops its oldest (AUDIT, DLQ), so alert well before.
type streamCollector struct {
	mu     sync.Mutex
	source StreamSource

	bytes, max, msgs *prometheus.Desc
}

var streamFill = &streamCollector{
	bytes: prometheus.NewDesc("relay_stream_bytes", "Bytes a JetStream stream (or bucket) holds.", []string{"account", "stream"}, nil),
	max:   prometheus.NewDesc("relay_stream_max_bytes", "The stream's byte cap (streams.max_bytes): when full it refuses new messages or drops its oldest, by its discard policy.", []string{"account", "stream"}, nil),
	msgs:  prometheus.NewDesc("relay_stream_messages", "Messages a JetStream stream (or bucket) holds.", []string{"account", "stream"}, nil),
}

// ExportStreams makes this process export the streams' fill levels read
// from source (`relay nats` passes its server).
func ExportStreams(source StreamSource) {
	streamFill.mu.Lock()
	streamFill.source = source
	streamFill.mu.Unlock()
}

func (c *streamCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.bytes
	ch <- c.max
	ch <- c.msgs
}

func (c *streamCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	src := c.source
	c.mu.Unlock()
	if src == nil {
		return
	}
	usage, err := src()
	if err != nil {
		return
	}
	for _, u := range usage {
		ch <- prometheus.MustNewConstMetric(c.bytes, prometheus.GaugeValue, float64(u.Bytes), u.Account, u.Stream)
		ch <- prometheus.MustNewConstMetric(c.msgs, prometheus.GaugeValue, float64(u.Msgs), u.Account, u.Stream)
		if u.MaxBytes > 0 {
			ch <- prometheus.MustNewConstMetric(c.max, prometheus.GaugeValue, float64(u.MaxBytes), u.Account, u.Stream)
		}
	}
}

// FullAt is the fill level from which a stream is logged as an error: new
// messages are about to be refused (or the oldest dropped).
const FullAt = 0.95

// FillWatcher logs a warning when a stream's fill level reaches WarnAt,
// an error at FullAt, and a note when it falls back below WarnAt: once per
// crossing.
type FillWatcher struct {
	Log    *slog.Logger
	Source StreamSource
	WarnAt float64

	level map[string]int // stream -> 0 fine, 1 warned, 2 full
}

// Run checks every interval until ctx ends.
func (w *FillWatcher) Run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		w.Check()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Check reads the fill levels once and logs the crossings.
func (w *FillWatcher) Check() {
	if w.level == nil {
		w.level = map[string]int{}
	}
	usage, err := w.Source()
	if err != nil {
		w.Log.Warn("stream fill levels not read", "err", err)
		return
	}
	for _, u := range usage {
		key, f := u.Account+"/"+u.Stream, u.Fill()
		now := 0
		switch {
		case f >= FullAt:
			now = 2
		case f >= w.WarnAt:
			now = 1
		}
		if now == w.level[key] {
			continue
		}
		w.level[key] = now
		attrs := []any{"stream", u.Stream, "bytes", u.Bytes, "max_bytes", u.MaxBytes, "fill", float64(int(f*1000)) / 1000}
		switch now {
		case 2:
			w.Log.Error("stream is full: new messages are refused (or its oldest dropped); raise streams.max_bytes and run relay provision", attrs...)
		case 1:
			w.Log.Warn("stream is filling up; raise streams.max_bytes (and relay provision) before it is full", attrs...)
		default:
			w.Log.Info("stream back below its warning level", attrs...)
		}
	}
}
