// Package ops holds the operator's tools behind `relay status`, `relay
// replay`, `relay dlq` and `relay healthcheck`. They work against any NATS
// server the pipeline uses (embedded, the compose container, an external
// cluster) with an operator (admin) NATS user, and never print a field value
// unless the operator asks for it explicitly.
package ops

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/redcap-relay/relay/services/internal/pipeline/broker"
)

// Conn says how an operator tool reaches NATS.
type Conn struct {
	URL      string
	User     string
	Password string
	CAFile   string
	// Timeout bounds the first connection (default 15s): an operator tool
	// should say quickly that the server is unreachable.
	Timeout time.Duration
	Logger  *slog.Logger
}

// Dial connects and returns the connection and its JetStream context.
func Dial(ctx context.Context, c Conn) (*nats.Conn, jetstream.JetStream, error) {
	if c.URL == "" {
		return nil, nil, fmt.Errorf("no NATS URL: give --nats nats://host:4222 (or a network file whose nats.url is set)")
	}
	if c.Timeout == 0 {
		c.Timeout = 15 * time.Second
	}
	log := c.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	nc, err := broker.Connect(ctx, c.URL, broker.ConnectOptions{Name: "ops", User: c.User, Password: c.Password, CAFile: c.CAFile, Logger: log, Wait: c.Timeout})
	if err != nil {
		return nil, nil, err
	}
	js, err := broker.JetStream(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// scan delivers every message of a stream matching filter from a start point
// (time, sequence, or the beginning) to fn, in order, with an ordered
// consumer that the server removes afterwards. fn returns false to stop.
func scan(ctx context.Context, js jetstream.JetStream, stream string, filters []string, since time.Time, fromSeq uint64, fn func(jetstream.Msg) bool) error {
	return scanWith(ctx, js, stream, scanConfig(filters, since, fromSeq), fn)
}

func scanConfig(filters []string, since time.Time, fromSeq uint64) jetstream.OrderedConsumerConfig {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: filters, InactiveThreshold: 30 * time.Second}
	switch {
	case fromSeq > 0:
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, fromSeq
	case !since.IsZero():
		st := since
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &st
	}
	return cfg
}

// scanWith is scan with a consumer configuration of the caller's (headers
// only, for counting without reading bodies).
func scanWith(ctx context.Context, js jetstream.JetStream, stream string, cfg jetstream.OrderedConsumerConfig, fn func(jetstream.Msg) bool) error {
	cons, err := js.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		return fmt.Errorf("read stream %s: %w", stream, err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return fmt.Errorf("read stream %s: %w", stream, err)
	}
	if info.NumPending == 0 {
		return nil
	}
	empty := 0
	for {
		// FetchNoWait returns what is there now: a Fetch of 500 would wait
		// for its whole timeout on a short tail.
		batch, err := cons.FetchNoWait(500)
		if err != nil {
			return fmt.Errorf("read stream %s: %w", stream, err)
		}
		n := 0
		done := false
		for m := range batch.Messages() {
			n++
			if done {
				continue
			}
			if !fn(m) {
				done = true
				continue
			}
			if md, err := m.Metadata(); err == nil && md.NumPending == 0 {
				done = true
			}
		}
		if done {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if n == 0 {
			// Pending messages not delivered yet (a fresh consumer): wait a
			// little, but do not hang on a stream that was purged meanwhile.
			if empty++; empty > 40 {
				if err := batch.Error(); err != nil {
					return fmt.Errorf("read stream %s: %w", stream, err)
				}
				return nil
			}
			time.Sleep(50 * time.Millisecond)
			continue
		}
		empty = 0
	}
}
