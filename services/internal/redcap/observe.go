package redcap

import (
	"errors"
	"strings"
	"time"
)

// Observer is told of every finished API call made through post: the call's
// name ("export records"), the HTTP status (0 when no answer came), how long
// it took, and its error (nil on success). It must be quick and must not
// keep err's text anywhere a field value could leak from: errors of this
// package never hold one, and Outcome gives a label without any text.
type Observer func(call string, status int, dur time.Duration, err error)

// Outcome is a short label for a call's result, for metrics: "ok",
// "rejected" (REDCap refused the data: a 400 with problem lines), "permanent"
// (token, rights, request), "timeout", "network" (no answer) or
// "transient" (a 5xx, a bad body, a ban).
func Outcome(status int, err error) string {
	if err == nil {
		return "ok"
	}
	var e *Error
	if !errors.As(err, &e) {
		return "transient"
	}
	switch {
	case len(e.Problems) > 0:
		return "rejected"
	case e.Kind == KindPermanent:
		return "permanent"
	case status == 0 && IsTimeout(err):
		return "timeout"
	case status == 0:
		return "network"
	}
	return "transient"
}

// IsTimeout reports whether a call failed because its time ran out.
func IsTimeout(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == 0 &&
		(strings.HasPrefix(e.Message, "no complete answer within") || e.Message == "network timeout")
}

func (c *Client) observe(call string, start time.Time, status int, err error) {
	if c.obs != nil {
		c.obs(call, status, time.Since(start), err)
	}
}
