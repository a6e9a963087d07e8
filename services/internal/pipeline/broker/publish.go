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

// Publish sends one message and waits for the stream's ack.
func Publish(ctx context.Context, js jetstream.JetStream, subject, msgID string, r Route, v any) error {
	m, err := NewMsg(subject, msgID, r, v)
	if err != nil {
		return err
	}
	if _, err := js.PublishMsg(ctx, m); err != nil {
		return publishError(subject, err)
	}
	return nil
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
// the first failure. Failed messages are not lost: the caller's run fails and
// its cursor does not advance, so the next run exports them again.
func (b *Batch) Wait(ctx context.Context) error {
	var first error
	for _, f := range b.pending {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			if first == nil {
				first = publishError(f.Msg().Subject, err)
			}
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	b.pending = b.pending[:0]
	return first
}
