package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/redcap-relay/relay/messages"
)

// WatermillUUIDHeader is the header watermill-nats' NATSMarshaler reads as the
// message UUID; we set it to the deterministic message ID so that what
// watermill sees, logs and dead-letters is the same ID JetStream dedupes on.
const WatermillUUIDHeader = "_watermill_message_uuid"

// Route is what a message's headers say about it, so operators and dead
// letters can name the site, run and record without decoding (or exposing)
// the body.
type Route struct{ Site, Run, Record string }

// NewMsg builds a JSON message with the dedupe ID and routing headers.
func NewMsg(subject, msgID string, r Route, v any) (*nats.Msg, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", subject, err)
	}
	m := nats.NewMsg(subject)
	m.Data = body
	m.Header.Set(jetstream.MsgIDHeader, msgID)
	m.Header.Set(WatermillUUIDHeader, msgID)
	m.Header.Set(messages.HeaderSubject, subject)
	for k, v := range map[string]string{messages.HeaderSite: r.Site, messages.HeaderRun: r.Run, messages.HeaderRecord: r.Record} {
		if v != "" {
			m.Header.Set(k, v)
		}
	}
	return m, nil
}

// ElectionWait is how long a publish keeps retrying an error a JetStream
// cluster gives while it elects a stream's leader (Transient): a node shut
// down or killed, the client moving to another node. An election takes a few
// seconds; what still fails after this is reported (a deleted stream answers
// "no responders" too, for ever).
var ElectionWait = 45 * time.Second

// PublishAttemptTimeout bounds one attempt of a sync Publish.
var PublishAttemptTimeout = 10 * time.Second

