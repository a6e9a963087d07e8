package notify

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"golang.org/x/time/rate"

	"github.com/redcap-relay/relay/services/internal/ops"
	"github.com/redcap-relay/relay/services/internal/pipeline/telemetry"
)

// maxPerMessage bounds how many waiting alerts go out in one message.
const maxPerMessage = 50

// dispatcher delivers one channel's alerts in the background: at most
// max_per_hour messages an hour (alerts waiting for the cap go out together
// in the next message), a failed send retried with exponential backoff, an
// alert older than retry_for given up on: logged as an error, counted, and
// shown in `relay status`.
type dispatcher struct {
	ch       Channel
	log      *slog.Logger
	limiter  *rate.Limiter
	retryFor time.Duration
	timeout  time.Duration
	firstTry time.Duration // the first backoff after a failure
	wake     chan struct{}

	mu     sync.Mutex
	queue  []Alert
	status ops.ChannelStatus
}

func newDispatcher(ch Channel, perHour int, retryFor time.Duration, log *slog.Logger) *dispatcher {
	return &dispatcher{ch: ch, log: log.With("channel", ch.Name()), retryFor: retryFor, timeout: time.Minute, firstTry: 2 * time.Second,
		limiter: rate.NewLimiter(rate.Every(time.Hour/time.Duration(perHour)), min(perHour, 2)),
		wake:    make(chan struct{}, 1), status: ops.ChannelStatus{Channel: ch.Name()}}
}

func (d *dispatcher) enqueue(as ...Alert) {
	if len(as) == 0 {
		return
	}
	d.mu.Lock()
	d.queue = append(d.queue, as...)
	d.status.Waiting = len(d.queue)
	d.mu.Unlock()
	telemetry.NotifierWaiting.WithLabelValues(d.ch.Name()).Set(float64(len(d.queue)))
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func (d *dispatcher) snapshot() ops.ChannelStatus {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.status
}

// run delivers until ctx ends.
func (d *dispatcher) run(ctx context.Context) {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval, b.MaxInterval, b.MaxElapsedTime = d.firstTry, 5*time.Minute, 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-d.wake:
		}
		for d.pending() > 0 && ctx.Err() == nil {
			if !sleep(ctx, d.limiter.Reserve().Delay()) {
				return
			}
			if err := d.sendOnce(ctx); err != nil {
				if !sleep(ctx, b.NextBackOff()) {
					return
				}
				continue
			}
			b.Reset()
		}
	}
}

func (d *dispatcher) pending() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.queue)
}

// sendOnce sends the waiting alerts (up to maxPerMessage) in one message.
func (d *dispatcher) sendOnce(ctx context.Context) error {
	d.mu.Lock()
	batch := append([]Alert(nil), d.queue[:min(len(d.queue), maxPerMessage)]...)
	d.mu.Unlock()
	sctx, cancel := context.WithTimeout(ctx, d.timeout)
	err := d.ch.Send(sctx, batch)
	cancel()
	d.mu.Lock()
	defer func() {
		d.status.Waiting = len(d.queue)
		telemetry.NotifierWaiting.WithLabelValues(d.ch.Name()).Set(float64(len(d.queue)))
		d.mu.Unlock()
	}()
	if err == nil {
		d.queue = d.queue[len(batch):]
		d.status.Sent++
		telemetry.NotifierSent.WithLabelValues(d.ch.Name()).Inc()
		d.log.Info("alert sent", "alerts", len(batch), "first", batch[0].Title)
		return nil
	}
	d.status.Failures++
	d.status.LastError, d.status.LastErrorAt = err.Error(), time.Now().UTC()
	telemetry.NotifierFailures.WithLabelValues(d.ch.Name()).Inc()
	d.log.Warn("alert not delivered; retrying with backoff", "alerts", len(batch), "err", err)
	// Give up, loudly, on alerts that waited longer than retry_for.
	keep := d.queue[:0]
	for _, a := range d.queue {
		if time.Since(a.At) > d.retryFor {
			d.status.GaveUp++
			telemetry.NotifierGaveUp.WithLabelValues(d.ch.Name()).Inc()
			d.log.Error("alert NOT delivered: gave up after alerts.retry_for", "retry_for", d.retryFor, "event", a.Event, "site", a.Site, "title", a.Title, "last_err", err)
			continue
		}
		keep = append(keep, a)
	}
	d.queue = keep
	return err
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
