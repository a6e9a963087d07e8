// Package retry retries REDCap calls on transient errors with exponential
// backoff (cenkalti/backoff/v4). Each API call is retried on its own: a
// sequence of calls retried as a whole would never finish against a server
// that fails every few calls.
package retry

import (
	"context"
	"errors"
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

// IsPermanent: marked so, a permanent REDCap error, or a recovered panic.
func IsPermanent(err error) bool {
	var pe *permanentError
	var rp middleware.RecoveredPanicError
	return errors.As(err, &pe) || redcap.IsPermanent(err) || errors.As(err, &rp)
}

// Value calls f until it succeeds, fails permanently, ctx ends, or the
// policy's time is up.
func Value[T any](ctx context.Context, p Policy, f func() (T, error)) (T, error) {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = or(p.Initial, 500*time.Millisecond)
	b.MaxInterval = or(p.Max, 30*time.Second)
	b.MaxElapsedTime = or(p.MaxElapsed, 10*time.Minute)
	return backoff.RetryWithData(func() (T, error) {
		v, err := f()
		if err != nil && (IsPermanent(err) || ctx.Err() != nil) {
			return v, backoff.Permanent(err)
		}
		return v, err
	}, backoff.WithContext(b, ctx))
}

// Do is Value for calls without a result.
func Do(ctx context.Context, p Policy, f func() error) error {
	_, err := Value(ctx, p, func() (struct{}, error) { return struct{}{}, f() })
	return err
}

func or(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}