// Transient reports whether a publish or JetStream API error is one a
// cluster gives during a leader change or a node's restart, so the same
// request (same message ID: JetStream keeps one copy) may succeed shortly:
// 503 API errors (10008 "JetStream system temporarily unavailable" and
// kin), no response from the stream, no responders (no leader holds the
// subject's interest yet), timeouts and a connection that is reconnecting.
func Transient(err error) bool {
	if err == nil {
		return false
	}
	var api *jetstream.APIError
	if errors.As(err, &api) {
		return api.Code == 503 || api.Code == 408 || api.ErrorCode == 10008
	}
	for _, t := range []error{jetstream.ErrNoStreamResponse, nats.ErrNoResponders, jetstream.ErrAsyncPublishTimeout,
		jetstream.ErrTooManyStalledMsgs, nats.ErrTimeout, context.DeadlineExceeded, nats.ErrConnectionReconnecting,
		nats.ErrDisconnected} {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}

// Publish sends one message and waits for the stream's ack. Errors of a
// leader election (Transient) are retried, with the same message ID, for up
// to ElectionWait.
func Publish(ctx context.Context, js jetstream.JetStream, subject, msgID string, r Route, v any) error {
	m, err := NewMsg(subject, msgID, r, v)
	if err != nil {
		return err
	}
	var deadline time.Time
	for attempt := 0; ; attempt++ {
		// Each attempt waits at most PublishAttemptTimeout: a message
		// written to a node's socket just before the node died is never
		// answered, and the caller's deadline may be far away.
		actx, cancel := context.WithTimeout(ctx, PublishAttemptTimeout)
		_, err := js.PublishMsg(actx, m)
		cancel()
		if err == nil {
			return nil
		}
		if !Transient(err) || ctx.Err() != nil {
			return publishError(subject, err)
		}
		if deadline.IsZero() {
			deadline = time.Now().Add(ElectionWait)
		}
		if time.Now().After(deadline) {
			return publishError(subject, fmt.Errorf("still failing after %s of retries: %w", ElectionWait, err))
		}
		if err := sleep(ctx, electionBackoff(attempt)); err != nil {
			return publishError(subject, err)
		}
	}
}

// electionBackoff is the wait before retry attempt+1: 250 ms doubling to 4 s.
func electionBackoff(attempt int) time.Duration {
	d := 250 * time.Millisecond
	for i := 0; i < attempt && d < 4*time.Second; i++ {
		d *= 2
	}
	return min(d, 4*time.Second)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// MissingStreamRemedy is what an operator does when a stream is gone.
const MissingStreamRemedy = "(deleted, or not recovered after a crash: look for \"Error recreating stream\" in the NATS log); " +
	"run `relay provision`, then `relay sync --all --full`"

// publishError names the subject and, when no stream answered, the remedy:
// the stream is gone (deleted, or not recovered by the NATS server after a
// crash), and only the admin's `relay provision` brings it back.
func publishError(subject string, err error) error {
	if errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders) {
		return fmt.Errorf("publish %s: no stream takes this subject on the NATS server %s: %w", subject, MissingStreamRemedy, err)
	}
	return fmt.Errorf("publish %s: %w", subject, err)
}

// Batch publishes asynchronously and collects the acks, so a site run can
// publish thousands of records without a round trip each.
type Batch struct {
	js      jetstream.JetStream
	pending []jetstream.PubAckFuture
	Sent    int
	// Republished counts messages sent again after a transient failure
	// (a leader election): the same IDs, so JetStream keeps one copy.
	Republished int
}

func NewBatch(js jetstream.JetStream) *Batch { return &Batch{js: js} }

// Add queues one message. When the client's async window is full it waits
// (stall wait) rather than failing fast; every 2,048 messages it waits for
// the acks, bounded by ctx and by PublishAckTimeout.
func (b *Batch) Add(ctx context.Context, subject, msgID string, r Route, v any) error {
	m, err := NewMsg(subject, msgID, r, v)
	if err != nil {
		return err
	}
	f, err := b.js.PublishMsgAsync(m, jetstream.WithStallWait(30*time.Second))
	if err != nil {
		return publishError(subject, err)
	}
	b.pending = append(b.pending, f)
	b.Sent++
	if len(b.pending) >= 2048 {
		return b.Wait(ctx)
	}
	return nil
}

// Wait blocks until every queued message is stored (or failed) and returns
// the first failure. Messages that failed on an error of a leader election
// (Transient: no response from the stream, a lost ack after the client moved
// to another node, 10008) are published again, with the same IDs, in rounds
// for up to ElectionWait. Failed messages are not lost: the caller's run
// fails and its cursor does not advance, so the next run exports them again.
func (b *Batch) Wait(ctx context.Context) error {
	defer func() { b.pending = b.pending[:0] }()
	var deadline time.Time
	for round := 0; ; round++ {
		var again []*nats.Msg
		var first, transient error
		for _, f := range b.pending {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				switch {
				case Transient(err):
					again = append(again, f.Msg())
					if transient == nil {
						transient = publishError(f.Msg().Subject, err)
					}
				case first == nil:
					first = publishError(f.Msg().Subject, err)
				}
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		if first != nil {
			return first
		}
		if len(again) == 0 {
			return nil
		}
		if deadline.IsZero() {
			deadline = time.Now().Add(ElectionWait)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d messages still failing after %s of retries: %w", len(again), ElectionWait, transient)
		}
		if err := sleep(ctx, electionBackoff(round)); err != nil {
			return err
		}
		b.pending = b.pending[:0]
		for _, m := range again {
			f, err := b.js.PublishMsgAsync(m, jetstream.WithStallWait(30*time.Second))
			if err != nil {
				if !Transient(err) {
					return publishError(m.Subject, err)
				}
				// Not even queued (reconnecting): the next round tries again.
				f = failedFuture{m: m, err: err}
			}
			b.pending = append(b.pending, f)
			b.Republished++
		}
	}
}

// failedFuture is a publish that could not be sent at all.
type failedFuture struct {
	m   *nats.Msg
	err error
}

func (f failedFuture) Ok() <-chan *jetstream.PubAck { return nil }
func (f failedFuture) Err() <-chan error {
	c := make(chan error, 1)
	c <- f.err
	return c
}
func (f failedFuture) Msg() *nats.Msg { return f.m }
