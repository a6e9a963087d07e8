package importer

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/pipeline/broker"
	"github.com/redcap-relay/relay/services/internal/pipeline/router"
)

// Store is what the importer keeps in or sends to JetStream. The production
// one is JetStreamStore; unit tests use an in-memory fake.
type Store interface {
	// Versions is the newest version imported per destination record.
	Versions(ctx context.Context) (map[string]int64, error)
	// SetVersions stores imported versions before their messages are acked.
	SetVersions(ctx context.Context, upd map[string]int64) error
	// Audit publishes an import's audit record under a deterministic ID.
	Audit(ctx context.Context, id string, a messages.ImportDone) error
	// PutSnapshot stores the destination's metadata snapshot.
	PutSnapshot(ctx context.Context, key string, snap *messages.MetadataSnapshot) error
	// KeepDeleted keeps a record's destination rows, just before it is
	// deleted there, for `relay deletions restore`.
	KeepDeleted(ctx context.Context, rec messages.DeletedRecord) error
	// OpenFile reads a file of the files bucket (errFileGone when it is no
	// longer there).
	OpenFile(ctx context.Context, object string) (io.ReadCloser, error)
	// DestFile is the SHA-256 of the file last uploaded at a place ("" none);
	// SetDestFile records it ("" = removed).
	DestFile(ctx context.Context, key string) (string, error)
	SetDestFile(ctx context.Context, key, sha string) error
	// DeadLetter keeps a file the destination refused, with the reason.
	DeadLetter(ctx context.Context, dl messages.DeadLetter) error
}

// JetStreamStore is the Store on a JetStream connection.
type JetStreamStore struct {
	JS  jetstream.JetStream
	Log *slog.Logger
}

// KV keys allow only [-/_=.a-zA-Z0-9]: record IDs are encoded.
func versionKey(destRecord string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(destRecord))
}

func (s JetStreamStore) Versions(ctx context.Context) (map[string]int64, error) {
	out := map[string]int64{}
	kv, err := s.JS.KeyValue(ctx, messages.BucketDestVersion)
	if err != nil {
		return nil, err
	}
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, err
	}
	defer w.Stop()
	for e := range w.Updates() {
		if e == nil {
			break // initial values done
		}
		id, err := base64.RawURLEncoding.DecodeString(e.Key())
		if err != nil {
			continue
		}
		n, _ := strconv.ParseInt(string(e.Value()), 10, 64)
		out[string(id)] = n
	}
	return out, nil
}

func (s JetStreamStore) SetVersions(ctx context.Context, upd map[string]int64) error {
	var futs []jetstream.PubAckFuture
	for id, ver := range upd {
		f, err := s.JS.PublishAsync("$KV."+messages.BucketDestVersion+"."+versionKey(id), []byte(strconv.FormatInt(ver, 10)),
			jetstream.WithStallWait(30*time.Second))
		if err != nil {
			return err
		}
		futs = append(futs, f)
	}
	for _, f := range futs {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (s JetStreamStore) Audit(ctx context.Context, id string, a messages.ImportDone) error {
	return broker.Publish(ctx, s.JS, messages.ImportDoneSubject(a.Site), id, broker.Route{Site: a.Site, Run: firstOf(a.Runs)}, a)
}

func (s JetStreamStore) PutSnapshot(ctx context.Context, key string, snap *messages.MetadataSnapshot) error {
	kv, err := s.JS.KeyValue(ctx, messages.BucketMetadata)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(snap)
	_, err = kv.Put(ctx, key, b)
	return err
}

func (s JetStreamStore) KeepDeleted(ctx context.Context, rec messages.DeletedRecord) error {
	obs, err := s.JS.ObjectStore(ctx, messages.BucketDeletedRecords)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(rec)
	_, err = obs.PutBytes(ctx, messages.DeletedRecordName(rec.Site, rec.DestRecordID), b)
	return err
}

func (s JetStreamStore) OpenFile(ctx context.Context, object string) (io.ReadCloser, error) {
	obs, err := s.JS.ObjectStore(ctx, messages.BucketFiles)
	if err != nil {
		return nil, err
	}
	r, err := obs.Get(ctx, object)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, errFileGone
	}
	return r, err
}

func (s JetStreamStore) DestFile(ctx context.Context, key string) (string, error) {
	kv, err := s.JS.KeyValue(ctx, messages.BucketDestFiles)
	if err != nil {
		return "", err
	}
	e, err := kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return string(e.Value()), nil
}

func (s JetStreamStore) SetDestFile(ctx context.Context, key, sha string) error {
	kv, err := s.JS.KeyValue(ctx, messages.BucketDestFiles)
	if err != nil {
		return err
	}
	if sha == "" {
		err := kv.Delete(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil
		}
		return err
	}
	_, err = kv.Put(ctx, key, []byte(sha))
	return err
}

func (s JetStreamStore) DeadLetter(ctx context.Context, dl messages.DeadLetter) error {
	dl.Stage = messages.StageImport
	if dl.MsgID == "" {
		dl.MsgID = "file." + dl.RunID + "." + dl.RecordID + "." + messages.HashJSON(dl.Error)[:12]
	}
	return router.DeadLetter(ctx, s.JS, s.Log, dl)
}

func firstOf(xs []string) string {
	if len(xs) == 0 {
		return ""
	}
	return xs[0]
}

// versions is the newest version imported per destination record: latest
// wins even when redeliveries reorder messages. The store is the durable
// copy; the map is loaded once at start (one importer owns it).
type versions struct {
	store Store
	mu    sync.RWMutex
	m     map[string]int64
}

func loadVersions(ctx context.Context, s Store) (*versions, error) {
	m, err := s.Versions(ctx)
	if err != nil {
		return nil, err
	}
	return &versions{store: s, m: m}, nil
}

func (v *versions) get(destRecord string) int64 {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.m[destRecord]
}

// set records imported versions, in the store and in memory, before the
// messages are acked: after a crash the redelivered messages are imported
// again (idempotent), never skipped.
func (v *versions) set(ctx context.Context, upd map[string]int64) error {
	if err := v.store.SetVersions(ctx, upd); err != nil {
		return err
	}
	v.mu.Lock()
	for id, ver := range upd {
		if ver > v.m[id] {
			v.m[id] = ver
		}
	}
	v.mu.Unlock()
	return nil
}
