// Package importer loads cleaned records into the destination REDCap. It
// pulls batches from RECORDS_CLEAN with nats.go's jetstream API, makes one
// Import Records call per batch (a bounded number at once), and acks each
// message only after the destination confirmed it. When the destination is
// down it stops taking messages and probes with backoff: the backlog waits
// in the stream, nothing is dead-lettered for an outage. Records REDCap
// rejects are dead-lettered one by one with REDCap's own message; the rest
// of their batch is imported.
package importer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/pipeline/broker"
	"github.com/redcap-relay/relay/services/internal/pipeline/retry"
	"github.com/redcap-relay/relay/services/internal/pipeline/sitemeta"
	"github.com/redcap-relay/relay/services/internal/pipeline/telemetry"
	"github.com/redcap-relay/relay/services/internal/redcap"
)

// Deps is what the importer needs.
type Deps struct {
	JS      jetstream.JetStream
	Network *config.Network
	Logger  *slog.Logger
	Timing  broker.Timing
	// MaxProbeInterval caps the wait between probes of a down destination.
	MaxProbeInterval time.Duration
}

// Importer holds the destination client and the latest-wins versions.
type Importer struct {
	d      Deps
	log    *slog.Logger
	client *redcap.Client
	dest   config.Destination
	vers   *versions

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

// New builds the importer: reads the destination token and loads the
// versions already imported.
func New(ctx context.Context, d Deps) (*Importer, error) {
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	if d.Timing == (broker.Timing{}) {
		d.Timing = broker.DefaultTiming
	}
	if d.MaxProbeInterval == 0 {
		d.MaxProbeInterval = 30 * time.Second
	}
	dest := d.Network.Destination
	token, err := dest.Token.Read()
	if err != nil {
		return nil, fmt.Errorf("destination token (%s): %w", dest.Token, err)
	}
	client, err := redcap.New(redcap.Options{
		Site: "destination", URL: dest.URL, Token: token, CAFile: dest.CAFile,
		CallsPerMinute: dest.CallsPerMinute, Timeout: dest.Timeout.D(), Logger: d.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("destination: %w", err)
	}
	vers, err := loadVersions(ctx, d.JS)
	if err != nil {
		return nil, err
	}
	return &Importer{d: d, log: d.Logger.With("service", "importer"), client: client, dest: dest,
		vers: vers, inflight: map[string]bool{}, up: true}, nil
}

// Run starts the workers: each fetches a batch and makes one import call,
// so at most Concurrency calls reach the destination at once.
func (im *Importer) Run(ctx context.Context) error {
	telemetry.DestinationUp.Set(1)
	go im.refreshDestinationSnapshot(ctx)
	var wg sync.WaitGroup
	for w := 0; w < im.dest.Concurrency; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			im.worker(ctx, w)
		}()
	}
	wg.Wait()
	return ctx.Err()
}

func (im *Importer) worker(ctx context.Context, n int) {
	var cons jetstream.Consumer
	for ctx.Err() == nil {
		if cons == nil {
			c, err := im.d.JS.Consumer(ctx, messages.StreamRecordsClean, broker.ConsumerImporter)
			if err != nil {
				// Deleted by a replay reset, or NATS is restarting.
				if ctx.Err() == nil {
					im.log.Debug("importer consumer not available yet", "worker", n, "err", err)
				}
				sleep(ctx, time.Second)
				continue
			}
			cons = c
		}
		msgs, err := im.fetch(ctx, cons)
		if err != nil {
			cons = nil
			sleep(ctx, 200*time.Millisecond)
			continue
		}
		if len(msgs) > 0 {
			im.process(ctx, msgs)
		}
	}
}

// fetchLinger is how long a partly filled batch waits for more records.
const fetchLinger = 20 * time.Millisecond

// fetch waits (up to a second) for the first message only, then takes what
// is already waiting, up to a batch: a batch-sized fetch would hold a
// trickle of records (an incremental run, the end of a sync) until the
// batch filled or the wait expired. A partly filled batch lingers once, so
// a steady flow still makes full batches (few API calls).
func (im *Importer) fetch(ctx context.Context, cons jetstream.Consumer) ([]jetstream.Msg, error) {
	n := im.dest.BatchSize
	msgs, err := collect(cons.Fetch(1, jetstream.FetchMaxWait(time.Second)))
	if err != nil || len(msgs) == 0 {
		return msgs, err
	}
	for lingered := false; len(msgs) < n && ctx.Err() == nil; {
		more, err := collect(cons.FetchNoWait(n - len(msgs)))
		msgs = append(msgs, more...)
		if err != nil {
			// Keep what we have; the next fetch finds out what is wrong.
			break
		}
		if len(msgs) < n && len(more) == 0 {
			if lingered {
				break
			}
			lingered = true
			sleep(ctx, fetchLinger)
		}
	}
	return msgs, nil
}

// collect drains one fetch. An error is returned only when nothing came
// (a deleted consumer, NATS restarting); ErrConsumerDeleted and
// ErrConsumerNotFound make the worker look the consumer up again.
func collect(batch jetstream.MessageBatch, err error) ([]jetstream.Msg, error) {
	if err != nil {
		return nil, err
	}
	var msgs []jetstream.Msg
	for m := range batch.Messages() {
		msgs = append(msgs, m)
	}
	if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoHeartbeat) && len(msgs) == 0 {
		if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) {
			return nil, err
		}
	}
	return msgs, nil
}

// refreshDestinationSnapshot publishes the destination's data dictionary
// for the exporters' destination check (they have no destination token).
func (im *Importer) refreshDestinationSnapshot(ctx context.Context) {
	for ctx.Err() == nil {
		snap, err := sitemeta.Fetch(ctx, im.client, "destination", retry.Policy{MaxElapsed: time.Minute})
		if err == nil {
			err = putSnapshot(ctx, im.d.JS, messages.DestinationMetadataKey, snap)
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

func containsFold(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}
