package telemetry

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// The notifier's own health: an alert it cannot deliver is never lost
// silently.
var (
	NotifierAlerts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "relay", Name: "notifier_alerts_total", Help: "Alerts raised by the notifier, by event (run_failed, site_unreachable, dead_letters, ...).",
	}, []string{"event"})
	NotifierSent = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "relay", Name: "notifier_sent_total", Help: "Messages the notifier delivered, by channel (email, summary, webhook name).",
	}, []string{"channel"})
	NotifierFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "relay", Name: "notifier_failures_total", Help: "Failed delivery attempts (retried with backoff), by channel.",
	}, []string{"channel"})
	NotifierGaveUp = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "relay", Name: "notifier_gave_up_total", Help: "Alerts the notifier could not deliver within alerts.retry_for, by channel.",
	}, []string{"channel"})
	NotifierWaiting = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "relay", Name: "notifier_waiting", Help: "Alerts waiting for delivery (rate limit or retries), by channel.",
	}, []string{"channel"})
)

func init() {
	register(NotifierAlerts, NotifierSent, NotifierFailures, NotifierGaveUp, NotifierWaiting, Pipeline)
}

// The pipeline's state as read from NATS (the notifier reads it every
// alerts.check_every and sets it here), so it survives any service's
// restart: a gauge a service set is gone when the service restarts.
var pipelineDescs = map[string]*prometheus.Desc{
	"relay_dlq_messages":                        prometheus.NewDesc("relay_dlq_messages", "Dead letters held in the DLQ, by stage and site.", []string{"stage", "site"}, nil),
	"relay_consumer_lag":                        prometheus.NewDesc("relay_consumer_lag", "Messages a stage's durable consumer has not finished (pending + awaiting ack), by stage.", []string{"stage", "consumer"}, nil),
	"relay_consumer_ack_pending":                prometheus.NewDesc("relay_consumer_ack_pending", "Messages delivered to a stage and not acknowledged yet, by stage.", []string{"stage", "consumer"}, nil),
	"relay_consumer_waiting":                    prometheus.NewDesc("relay_consumer_waiting", "Pull requests a stage's readers have open (0 with a backlog: no reader), by stage.", []string{"stage", "consumer"}, nil),
	"relay_stage_stuck":                         prometheus.NewDesc("relay_stage_stuck", "1 while a stage's backlog does not move (no reader, or a reader acknowledging nothing), by stage and reason.", []string{"stage", "reason"}, nil),
	"relay_site_last_success_timestamp_seconds": prometheus.NewDesc("relay_site_last_success_timestamp_seconds", "When each site's last successful sync ended (Unix time).", []string{"site"}, nil),
	"relay_site_schedule_seconds":               prometheus.NewDesc("relay_site_schedule_seconds", "Time between two scheduled runs of each site.", []string{"site"}, nil),
	"relay_site_result":                         prometheus.NewDesc("relay_site_result", "1 for the result of each site's last run (synced, importing, partial, failed, retrying, deletions held, running, never run).", []string{"site", "result"}, nil),
	"relay_site_run_records":                    prometheus.NewDesc("relay_site_run_records", "Distinct records of each site's last run, by stage (exported, deleted, cleaned, imported, dead_lettered, waiting).", []string{"site", "stage"}, nil),
	"relay_site_run_duration_seconds":           prometheus.NewDesc("relay_site_run_duration_seconds", "Duration of each site's last run so far.", []string{"site"}, nil),
	"relay_protocol_score":                      prometheus.NewDesc("relay_protocol_score", "Each site's latest protocol check score (0..100).", []string{"site"}, nil),
	"relay_protocol_errors":                     prometheus.NewDesc("relay_protocol_errors", "Error-level findings of each site's latest protocol check.", []string{"site"}, nil),
	"relay_pipeline_state_up":                   prometheus.NewDesc("relay_pipeline_state_up", "1 when the notifier's last read of the pipeline's state from NATS succeeded.", nil, nil),
}

// Point is one value of a pipeline metric.
type Point struct {
	Name   string
	Labels []string
	Value  float64
}

type pipelineCollector struct {
	mu     sync.Mutex
	points []Point
	set    bool
}

// Pipeline serves the pipeline's state; empty until SetPipeline is called
// (a process without a notifier exports none of it).
var Pipeline = &pipelineCollector{}

// SetPipeline replaces the pipeline's state at once (a scrape never sees
// half of one read and half of the next).
func SetPipeline(points []Point) {
	Pipeline.mu.Lock()
	Pipeline.points, Pipeline.set = points, true
	Pipeline.mu.Unlock()
}

func (p *pipelineCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range pipelineDescs {
		ch <- d
	}
}

func (p *pipelineCollector) Collect(ch chan<- prometheus.Metric) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pt := range p.points {
		if d, ok := pipelineDescs[pt.Name]; ok {
			if m, err := prometheus.NewConstMetric(d, prometheus.GaugeValue, pt.Value, pt.Labels...); err == nil {
				ch <- m
			}
		}
	}
}
