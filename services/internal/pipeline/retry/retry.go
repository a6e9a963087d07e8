// Package retry retries REDCap calls on transient errors with exponential
// backoff (cenkalti/backoff/v4), and is the one place that says whether an
// error is permanent (dead-lettered) or transient (retried). Each API call
// is retried on its own: a sequence of calls retried as a whole would never
// finish against a server that fails every few calls. A Budget bounds the
// retries of a whole run, so a site that stays unreachable fails the run
// with the cause instead of hanging it for hours.
package retry

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/cenkalti/backoff/v4"

	"github.com/redcap-relay/relay/services/internal/redcap"
)

// Policy bounds the retries of one call.
type Policy struct {
	// MaxElapsed is how long one call may be retried; 0 means 10 minutes.
	MaxElapsed time.Duration
	Initial    time.Duration // first wait, default 500ms
	Max        time.Duration // longest wait, default 30s
	// Budget, when set, also bounds the time spent waiting between
	// attempts across every call that shares it; when it is spent the
	// call's error becomes permanent (ErrBudgetSpent).
	Budget *Budget
	// Notify is told about every failed attempt that will be retried.
	Notify func(err error, attempt int, next time.Duration)
}

// Permanent marks an error no retry can fix.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// IsPermanent: marked so, a permanent REDCap error, or a recovered panic
// (the same input would panic again).
func IsPermanent(err error) bool {
	var pe *permanentError
	var rp middleware.RecoveredPanicError
	return errors.As(err, &pe) || redcap.IsPermanent(err) || errors.As(err, &rp)
}

// ErrBudgetSpent wraps the last error of a run whose retry budget is spent.
var ErrBudgetSpent = errors.New("retries exhausted")

// Budget is how long a run may spend waiting to retry failed calls.
type Budget struct {
	mu       sync.Mutex
	left     time.Duration
	total    time.Duration
	attempts int
}

// NewBudget gives a run d of retry waits.
func NewBudget(d time.Duration) *Budget { return &Budget{left: d, total: d} }

// spend takes a wait from the budget; false when it does not fit.
func (b *Budget) spend(wait time.Duration) (attempt int, ok bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.attempts++
	if wait > b.left {
		return b.attempts, false
	}
	b.left -= wait
	return b.attempts, true
}

// Attempts is how many failed attempts the budget has seen.
func (b *Budget) Attempts() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.attempts
}

// Value calls f until it succeeds, fails permanently, ctx ends, or the
// policy's time (or the shared budget) is up.
func Value[T any](ctx context.Context, p Policy, f func() (T, error)) (T, error) {
	eb := backoff.NewExponentialBackOff()
	eb.InitialInterval = or(p.Initial, 500*time.Millisecond)
	eb.MaxInterval = or(p.Max, 30*time.Second)
	eb.MaxElapsedTime = or(p.MaxElapsed, 10*time.Minute)
	var b backoff.BackOff = eb
	if p.Budget != nil {
		b = &budgeted{BackOff: eb, budget: p.Budget}
	}
	attempt := 0
	v, err := backoff.RetryNotifyWithData(func() (T, error) {
		v, err := f()
		if err != nil && (IsPermanent(err) || ctx.Err() != nil) {
			return v, backoff.Permanent(err)
		}
		return v, err
	}, backoff.WithContext(b, ctx), func(err error, next time.Duration) {
		attempt++
		if p.Notify != nil {
			p.Notify(err, attempt, next)
		}
	})
	if err != nil && p.Budget != nil && !IsPermanent(err) && ctx.Err() == nil && p.Budget.exhausted() {
		return v, Permanent(fmt.Errorf("%w after %s of retries (%d failed attempts): %w", ErrBudgetSpent, p.Budget.total, p.Budget.Attempts(), err))
	}
	return v, err
}

// budgeted stops retrying when the run's budget cannot pay the next wait.
type budgeted struct {
	backoff.BackOff
	budget *Budget
}

func (b *budgeted) NextBackOff() time.Duration {
	d := b.BackOff.NextBackOff()
	if d == backoff.Stop {
		return d
	}
	if _, ok := b.budget.spend(d); !ok {
		b.budget.mu.Lock()
		b.budget.left = 0
		b.budget.mu.Unlock()
		return backoff.Stop
	}
	return d
}

func (b *Budget) exhausted() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.left == 0
}

func or(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}
