// Package router is the one way the pipeline consumes and dead-letters.
//
// Per-message hops (ticker→exporter, exporter→transformer) run on watermill
// (Run): a subscriber bound to the stage's provisioned push durable with
// manual acks and a queue group, and the middleware chain
//
//	CorrelationID → PoisonQueue (permanent errors, to relay.dlq.<stage>.<site>)
//	  → Retry with backoff (transient errors) → cancelAfter → Recoverer
//
// Batch hops (importer, checker) pull from their durable with nats.go's
// jetstream API (RunBatch) and decide per delivery: ack, retry later, or
// dead-letter. Both share the decoding (Decode), the permanent/transient
// decision (retry.IsPermanent), the in-progress heartbeat and DeadLetter,
// which writes every dead letter of every stage and counts the metric.
//
// Transient errors are never dead-lettered: they are retried, then nacked,
// and JetStream redelivers them later, so an outage loses nothing.
//
// Why watermill-nats' pkg/nats and not its pkg/jetstream: pkg/jetstream is
// experimental in watermill-nats v2.1 and, measured with it, a malformed
// message crashes the process, its grouped consumers vanish after a few idle
// seconds and then redeliver everything, and it has no message-ID dedupe.
// pkg/nats on the legacy JetStream API, bound to a durable we provision
// ourselves, with manual acks and the header marshaler, has none of these
// problems.
package router

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"reflect"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmnats "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/nats"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/pipeline/broker"
	"github.com/redcap-relay/relay/services/internal/pipeline/retry"
	"github.com/redcap-relay/relay/services/internal/pipeline/topology"
)

// Decode unmarshals a message body into a contract struct (a pointer to a
// struct with a V field) and checks its contract version. Its errors are
// permanent and never quote the body (it may hold PHI).
func Decode(payload []byte, v any) error {
	if err := json.Unmarshal(payload, v); err != nil {
		return retry.Permanent(fmt.Errorf("malformed message body (%d bytes): not the expected JSON contract", len(payload)))
	}
	if f := reflect.ValueOf(v).Elem().FieldByName("V"); f.IsValid() && f.Int() != messages.V {
		return retry.Permanent(fmt.Errorf("message contract version %d is not supported (this build reads %d)", f.Int(), messages.V))
	}
	return nil
}

// Options tune one per-message service.
type Options struct {
	// Parallel is how many messages this replica handles at once.
	Parallel int
	// HandlerTimeout bounds one handling, retries excluded.
	HandlerTimeout time.Duration
	// Retry retries transient errors in process before the message is
	// nacked; the stage's ack wait must exceed HandlerTimeout plus the
	// retries unless KeepAlive is set.
	Retry middleware.Retry
	// KeepAlive, when set, tells JetStream every KeepAlive that a message is
	// still being handled, so the ack wait can be short (a crashed replica's
	// message comes back quickly) while HandlerTimeout is long.
	KeepAlive time.Duration
	Logger    *slog.Logger
}

// Handler handles one message; returning an error nacks (transient) or
// dead-letters (permanent) it.
type Handler func(msg *message.Message) error

// Run subscribes to the stage's push durable and runs the handler until ctx
// ends.
func Run(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, st topology.Stage, streams config.Streams, o Options, h Handler) error {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	wlog := watermill.NewSlogLoggerWithLevelMapping(log, map[slog.Level]slog.Level{slog.LevelInfo: slog.LevelDebug})
	if o.Parallel < 1 {
		o.Parallel = 1
	}
	ackWait := st.AckWait(streams)
	// watermill waits this long for our ack before it gives up on a
	// message (JetStream then redelivers after the ack wait).
	ackTimeout := ackWait - ackWait/10
	if o.KeepAlive > 0 {
		ackTimeout = o.HandlerTimeout + o.HandlerTimeout/10 + time.Minute
	}
	sub, err := wmnats.NewSubscriberWithNatsConn(nc, wmnats.SubscriberSubscriptionConfig{
		Unmarshaler:      deliveryUnmarshaler{},
		SubscribersCount: o.Parallel,
		AckWaitTimeout:   ackTimeout,
		CloseTimeout:     30 * time.Second,
		SubscribeTimeout: 30 * time.Second,
		QueueGroupPrefix: st.Consumer,
		NakDelay:         wmnats.NewStaticDelay(2 * time.Second),
		JetStream: wmnats.JetStreamConfig{
			// ManualAck: without it watermill-nats auto-acks, and loses,
			// messages whose handler fails or times out.
			SubscribeOptions:  []nats.SubOpt{nats.ManualAck(), nats.Bind(st.Stream, st.Consumer)},
			DurablePrefix:     st.Consumer,
			DurableCalculator: func(prefix, _ string) string { return prefix },
			TrackMsgId:        true,
			// Ack without waiting for the server's confirmation: a lost ack
			// only means a redelivery, which every handler tolerates
			// (deterministic message IDs, latest wins), and waiting would
			// cost a round trip per message on every hop.
			AckAsync: true,
		},
	}, wlog)
	if err != nil {
		return fmt.Errorf("%s: subscribe: %w", st.Consumer, err)
	}
	r, err := message.NewRouter(message.RouterConfig{CloseTimeout: 30 * time.Second}, wlog)
	if err != nil {
		return err
	}
	poison, err := middleware.PoisonQueueWithFilter(&dlqPublisher{js: js, stage: st.Name, log: log}, messages.SubjectDLQ, retry.IsPermanent)
	if err != nil {
		return err
	}
	rt := o.Retry
	rt.ShouldRetry = func(p middleware.RetryParams) bool { return !retry.IsPermanent(p.Err) && ctx.Err() == nil }
	rt.Logger = wlog
	r.AddMiddleware(
		middleware.CorrelationID,
		poison,
		rt.Middleware,
		cancelAfter(o.HandlerTimeout),
		middleware.Recoverer,
	)
	r.AddConsumerHandler(st.Consumer, st.Filter, sub, func(msg *message.Message) error {
		if o.KeepAlive > 0 {
			defer keepAlive(nc, msg, o.KeepAlive)()
		}
		err := h(msg)
		if err != nil && !retry.IsPermanent(err) && ctx.Err() == nil {
			log.Warn("message will be retried", "stage", st.Name, "site", msg.Metadata.Get(messages.HeaderSite), "msg_id", msg.UUID, "err", err)
		}
		return err
	})
	return r.Run(ctx)
}

