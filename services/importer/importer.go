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
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/pipeline/retry"
	"github.com/redcap-relay/relay/services/internal/pipeline/router"
	"github.com/redcap-relay/relay/services/internal/pipeline/sitemeta"
	"github.com/redcap-relay/relay/services/internal/pipeline/topology"
	"github.com/redcap-relay/relay/services/internal/redcap"
)

// Deps is what the importer needs.
type Deps struct {
	NC          *nats.Conn // for the exporters' destination check (request/reply)
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
	ImportFile(ctx context.Context, ref redcap.FileRef, name string, r io.Reader, size int64) error
	RenameRecord(ctx context.Context, oldID, newID string, arm int) error
	DeleteFile(ctx context.Context, ref redcap.FileRef) error
}

// Importer holds the destination client and the latest-wins versions.
type Importer struct {
	d     Deps
	log   *slog.Logger
	vers  *versions
	sizer *batchSizer
	// overloadPause is the wait before an overloaded batch's halves.
	overloadPause time.Duration

	mu        sync.Mutex
	inflight  map[string]bool // destination record IDs being imported by a worker
	up        bool
	confirmed bool // a call to the destination has succeeded

	snapMu    sync.Mutex
	snap      *messages.MetadataSnapshot // the destination's dictionary, last read
	snapFetch chan struct{}              // closed when the read in progress ends
	snapErr   error
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
		d.Store = JetStreamStore{JS: d.JS, Log: d.Logger}
	}
	if d.Destination == nil {
		return nil, fmt.Errorf("importer: no destination client")
	}
	vers, err := loadVersions(ctx, d.Store)
	if err != nil {
		return nil, err
	}
	return &Importer{d: d, log: d.Logger.With("service", topology.Importer), vers: vers, inflight: map[string]bool{}, up: true,
		sizer: newBatchSizer(d.Settings.BatchSize, d.Settings.MaxBatchSize, d.Settings.Timeout.D()), overloadPause: overloadPause}, nil
}

// fetchLinger is how long a partly filled batch waits for more records.
const fetchLinger = 20 * time.Millisecond

// Run starts the workers: each fetches a batch and makes one import call,
// so at most Concurrency calls reach the destination at once.
func (im *Importer) Run(ctx context.Context) error {
	if im.d.NC != nil {
		sub, err := im.d.NC.QueueSubscribe(messages.SubjectDestinationCheck, topology.Importer, func(m *nats.Msg) {
			go im.answerDestinationCheck(ctx, m)
		})
		if err != nil {
			return fmt.Errorf("importer: answer destination checks on %s: %w", messages.SubjectDestinationCheck, err)
		}
		defer sub.Unsubscribe()
	}
	return router.RunBatch(ctx, im.d.JS, topology.Import, im.d.Streams, router.BatchOptions{
		Workers: im.d.Settings.Concurrency, Batch: im.d.Settings.BatchSize, Size: im.sizer.Size, Linger: fetchLinger, Logger: im.log,
		// Bodies are sent form-encoded, which nearly doubles JSON.
		MaxBytes: int(im.d.Settings.MaxRequestBytes / 2),
	}, im.process)
}

// answerDestinationCheck answers an exporter's request for the
// destination's dictionary as it is now (the exporters have no destination
// token): read after the request arrived, stored in the metadata bucket.
func (im *Importer) answerDestinationCheck(ctx context.Context, m *nats.Msg) {
	var req messages.DestinationRequest
	reply := messages.DestinationReply{V: messages.V}
	if err := json.Unmarshal(m.Data, &req); err != nil {
		reply.Error = "malformed destination check request"
	} else if snap, err := im.destinationSnapshot(ctx, time.Now()); err != nil {
		reply.Error = err.Error()
	} else {
		reply.Hash, reply.TakenAt = snap.Hash, snap.TakenAt
	}
	b, _ := json.Marshal(reply)
	if err := m.Respond(b); err != nil {
		im.log.Warn("destination check not answered", "site", req.Site, "err", err)
	}
}

// destinationSnapshot reads the destination's data dictionary unless a
// read started at or after notBefore is done or in progress; concurrent
// requests share one read.
func (im *Importer) destinationSnapshot(ctx context.Context, notBefore time.Time) (*messages.MetadataSnapshot, error) {
	for {
		im.snapMu.Lock()
		if im.snap != nil && !im.snap.TakenAt.Before(notBefore) {
			s := im.snap
			im.snapMu.Unlock()
			return s, nil
		}
		if wait := im.snapFetch; wait != nil {
			im.snapMu.Unlock()
			<-wait
			im.snapMu.Lock()
			err := im.snapErr
			im.snapMu.Unlock()
			if err != nil {
				return nil, err
			}
			continue
		}
		done := make(chan struct{})
		im.snapFetch = done
		im.snapMu.Unlock()

		started := time.Now().UTC()
		snap, err := im.readDestination(ctx, started)
		im.snapMu.Lock()
		im.snapFetch, im.snapErr = nil, err
		if err == nil {
			im.snap = snap
		}
		im.snapMu.Unlock()
		close(done)
		if err != nil {
			return nil, err
		}
	}
}

// readDestination exports the destination's data dictionary (the check
// needs nothing else) and stores it.
func (im *Importer) readDestination(ctx context.Context, at time.Time) (*messages.MetadataSnapshot, error) {
	fields, err := retry.Value(ctx, retry.Policy{MaxElapsed: 30 * time.Second}, func() ([]messages.Field, error) {
		return im.d.Destination.ExportMetadata(ctx)
	})
	if err != nil {
		return nil, fmt.Errorf("the destination's data dictionary could not be read: %w", err)
	}
	if len(fields) == 0 {
		return nil, fmt.Errorf("the destination's data dictionary is empty (does the destination token have design rights?)")
	}
	im.markUp()
	snap := &messages.MetadataSnapshot{V: messages.V, Site: "destination", TakenAt: at, Fields: fields}
	snap.ComputeHash()
	if err := im.d.Store.PutSnapshot(ctx, messages.DestinationMetadataKey, snap); err != nil {
		return nil, fmt.Errorf("the destination's data dictionary was read but not stored: %w", err)
	}
	return snap, nil
}
