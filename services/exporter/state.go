package exporter

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redcap-relay/relay/messages"
)

func loadState(ctx context.Context, js jetstream.JetStream, site string) (messages.SiteState, error) {
	var st messages.SiteState
	kv, err := js.KeyValue(ctx, messages.BucketSiteState)
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

func saveState(ctx context.Context, js jetstream.JetStream, site string, st messages.SiteState) error {
	kv, err := js.KeyValue(ctx, messages.BucketSiteState)
	if err != nil {
		return err
	}
	b, _ := json.Marshal(st)
	_, err = kv.Put(ctx, site, b)
	return err
}

// known is the site's record IDs with the content hash last published for
// each: deletions are IDs that disappeared, and unchanged records are not
// published again. It can be large, so it lives in the object store.
type known map[string]string

func loadKnown(ctx context.Context, js jetstream.JetStream, site string) (known, error) {
	obs, err := js.ObjectStore(ctx, messages.BucketRecordIDs)
	if err != nil {
		return nil, err
	}
	r, err := obs.Get(ctx, site)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return known{}, nil
	}
	if err != nil {
		return nil, err
	}
	defer r.Close()
	zr, err := gzip.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("site %s: known record set: %w", site, err)
	}
	k := known{}
	if err := json.NewDecoder(zr).Decode(&k); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("site %s: known record set: %w", site, err)
	}
	return k, nil
}

func saveKnown(ctx context.Context, js jetstream.JetStream, site string, k known) error {
	obs, err := js.ObjectStore(ctx, messages.BucketRecordIDs)
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
