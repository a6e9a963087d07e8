// Package transformer applies each site's transfer policy to exported
// records. Every replica binds the same durable with the same queue group,
// so N transformers split the work with no duplicates; a record that cannot
// be transformed goes to relay.dlq.transform.<site> with the reason.
package transformer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
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
	"github.com/redcap-relay/relay/services/internal/pipeline/sitemeta"
	"github.com/redcap-relay/relay/services/internal/pipeline/telemetry"
	"github.com/redcap-relay/relay/services/internal/pipeline/topology"
	"github.com/redcap-relay/relay/services/internal/policy"
)

// Deps is what a transformer needs.
type Deps struct {
	NC      *nats.Conn
	JS      jetstream.JetStream
	Streams config.Streams
	// Policies compiles a site's policy for a metadata snapshot
	// (sitekit.Kit in production).
	Policies Policies
	// Snapshots reads the metadata snapshot a record was exported under
	// (default: the metadata bucket on JS).
	Snapshots func(ctx context.Context, key string) (*messages.MetadataSnapshot, error)
	Logger    *slog.Logger
	Parallel  int // messages handled at once by this replica (default 32)
}

// Policies is what the transformer needs of the site kit.
type Policies interface {
	Policy(site string, snap *messages.MetadataSnapshot) (*policy.Compiled, error)
}

// Transformer turns exported records into cleaned ones.
type Transformer struct {
	d   Deps
	log *slog.Logger

	mu    sync.Mutex
	snaps map[string]*messages.MetadataSnapshot // by key: a snapshot's key names its content
}

// maxSnapshots bounds the snapshot cache: a few per site in practice.
const maxSnapshots = 256

// New fills the defaults.
func New(d Deps) *Transformer {
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	if d.Parallel == 0 {
		d.Parallel = 32
	}
	if d.Snapshots == nil {
		js := d.JS
		d.Snapshots = func(ctx context.Context, key string) (*messages.MetadataSnapshot, error) {
			return sitemeta.Load(ctx, js, key)
		}
	}
	return &Transformer{d: d, log: d.Logger.With("service", topology.Transformer), snaps: map[string]*messages.MetadataSnapshot{}}
}

// Run transforms records until ctx ends.
func Run(ctx context.Context, d Deps) error {
	t := New(d)
	ackWait := topology.Transform.AckWait(d.Streams)
	return router.Run(ctx, d.NC, d.JS, topology.Transform, d.Streams, router.Options{
		Parallel:       t.d.Parallel,
		HandlerTimeout: ackWait / 6,
		Retry: middleware.Retry{
			MaxRetries: 3, InitialInterval: 200 * time.Millisecond, Multiplier: 2, MaxInterval: 2 * time.Second,
			MaxElapsedTime: ackWait / 4,
		},
		Logger: t.log,
	}, t.handle)
}

func (t *Transformer) handle(msg *message.Message) error {
	var rec messages.RecordExported
	if err := router.Decode(msg.Payload, &rec); err != nil {
		return err
	}
	cleaned, err := t.Transform(msg.Context(), rec)
	if err != nil {
		// A dead letter names the record as the destination knows it
		// (namespaced or keyed hash), never by a site ID the policy hides;
		// unknown when the policy could not be applied at all.
		msg.Metadata.Set(messages.HeaderRecord, cleaned.DestRecordID)
		return err
	}
	route := broker.Route{Site: cleaned.Site, Run: cleaned.RunID, Record: cleaned.DestRecordID}
	if err := broker.Publish(msg.Context(), t.d.JS, messages.RecordsCleanSubject(cleaned.Site), cleaned.MsgID(), route, cleaned); err != nil {
		return err
	}
	telemetry.Records.WithLabelValues(messages.StageTransform, rec.Site, "cleaned").Inc()
	return nil
}

// Transform applies the site's policy to one record. Its errors are
// permanent when no retry can help (the record, its snapshot or the policy
// is wrong) and transient otherwise.
func (t *Transformer) Transform(ctx context.Context, rec messages.RecordExported) (messages.RecordCleaned, error) {
	snap, err := t.snapshot(ctx, rec)
	if err != nil {
		return messages.RecordCleaned{}, err
	}
	c, err := t.d.Policies.Policy(rec.Site, snap)
	if err != nil {
		return messages.RecordCleaned{}, retry.Permanent(err)
	}
	out, err := c.Apply(rec)
	if err != nil {
		// Apply's errors already name the site and the record (by its
		// destination ID, never a hashed-away source ID).
		return out, retry.Permanent(err)
	}
	out.V = messages.V
	if out.CleanedAt.IsZero() {
		out.CleanedAt = time.Now().UTC()
	}
	return out, nil
}

// snapshot is the metadata snapshot the record was exported under.
func (t *Transformer) snapshot(ctx context.Context, rec messages.RecordExported) (*messages.MetadataSnapshot, error) {
	key := messages.MetadataKey(rec.Site, rec.MetadataHash)
	t.mu.Lock()
	snap := t.snaps[key]
	t.mu.Unlock()
	if snap != nil {
		return snap, nil
	}
	snap, err := t.d.Snapshots(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, retry.Permanent(fmt.Errorf("site %s: metadata snapshot %s is not in %s (was the bucket purged?): %w", rec.Site, rec.MetadataHash, messages.BucketMetadata, err))
	}
	if err != nil {
		return nil, fmt.Errorf("site %s: read metadata snapshot %s: %w", rec.Site, rec.MetadataHash, err)
	}
	t.mu.Lock()
	if len(t.snaps) >= maxSnapshots {
		clear(t.snaps)
	}
	t.snaps[key] = snap
	t.mu.Unlock()
	return snap, nil
}