// dlqPublisher turns watermill's poisoned messages into dead letters.
type dlqPublisher struct {
	js    jetstream.JetStream
	stage string
	log   *slog.Logger
}

func (p *dlqPublisher) Publish(_ string, msgs ...*message.Message) error {
	for _, m := range msgs {
		dl := messages.DeadLetter{
			Stage:    p.stage,
			Site:     m.Metadata.Get(messages.HeaderSite),
			RunID:    m.Metadata.Get(messages.HeaderRun),
			RecordID: m.Metadata.Get(messages.HeaderRecord),
			Error:    m.Metadata.Get(middleware.ReasonForPoisonedKey),
			Attempts: attemptOf(m),
			Subject:  m.Metadata.Get(messages.HeaderSubject),
			MsgID:    m.UUID,
		}
		if json.Valid(m.Payload) {
			dl.Payload = json.RawMessage(m.Payload)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := DeadLetter(ctx, p.js, p.log, dl)
		cancel()
		if err != nil {
			return err
		}
	}
	return nil
}

func (p *dlqPublisher) Close() error { return nil }

// Metadata this package keeps on a delivery inside the process (never
// published: dead letters copy named fields only).
const (
	metaAckSubject = "_relay_ack_subject"
	metaAttempt    = "_relay_attempt"
)

// deliveryUnmarshaler is watermill's NATS unmarshaler that also keeps the
// delivery's ack subject (keepAlive needs it) and its delivery count (dead
// letters name the attempt).
type deliveryUnmarshaler struct{ wmnats.NATSMarshaler }

func (u deliveryUnmarshaler) Unmarshal(m *nats.Msg) (*message.Message, error) {
	msg, err := u.NATSMarshaler.Unmarshal(m)
	if err != nil {
		return msg, err
	}
	if m.Reply != "" {
		msg.Metadata.Set(metaAckSubject, m.Reply)
		if md, err := m.Metadata(); err == nil {
			msg.Metadata.Set(metaAttempt, fmt.Sprint(md.NumDelivered))
		}
	}
	return msg, nil
}

func attemptOf(m *message.Message) int {
	var n int
	if _, err := fmt.Sscan(m.Metadata.Get(metaAttempt), &n); err != nil || n < 1 {
		return 1
	}
	return n
}

// keepAlive sends JetStream's in-progress ack ("+WPI", what nats.Msg's
// InProgress sends) every interval until stop is called.
func keepAlive(nc *nats.Conn, msg *message.Message, every time.Duration) (stop func()) {
	subject := msg.Metadata.Get(metaAckSubject)
	if subject == "" {
		return func() {}
	}
	return broker.Heartbeat(every, func() { _ = nc.Publish(subject, []byte("+WPI")) })
}

// cancelAfter cancels a handler's context after d, like watermill's Timeout
// middleware, but without giving the context a deadline: nats.go bounds a
// JetStream API request by its default timeout only when the context has
// none, and a request whose reply was lost (NATS restarted mid-request) must
// fail in seconds, not when a six-hour export run times out.
func cancelAfter(d time.Duration) message.HandlerMiddleware {
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			ctx, cancel := context.WithCancel(msg.Context())
			defer cancel()
			t := time.AfterFunc(d, cancel)
			defer t.Stop()
			msg.SetContext(ctx)
			return h(msg)
		}
	}
}
