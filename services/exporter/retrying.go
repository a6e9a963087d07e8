package exporter

import (
	"context"
	"sync"
	"time"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/pipeline/retry"
	"github.com/redcap-relay/relay/services/internal/pipeline/telemetry"
)

// retryEventEvery spaces a run's "retrying" events in the audit stream
// (every failed attempt is logged).
const retryEventEvery = 5 * time.Second

// runRetry is the run's retry policy: each failed call is retried with
// backoff while the run's budget (site.retry_for) lasts, every attempt is
// logged (the cause, the attempt, the next wait; never the token), and
// `relay status` shows the latest ("retrying: ..., attempt 5, next in 40s").
// A spent budget fails the run with the cause; the next scheduled run tries
// again.
func (e *Exporter) runRetry(ctx context.Context, r *siteRun) retry.Policy {
	budget := retry.NewBudget(r.site.RetryFor.D())
	var mu sync.Mutex
	var last time.Time
	return retry.Policy{
		MaxElapsed: 2*r.site.RetryFor.D() + time.Minute, // the budget, not this, ends the retries
		Budget:     budget,
		Notify: func(err error, _ int, next time.Duration) {
			attempt := budget.Attempts()
			e.log.Warn("call failed; retrying", "site", r.site.ID, "run", r.req.RunID, "attempt", attempt,
				"next_in", next.Round(100*time.Millisecond).String(), "err", err)
			telemetry.Retries.WithLabelValues(r.site.ID).Inc()
			mu.Lock()
			due := time.Since(last) >= retryEventEvery
			if due {
				last = time.Now()
			}
			mu.Unlock()
			if due {
				e.runEvent(ctx, messages.RunEvent{Site: r.site.ID, RunID: r.req.RunID, Phase: messages.PhaseRetrying, Full: r.req.Full,
					Error: err.Error(), Attempt: attempt, NextAt: time.Now().Add(next).UTC()})
			}
		},
	}
}
