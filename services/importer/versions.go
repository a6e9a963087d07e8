package importer

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redcap-relay/relay/messages"
)

// versions is the newest version imported per destination record: latest
// wins even when redeliveries reorder messages. The KV bucket is the durable
// copy; the map is loaded once at start (one importer owns it).
type versions struct {
	js jetstream.JetStream
	mu sync.RWMutex
	m  map[string]int64
}

// KV keys allow only [-/_=.a-zA-Z0-9]: record IDs are encoded.
func versionKey(destRecord string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(destRecord))
}

func loadVersions(ctx context.Context, js jetstream.JetStream) (*versions, error) {
	v := &versions{js: js, m: map[string]int64{}}
	kv, err := js.KeyValue(ctx, messages.BucketDestVersion)
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
		v.m[string(id)] = n
	}
	return v, nil
}

func (v *versions) get(destRecord string) int64 {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.m[destRecord]
}

// set records imported versions, in memory and in KV, before the messages
// are acked: after a crash the redelivered messages are imported again
// (idempotent), never skipped.
func (v *versions) set(ctx context.Context, upd map[string]int64) error {
	var futs []jetstream.PubAckFuture
	for id, ver := range upd {
		f, err := v.js.PublishAsync("$KV."+messages.BucketDestVersion+"."+versionKey(id), []byte(strconv.FormatInt(ver, 10)),
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
	v.mu.Lock()
	for id, ver := range upd {
		if ver > v.m[id] {
			v.m[id] = ver
		}
	}
	v.mu.Unlock()
	return nil
}

func putSnapshot(ctx context.Context, js jetstream.JetStream, key string, snap *messages.MetadataSnapshot) error {
	kv, err := js.KeyValue(ctx, messages.BucketMetadata)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(snap)
	_, err = kv.Put(ctx, key, b)
	return err
}
