// Package exporter runs site exports: for each export request it takes the
// site's metadata snapshot, compiles the site's transfer policy against it,
// lists the record IDs, exports the changed records in batches restricted to
// the approved fields, and publishes one message per record on
// relay.records.raw.<site>. Its cursor and known-record set advance only
// after the whole run is stored in JetStream.
package exporter

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/pipeline/broker"
	"github.com/redcap-relay/relay/services/internal/pipeline/retry"
	"github.com/redcap-relay/relay/services/internal/pipeline/router"
)

// Deps is what the exporter needs.
type Deps struct {
	NC      *nats.Conn
	JS      jetstream.JetStream
	Network *config.Network
	Logger  *slog.Logger
	Timing  broker.Timing
	// RetryFor bounds how long one REDCap call is retried on transient errors
	// before the run gives up (and the request is redelivered later).
	RetryFor time.Duration
	// MaxRawBacklog pauses exports while more raw records than this wait
	// for the transformers (default 20,000).
	MaxRawBacklog int
}

// Run consumes export requests until ctx ends.
func Run(ctx context.Context, d Deps) error {
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	if d.Timing == (broker.Timing{}) {
		d.Timing = broker.DefaultTiming
	}
	if d.Timing.ExportRunTimeout == 0 { // tests give ack waits only
		d.Timing.ExportRunTimeout = broker.DefaultTiming.ExportRunTimeout
	}
	if d.MaxRawBacklog == 0 {
		d.MaxRawBacklog = 20000
	}
	if d.RetryFor == 0 {
		d.RetryFor = 10 * time.Minute
	}
	e := &Exporter{d: d, log: d.Logger.With("service", "exporter"), retry: retry.Policy{MaxElapsed: d.RetryFor}}
	// Each subscriber handles one request at a time and the queue group
	// hands a request to a random subscriber, busy or not: with one
	// subscriber per site, two sites' requests often land on the same one
	// and run one after the other. Many idle subscribers (they are cheap)
	// keep sites in parallel; the consumer's MaxAckPending still caps the
	// runs at once.
	parallel := min(256, max(64, 16*len(d.Network.Sites)))
	return router.Run(ctx, d.NC, d.JS, router.Config{
		Stage:          messages.StageExport,
		Stream:         messages.StreamExportRequests,
		Consumer:       broker.ConsumerExporter,
		Topic:          messages.SubjectExportRequested + ".*",
		Parallel:       parallel,
		HandlerTimeout: d.Timing.ExportRunTimeout,
		AckWait:        d.Timing.ExportAckWait,
		KeepAlive:      d.Timing.ExportAckWait / 4,
		// A run retries each REDCap call itself; retrying the whole run
		// here would only repeat work.
		Retry:  middleware.Retry{MaxRetries: 0},
		Logger: e.log,
	}, e.handle)
}

// Exporter handles export requests.
type Exporter struct {
	d     Deps
	log   *slog.Logger
	retry retry.Policy

	backpressureOffUntil atomic.Int64 // Unix ns; set when the backlog cannot be read
}

func (e *Exporter) handle(msg *message.Message) error {
	var req messages.ExportRequested
	if err := router.Decode(msg, &req); err != nil {
		return err
	}
	return e.Export(msg.Context(), req)
}
