// Package importer loads cleaned records into the destination REDCap. It
// pulls batches from RECORDS_CLEAN (router.RunBatch), makes one Import
// Records call per batch (a bounded number at once), and acks each message
// only after the destination confirmed it. When the destination is down it
// stops taking messages and probes with backoff: the backlog waits in the
// stream, nothing is dead-lettered for an outage. Records REDCap rejects are
// dead-lettered one by one with REDCap's own message; the rest of their
// batch is imported.
package importer

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/pipeline/retry"
	"github.com/redcap-relay/relay/services/internal/pipeline/router"
	"github.com/redcap-relay/relay/services/internal/pipeline/sitemeta"
	"github.com/redcap-relay/relay/services/internal/pipeline/telemetry"
	"github.com/redcap-relay/relay/services/internal/pipeline/topology"
	"github.com/redcap-relay/relay/services/internal/redcap"
)

// Deps is what the importer needs.
type Deps struct {
	JS          jetstream.JetStream
	Streams     config.Streams
	Destination Destination        // the destination's client (sitekit.Kit's)
	Settings    config.Destination // batch size, concurrency, overwrite
	Store       Store              // default: JetStreamStore on JS
	Logger      *slog.Logger
	// MaxProbeInterval caps the wait between probes of a down destination.
	MaxProbeInterval time.Duration
}

// Destination is the part of the destination's REDCap client the importer
// uses.
type Destination interface {
	sitemeta.Source
	ImportRecords(ctx context.Context, rows []messages.Row, p redcap.ImportParams) (redcap.ImportResult, error)
	DeleteRecords(ctx context.Context, ids []string) (int, error)
	ExportRecords(ctx context.Context, p redcap.ExportParams) ([]messages.Row, error)
}

// Importer holds the destination client and the latest-wins versions.
type Importer struct {
	d    Deps
	log  *slog.Logger
	vers *versions

	mu       sync.Mutex
	inflight map[string]bool // destination record IDs being imported by a worker
	up       bool
}

// Run imports until ctx ends.
func Run(ctx context.Context, d Deps) error {
	im, err := New(ctx, d)
	if err != nil {
		return err
	}
	return im.Run(ctx)
}

// New builds the importer and loads the versions already imported.
func New(ctx context.Context, d Deps) (*Importer, error) {
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	if d.MaxProbeInterval == 0 {
		d.MaxProbeInterval = 30 * time.Second
	}
	if d.Store == nil {
		d.Store = JetStreamStore{JS: d.JS}
	}
	if d.Destination == nil {
		return nil, fmt.Errorf("importer: no destination client")
	}
	vers, err := loadVersions(ctx, d.Store)
	if err != nil {
		return nil, err
	}
	return &Importer{d: d, log: d.Logger.With("service", topology.Importer), vers: vers, inflight: map[string]bool{}, up: true}, nil
}

// fetchLinger is how long a partly filled batch waits for more records.
const fetchLinger = 20 * time.Millisecond

// Run starts the workers: each fetches a batch and makes one import call,
// so at most Concurrency calls reach the destination at once.
func (im *Importer) Run(ctx context.Context) error {
	telemetry.DestinationUp.Set(1)
	go im.refreshDestinationSnapshot(ctx)
	return router.RunBatch(ctx, im.d.JS, topology.Import, im.d.Streams, router.BatchOptions{
		Workers: im.d.Settings.Concurrency, Batch: im.d.Settings.BatchSize, Linger: fetchLinger, Logger: im.log,
	}, im.process)
}

// refreshDestinationSnapshot publishes the destination's data dictionary
// for the exporters' destination check (they have no destination token).
func (im *Importer) refreshDestinationSnapshot(ctx context.Context) {
	for ctx.Err() == nil {
		snap, err := sitemeta.Fetch(ctx, im.d.Destination, "destination", retry.Policy{MaxElapsed: time.Minute})
		if err == nil {
			err = im.d.Store.PutSnapshot(ctx, messages.DestinationMetadataKey, snap)
		}
		wait := time.Hour
		if err != nil {
			im.log.Warn("destination metadata not refreshed", "err", err)
			wait = 30 * time.Second
		}
		sleep(ctx, wait)
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
