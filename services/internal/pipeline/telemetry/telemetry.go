// Package telemetry holds the Prometheus metrics every service exports and
// the small HTTP server for /metrics, /healthz and /readyz. Labels are site,
// stage and outcome only: never record IDs or values.
package telemetry

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Registry is the process's registry (one per process, shared by the
// services that `relay all` runs together).
var Registry = prometheus.NewRegistry()

var (
	// Records counts records per stage, site and outcome
	// (exported, unchanged, deleted, cleaned, imported, skipped_stale, dead_lettered).
	Records = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "relay", Name: "records_total", Help: "Records handled, by stage, site and outcome.",
	}, []string{"stage", "site", "outcome"})
	// Runs counts site runs by result.
	Runs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "relay", Name: "runs_total", Help: "Site export runs, by site and result (exported, failed, skipped).",
	}, []string{"site", "result"})
	// REDCapCalls times every REDCap API call (sitekit's clients observe
	// them), by outcome: ok, rejected, permanent, timeout, network, transient.
	REDCapCalls = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "relay", Name: "redcap_call_seconds", Help: "REDCap API call latency, by site (or destination), call and outcome.",
		Buckets: prometheus.ExponentialBuckets(0.01, 2.5, 10),
	}, []string{"site", "call", "outcome"})
	// DeadLetters counts messages sent to the DLQ.
	DeadLetters = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "relay", Name: "dead_letters_total", Help: "Messages dead-lettered, by stage and site.",
	}, []string{"stage", "site"})
	// DestinationUp is 1 while the destination answers, 0 during an outage;
	// only a process running the importer exports it (see destinationGauge).
	DestinationUp = &destinationGauge{desc: prometheus.NewDesc("relay_destination_up",
		"1 when the destination REDCap answered the importer's last call, 0 while the importer waits for it; absent until the importer's first successful call (and in processes without an importer).", nil, nil)}
	// LastRun is the Unix time of the last successful export per site.
	LastRun = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "relay", Name: "last_successful_run_timestamp_seconds", Help: "When each site last exported successfully.",
	}, []string{"site"})
)

var (
	// DeletionsHeld is the deletions of a site waiting for an operator
	// (`relay deletions approve|reject`).
	DeletionsHeld = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "relay", Name: "deletions_held", Help: "Deletions of a site held for an operator's decision (over the limit, or the token's access changed).",
	}, []string{"site"})
	// DeletionsPending is the deletions waiting for the site's deletion delay.
	DeletionsPending = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "relay", Name: "deletions_pending", Help: "Records absent at a site, waiting for the deletion delay before they are deleted at the destination.",
	}, []string{"site"})
)

// Retries counts failed REDCap calls that a run retries, by site.
var Retries = prometheus.NewCounterVec(prometheus.CounterOpts{
	Namespace: "relay", Name: "retries_total", Help: "Failed calls a site's run retries (site unreachable, REDCap errors, the destination check).",
}, []string{"site"})

func init() {
	register(DeletionsHeld, DeletionsPending, Retries)
	register(Records, Runs, REDCapCalls, DeadLetters, DestinationUp, LastRun, streamFill,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
}

// Check is a readiness probe: nil when ready.
type Check func() error

// Serve runs the HTTP endpoint until ctx ends. /healthz answers 200 while the
// process runs; /readyz runs the checks (NATS connected, ...).
func Serve(ctx context.Context, addr string, log *slog.Logger, ready ...Check) error {
	if addr == "" {
		return nil
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, _ *http.Request) {
		for _, c := range ready {
			if err := c(); err != nil {
				http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
				return
			}
		}
		w.Write([]byte("ready\n"))
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	log.Info("metrics and health endpoint", "addr", ln.Addr().String())
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
