package exporter

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/pipeline/broker"
	"github.com/redcap-relay/relay/services/internal/pipeline/router"
	"github.com/redcap-relay/relay/services/internal/pipeline/sitemeta"
	"github.com/redcap-relay/relay/services/internal/pipeline/topology"
)

// Store is everything the exporter keeps in or sends to JetStream. The
// production one is JetStreamStore; unit tests use an in-memory fake.
type Store interface {
	// Lease takes the site for a run (ErrSiteBusy when another run holds
	// it) and renews it until release is called.
	Lease(ctx context.Context, site, runID string) (release func(), err error)
	State(ctx context.Context, site string) (messages.SiteState, error)
	SaveState(ctx context.Context, site string, st messages.SiteState) error
	Known(ctx context.Context, site string) (Known, error)
	SaveKnown(ctx context.Context, site string, k Known) error
	// Snapshot reads a stored metadata snapshot (nil when it is not there).
	Snapshot(ctx context.Context, key string) (*messages.MetadataSnapshot, error)
	// PublishSnapshot stores the run's snapshot by its hash and announces it
	// on relay.metadata.<site> (the checker's input).
	PublishSnapshot(ctx context.Context, snap *messages.MetadataSnapshot) error
	// Destination is the destination's data dictionary read for this run
	// (after notBefore), through the importer, which holds its token.
	Destination(ctx context.Context, site string, notBefore time.Time) (*messages.MetadataSnapshot, error)
	// Deletions is the site's pending and held deletions.
	Deletions(ctx context.Context, site string) (messages.DeletionState, error)
	SaveDeletions(ctx context.Context, site string, st messages.DeletionState) error
	// Decision is an operator's decision on a held run (nil: none yet).
	Decision(ctx context.Context, site, run string) (*messages.DeletionDecision, error)
	// HasFile reports whether the files bucket holds an object (fresh
	// enough to outlive the messages that will refer to it).
	HasFile(ctx context.Context, object string) (bool, error)
	// PutFile stores a file (size bytes from r) in the files bucket.
	PutFile(ctx context.Context, object string, r io.Reader, size int64) error
	// DeadLetter keeps what could not be exported (a file), with the reason.
	DeadLetter(ctx context.Context, dl messages.DeadLetter) error
	// Publisher queues the run's messages and waits for their acks.
	Publisher() Publisher
	// RunEvent publishes a run's lifecycle step.
	RunEvent(ctx context.Context, ev messages.RunEvent) error
	// RawBacklog is what the transformers have not finished yet; it fails
	// with jetstream.ErrStreamNotFound or ErrConsumerNotFound when
	// RECORDS_RAW or their consumer is missing.
	RawBacklog(ctx context.Context) (uint64, error)
}

// Publisher is one run's outgoing messages (broker.Batch).
type Publisher interface {
	Add(ctx context.Context, subject, msgID string, r broker.Route, v any) error
	Wait(ctx context.Context) error
}

// Known is the site's record IDs with the content hash last published for
// each: deletions are IDs that disappeared, and unchanged records are not
// published again. It can be large, so it lives in the object store.
type Known map[string]string

// JetStreamStore is the Store on a JetStream connection.
type JetStreamStore struct {
	NC *nats.Conn // the destination check's request/reply
	JS jetstream.JetStream
	// LeaseRenew is how often a held lease is renewed (a quarter of the
	// export ack wait: the lease expires one ack wait after its last write).
	LeaseRenew time.Duration
	// FileTTL is how long the files bucket keeps an object (streams'
	// clean_max_age); a stored file older than half of it is stored again.
	FileTTL time.Duration
	Log     *slog.Logger
}

