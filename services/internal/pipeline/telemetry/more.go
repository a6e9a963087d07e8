package telemetry

import (
	"regexp"
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

func init() { register(REDCapErrors, RunDuration) }

// collectors_ are every collector this package registers, so tests can
// list the metric names the code exports.
var collectors_ []prometheus.Collector

func register(cs ...prometheus.Collector) {
	Registry.MustRegister(cs...)
	collectors_ = append(collectors_, cs...)
}

var fqNameRe = regexp.MustCompile(`fqName: "([^"]+)"`)

// MetricNames lists the name of every metric the code can export.
func MetricNames() []string {
	ch := make(chan *prometheus.Desc, 64)
	go func() {
		for _, c := range collectors_ {
			c.Describe(ch)
		}
		close(ch)
	}()
	var out []string
	for d := range ch {
		if m := fqNameRe.FindStringSubmatch(d.String()); m != nil {
			out = append(out, m[1])
		}
	}
	return out
}

// ObserveCall records one REDCap call (the redcap client's observer).
func ObserveCall(site, call, outcome string, d time.Duration) {
	REDCapCalls.WithLabelValues(site, call, outcome).Observe(d.Seconds())
	if outcome != "ok" {
		REDCapErrors.WithLabelValues(site, call, outcome).Inc()
	}
}
