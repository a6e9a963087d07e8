// Package router wires watermill the way every per-message hop of the
// pipeline needs it (ticker→exporter, exporter→transformer): a subscriber
// bound to the service's provisioned durable with manual acks and a queue
// group, and the middleware chain
//
//	CorrelationID → PoisonQueue (permanent errors, to relay.dlq.<stage>.<site>)
//	  → Retry with backoff (transient errors) → cancelAfter → Recoverer
//
// Transient errors that outlast the retries are nacked, so JetStream
// redelivers them later: an outage never dead-letters a message.
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
	"github.com/redcap-relay/relay/services/internal/pipeline/broker"
	"github.com/redcap-relay/relay/services/internal/pipeline/retry"
)

// Permanent marks an error that no retry can fix (a malformed message, a
// policy refusal): the message goes to the dead-letter stream.
func Permanent(err error) error { return retry.Permanent(err) }

// IsPermanent reports whether err is permanent: marked so, a REDCap
// permanent error, or a recovered panic (the same input would panic again).
func IsPermanent(err error) bool { return retry.IsPermanent(err) }

// Decode unmarshals a message body (a pointer to a contract struct with a
// V field) and checks its contract version. Decoding errors never quote the
// body (it may hold PHI).
func Decode(msg *message.Message, v any) error {
	if err := json.Unmarshal(msg.Payload, v); err != nil {
		return Permanent(fmt.Errorf("malformed message body (%d bytes): not the expected JSON contract", len(msg.Payload)))
	}
	if f := reflect.ValueOf(v).Elem().FieldByName("V"); f.IsValid() && f.Int() != messages.V {
		return Permanent(fmt.Errorf("message contract version %d is not supported (this build reads %d)", f.Int(), messages.V))
	}
	return nil
}

// Config describes one watermill-driven service.
type Config struct {
	Stage    string // for dead letters: messages.Stage*
	Stream   string
	Consumer string // durable = queue group
	Topic    string // the consumer's filter subject
	// Parallel is how many messages this replica handles at once.
	Parallel int
	// HandlerTimeout bounds one handling, retries excluded; AckWait must
	// exceed HandlerTimeout plus the retries.
	HandlerTimeout time.Duration
	AckWait        time.Duration
	Retry          middleware.Retry
	Logger         *slog.Logger
	// KeepAlive, when set, tells JetStream every KeepAlive that a message is
	// still being handled, so AckWait can be short (a crashed replica's
	// message comes back quickly) while HandlerTimeout is long.
	KeepAlive time.Duration
}

// Handler handles one message; returning an error nacks (transient) or
// dead-letters (permanent) it.
type Handler func(msg *message.Message) error

// Run subscribes and runs the handler until ctx ends.
func Run(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, c Config, h Handler) error {
	log := c.Logger
	if log == nil {
		log = slog.Default()
	}
	wlog := watermill.NewSlogLoggerWithLevelMapping(log, map[slog.Level]slog.Level{slog.LevelInfo: slog.LevelDebug})
	if c.Parallel < 1 {
		c.Parallel = 1
	}
	// watermill waits this long for our ack before it gives up on a
	// message (JetStream then redelivers after AckWait).
	ackTimeout := c.AckWait - c.AckWait/10
	if c.KeepAlive > 0 {
		ackTimeout = c.HandlerTimeout + c.HandlerTimeout/10 + time.Minute
	}
	sub, err := wmnats.NewSubscriberWithNatsConn(nc, wmnats.SubscriberSubscriptionConfig{
		Unmarshaler:      ackSubjectUnmarshaler{},
		SubscribersCount: c.Parallel,
		AckWaitTimeout:   ackTimeout,
		CloseTimeout:     30 * time.Second,
		SubscribeTimeout: 30 * time.Second,
		QueueGroupPrefix: c.Consumer,
		NakDelay:         wmnats.NewStaticDelay(2 * time.Second),
		JetStream: wmnats.JetStreamConfig{
			// ManualAck: without it watermill-nats auto-acks, and loses,
			// messages whose handler fails or times out.
			SubscribeOptions:  []nats.SubOpt{nats.ManualAck(), nats.Bind(c.Stream, c.Consumer)},
			DurablePrefix:     c.Consumer,
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
		return fmt.Errorf("%s: subscribe: %w", c.Consumer, err)
	}
	r, err := message.NewRouter(message.RouterConfig{CloseTimeout: 30 * time.Second}, wlog)
	if err != nil {
		return err
	}
	poison, err := middleware.PoisonQueueWithFilter(&dlqPublisher{js: js, stage: c.Stage}, messages.SubjectDLQ, IsPermanent)
	if err != nil {
		return err
	}
	retry := c.Retry
	retry.ShouldRetry = func(p middleware.RetryParams) bool { return !IsPermanent(p.Err) }
	retry.Logger = wlog
	r.AddMiddleware(
		middleware.CorrelationID,
		poison,
		retry.Middleware,
		cancelAfter(c.HandlerTimeout),
		middleware.Recoverer,
	)
	r.AddConsumerHandler(c.Consumer, c.Topic, sub, func(msg *message.Message) error {
		if c.KeepAlive > 0 {
			defer keepAlive(nc, msg, c.KeepAlive)()
		}
		err := h(msg)
		if err != nil && !IsPermanent(err) {
			log.Warn("message will be retried", "stage", c.Stage, "site", msg.Metadata.Get(messages.HeaderSite), "msg_id", msg.UUID, "err", err)
		}
		return err
	})
	return r.Run(ctx)
}

// dlqPublisher turns watermill's poisoned messages into the project's
// DeadLetter contract on relay.dlq.<stage>.<site>.
type dlqPublisher struct {
	js    jetstream.JetStream
	stage string
}

func (p *dlqPublisher) Publish(_ string, msgs ...*message.Message) error {
	for _, m := range msgs {
		site := m.Metadata.Get(messages.HeaderSite)
		if site == "" {
			site = "unknown"
		}
		dl := messages.DeadLetter{
			Stage:    p.stage,
			Site:     site,
			RunID:    m.Metadata.Get(messages.HeaderRun),
			RecordID: m.Metadata.Get(messages.HeaderRecord),
			Error:    m.Metadata.Get(middleware.ReasonForPoisonedKey),
			Attempts: 1,
			Subject:  m.Metadata.Get(messages.HeaderSubject),
			MsgID:    m.UUID,
			Payload:  json.RawMessage(nil),
		}
		if json.Valid(m.Payload) {
			dl.Payload = json.RawMessage(m.Payload)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := broker.DeadLetter(ctx, p.js, dl)
		cancel()
		if err != nil {
			return err
		}
	}
	return nil
}

func (p *dlqPublisher) Close() error { return nil }

// metaAckSubject carries JetStream's ack subject of a delivery inside this
// process (never published: dead letters copy named metadata only).
const metaAckSubject = "_relay_ack_subject"

// ackSubjectUnmarshaler is watermill's NATS unmarshaler that also keeps the
// delivery's ack subject, which keepAlive needs.
type ackSubjectUnmarshaler struct{ wmnats.NATSMarshaler }

func (u ackSubjectUnmarshaler) Unmarshal(m *nats.Msg) (*message.Message, error) {
	msg, err := u.NATSMarshaler.Unmarshal(m)
	if err == nil && m.Reply != "" {
		msg.Metadata.Set(metaAckSubject, m.Reply)
	}
	return msg, err
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