// Lease: a site is exported by one run at a time, even with several
// exporter replicas. A redelivered request of the same run takes it over.
func (s JetStreamStore) Lease(ctx context.Context, site, runID string) (func(), error) {
	kv, err := s.JS.KeyValue(ctx, messages.BucketLeases)
	if err != nil {
		return nil, err
	}
	if _, err := kv.Create(ctx, site, []byte(runID)); err != nil {
		if !errors.Is(err, jetstream.ErrKeyExists) {
			return nil, err
		}
		cur, gerr := kv.Get(ctx, site)
		if gerr != nil || string(cur.Value()) != runID {
			return nil, ErrSiteBusy
		}
	}
	stopRenewing := broker.Heartbeat(s.LeaseRenew, func() {
		rctx, cancel := context.WithTimeout(ctx, s.LeaseRenew)
		_, _ = kv.Put(rctx, site, []byte(runID))
		cancel()
	})
	return func() {
		stopRenewing() // no renewal may land after the delete
		dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = kv.Delete(dctx, site)
	}, nil
}

func (s JetStreamStore) State(ctx context.Context, site string) (messages.SiteState, error) {
	var st messages.SiteState
	kv, err := s.JS.KeyValue(ctx, messages.BucketSiteState)
	if err != nil {
		return st, err
	}
	e, err := kv.Get(ctx, site)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(e.Value(), &st); err != nil {
		return messages.SiteState{}, fmt.Errorf("site %s: state in %s is unreadable (delete the key to start afresh): %w", site, messages.BucketSiteState, err)
	}
	return st, nil
}

func (s JetStreamStore) SaveState(ctx context.Context, site string, st messages.SiteState) error {
	kv, err := s.JS.KeyValue(ctx, messages.BucketSiteState)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(st)
	_, err = kv.Put(ctx, site, b)
	return err
}

func (s JetStreamStore) Known(ctx context.Context, site string) (Known, error) {
	obs, err := s.JS.ObjectStore(ctx, messages.BucketRecordIDs)
	if err != nil {
		return nil, err
	}
	r, err := obs.Get(ctx, site)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return Known{}, nil
	}
	if err != nil {
		return nil, err
	}
	defer r.Close()
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("site %s: known record set: %w", site, err)
	}
	k := Known{}
	if err := json.NewDecoder(zr).Decode(&k); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("site %s: known record set: %w", site, err)
	}
	return k, nil
}

func (s JetStreamStore) SaveKnown(ctx context.Context, site string, k Known) error {
	obs, err := s.JS.ObjectStore(ctx, messages.BucketRecordIDs)
	if err != nil {
		return err
	}
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if err := json.NewEncoder(zw).Encode(k); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	_, err = obs.Put(ctx, jetstream.ObjectMeta{Name: site}, &buf)
	return err
}

func (s JetStreamStore) Snapshot(ctx context.Context, key string) (*messages.MetadataSnapshot, error) {
	snap, err := sitemeta.Load(ctx, s.JS, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	return snap, err
}

func (s JetStreamStore) PublishSnapshot(ctx context.Context, snap *messages.MetadataSnapshot) error {
	kv, err := s.JS.KeyValue(ctx, messages.BucketMetadata)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(snap)
	if _, err := kv.Put(ctx, messages.MetadataKey(snap.Site, snap.Hash), b); err != nil {
		return fmt.Errorf("site %s: store metadata snapshot: %w", snap.Site, err)
	}
	return broker.Publish(ctx, s.JS, messages.MetadataSubject(snap.Site), snap.MsgID(), broker.Route{Site: snap.Site, Run: snap.RunID}, snap)
}

func (s JetStreamStore) Publisher() Publisher { return broker.NewBatch(s.JS) }

func (s JetStreamStore) RunEvent(ctx context.Context, ev messages.RunEvent) error {
	return broker.Publish(ctx, s.JS, messages.RunSubject(ev.Site), ev.MsgID(), broker.Route{Site: ev.Site, Run: ev.RunID}, ev)
}

func (s JetStreamStore) RawBacklog(ctx context.Context) (uint64, error) {
	return broker.Backlog(ctx, s.JS, topology.Transform)
}

func (s JetStreamStore) Deletions(ctx context.Context, site string) (messages.DeletionState, error) {
	var st messages.DeletionState
	obs, err := s.JS.ObjectStore(ctx, messages.BucketDeletions)
	if err != nil {
		return st, err
	}
	b, err := obs.GetBytes(ctx, site)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("site %s: deletion state in %s is unreadable: %w", site, messages.BucketDeletions, err)
	}
	return st, nil
}

