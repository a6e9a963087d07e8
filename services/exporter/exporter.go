// Package exporter runs site exports: for each export request it takes the
// site's metadata snapshot, compiles the site's transfer policy against it,
// lists the record IDs, exports the changed records in batches restricted to
// the approved fields, and publishes one message per record on
// relay.records.raw.<site>. Its cursor and known-record set advance only
// after the whole run is stored in JetStream.
package exporter

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/pipeline/router"
	"github.com/redcap-relay/relay/services/internal/pipeline/sitekit"
	"github.com/redcap-relay/relay/services/internal/pipeline/sitemeta"
	"github.com/redcap-relay/relay/services/internal/pipeline/topology"
	"github.com/redcap-relay/relay/services/internal/policy"
	"github.com/redcap-relay/relay/services/internal/redcap"
)

// Deps is what the exporter needs.
type Deps struct {
	NC      *nats.Conn
	JS      jetstream.JetStream
	Streams config.Streams
	Sites   Sites
	Store   Store // default: JetStreamStore on JS
	Logger  *slog.Logger
	// MaxRawBacklog pauses exports while more raw records than this wait
	// for the transformers (default 20,000).
	MaxRawBacklog int
	// Parallel is how many requests this replica works on at once (see
	// Parallelism).
	Parallel int
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Parallelism is the number of request subscribers for a network of n
// sites. Each subscriber handles one request at a time and the queue group
// hands a request to a random subscriber, busy or not: with one subscriber
// per site, two sites' requests often land on the same one and run one
// after the other. Many idle subscribers (they are cheap) keep sites in
// parallel; the consumer's MaxAckPending still caps the runs at once.
func Parallelism(sites int) int { return min(256, max(64, 16*sites)) }

// Sites is what the exporter needs per site (sitekit.Kit in production).
type Sites interface {
	Site(id string) (*config.Site, error)
	Client(site string) (REDCap, error)
	Policy(site string, snap *messages.MetadataSnapshot) (*policy.Compiled, error)
}

// REDCap is the part of a site's REDCap client the exporter uses.
type REDCap interface {
	sitemeta.Source
	ExportRecordIDs(ctx context.Context, idField string, since time.Time) ([]string, error)
	ExportRecords(ctx context.Context, p redcap.ExportParams) ([]messages.Row, error)
	ExportDAGs(ctx context.Context) ([]messages.DAG, error)
	GenerateNextRecordName(ctx context.Context) (string, error)
	ExportFile(ctx context.Context, ref redcap.FileRef, w io.Writer) (redcap.FileInfo, error)
	ExportLogging(ctx context.Context, p redcap.LogParams) ([]redcap.LogEntry, error)
	Calls() int64
}

// KitSites adapts a sitekit.Kit to Sites.
func KitSites(k *sitekit.Kit) Sites { return kitSites{k} }

type kitSites struct{ *sitekit.Kit }

func (s kitSites) Client(site string) (REDCap, error) {
	c, err := s.Kit.Client(site)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Exporter handles export requests.
type Exporter struct {
	d   Deps
	log *slog.Logger

	backpressureOffUntil atomic.Int64 // Unix ns; set when the backlog cannot be read
}

// New checks the dependencies and fills the defaults.
func New(d Deps) *Exporter {
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	if d.Store == nil {
		d.Store = JetStreamStore{NC: d.NC, JS: d.JS, LeaseRenew: d.Streams.ExportAckWait.D() / 4, FileTTL: d.Streams.CleanMaxAge.D(), Log: d.Logger}
	}
	if d.MaxRawBacklog == 0 {
		d.MaxRawBacklog = 20000
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Parallel == 0 {
		d.Parallel = Parallelism(1)
	}
	return &Exporter{d: d, log: d.Logger.With("service", topology.Exporter)}
}

// Run consumes export requests until ctx ends.
func Run(ctx context.Context, d Deps) error {
	e := New(d)
	return router.Run(ctx, d.NC, d.JS, topology.Export, d.Streams, router.Options{
		Parallel:       e.d.Parallel,
		HandlerTimeout: d.Streams.ExportRunTimeout.D(),
		KeepAlive:      topology.Export.AckWait(d.Streams) / 4,
		// A run retries each REDCap call itself; retrying the whole run
		// here would only repeat work.
		Retry:  middleware.Retry{MaxRetries: 0},
		Logger: e.log,
	}, e.handle)
}

func (e *Exporter) handle(msg *message.Message) error {
	var req messages.ExportRequested
	if err := router.Decode(msg.Payload, &req); err != nil {
		return err
	}
	return e.Export(msg.Context(), req)
}
