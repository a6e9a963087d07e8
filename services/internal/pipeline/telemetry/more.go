package telemetry

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// REDCapErrors counts failed REDCap calls by site, call and outcome (the
// outcome labels of REDCapCalls other than ok).
var REDCapErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
	Namespace: "relay", Name: "redcap_call_errors_total", Help: "Failed REDCap API calls, by site (or destination), call and outcome (rejected, permanent, timeout, network, transient).",
}, []string{"site", "call", "outcome"})

// RunDuration is how long a site's export run took, by result.
var RunDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
	Namespace: "relay", Name: "run_duration_seconds", Help: "Site export runs' duration, from start to the last record stored, by site and result.",
	Buckets: prometheus.ExponentialBuckets(1, 2, 14), // 1 s .. 2.3 h
}, []string{"site", "result"})

func init() { Registry.MustRegister(REDCapErrors, RunDuration) }

// ObserveCall records one REDCap call (the redcap client's observer).
func ObserveCall(site, call, outcome string, d time.Duration) {
	REDCapCalls.WithLabelValues(site, call, outcome).Observe(d.Seconds())
	if outcome != "ok" {
		REDCapErrors.WithLabelValues(site, call, outcome).Inc()
	}
}

var destinationOnce sync.Once

// ExportDestinationUp registers relay_destination_up: only the process that
// runs the importer (which alone talks to the destination) exports it, so no
// other service reports a destination it never asked.
func ExportDestinationUp() {
	destinationOnce.Do(func() { Registry.MustRegister(DestinationUp) })
}