func (s JetStreamStore) SaveDeletions(ctx context.Context, site string, st messages.DeletionState) error {
	obs, err := s.JS.ObjectStore(ctx, messages.BucketDeletions)
	if err != nil {
		return err
	}
	if len(st.Pending) == 0 && st.Held == nil {
		err := obs.Delete(ctx, site)
		if errors.Is(err, jetstream.ErrObjectNotFound) {
			return nil
		}
		return err
	}
	b, _ := json.Marshal(st)
	_, err = obs.PutBytes(ctx, site, b)
	return err
}

func (s JetStreamStore) Decision(ctx context.Context, site, run string) (*messages.DeletionDecision, error) {
	kv, err := s.JS.KeyValue(ctx, messages.BucketDeletionDecisions)
	if err != nil {
		return nil, err
	}
	e, err := kv.Get(ctx, messages.DeletionDecisionKey(site, run))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var d messages.DeletionDecision
	if err := json.Unmarshal(e.Value(), &d); err != nil {
		return nil, fmt.Errorf("site %s: decision on run %s is unreadable: %w", site, run, err)
	}
	return &d, nil
}

// errDestinationChanged is a read that raced a change of the destination's
// dictionary: the destination answered, so it is read again, never
// replaced by the dictionary read before the change.
var errDestinationChanged = errors.New("destination check: the destination's dictionary changed while it was read; trying again")

// destinationCheckWait bounds the wait for the importer's answer: it reads
// the destination's dictionary (one call, retried for up to 30 s).
const destinationCheckWait = 60 * time.Second

func (s JetStreamStore) Destination(ctx context.Context, site string, notBefore time.Time) (*messages.MetadataSnapshot, error) {
	if s.NC == nil {
		return nil, errors.New("no NATS connection for the destination check")
	}
	b, _ := json.Marshal(messages.DestinationRequest{V: messages.V, Site: site, NotBefore: notBefore})
	rctx, cancel := context.WithTimeout(ctx, destinationCheckWait)
	defer cancel()
	m, err := s.NC.RequestWithContext(rctx, messages.SubjectDestinationCheck, b)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return nil, fmt.Errorf("destination check: no importer answers on %s (is the importer running?); the run waits for it", messages.SubjectDestinationCheck)
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout):
		return nil, fmt.Errorf("destination check: the importer did not answer within %s", destinationCheckWait)
	case err != nil:
		return nil, fmt.Errorf("destination check: %w", err)
	}
	var reply messages.DestinationReply
	if err := json.Unmarshal(m.Data, &reply); err != nil {
		return nil, fmt.Errorf("destination check: the importer's answer is unreadable")
	}
	if reply.Error != "" {
		return nil, fmt.Errorf("destination check: %s", reply.Error)
	}
	snap, err := sitemeta.Load(ctx, s.JS, messages.DestinationMetadataKey)
	if err != nil {
		return nil, fmt.Errorf("destination check: read the destination's dictionary: %w", err)
	}
	if snap.Hash != reply.Hash {
		return nil, errDestinationChanged
	}
	return snap, nil
}

func (s JetStreamStore) HasFile(ctx context.Context, object string) (bool, error) {
	obs, err := s.JS.ObjectStore(ctx, messages.BucketFiles)
	if err != nil {
		return false, err
	}
	info, err := obs.GetInfo(ctx, object)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return s.FileTTL <= 0 || time.Since(info.ModTime) < s.FileTTL/2, nil
}

func (s JetStreamStore) PutFile(ctx context.Context, object string, r io.Reader, size int64) error {
	obs, err := s.JS.ObjectStore(ctx, messages.BucketFiles)
	if err != nil {
		return err
	}
	_, err = obs.Put(ctx, jetstream.ObjectMeta{Name: object, Opts: &jetstream.ObjectMetaOptions{ChunkSize: 128 << 10}}, io.LimitReader(r, size))
	return err
}

func (s JetStreamStore) DeadLetter(ctx context.Context, dl messages.DeadLetter) error {
	return router.DeadLetter(ctx, s.JS, s.Log, dl)
}
