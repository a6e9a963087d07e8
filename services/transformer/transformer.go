// Package transformer applies each site's transfer policy to exported
// records. Every replica binds the same durable with the same queue group,
// so N transformers split the work with no duplicates; a record that cannot
// be transformed goes to relay.dlq.transform.<site> with the reason.
package transformer

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/pipeline/broker"
	"github.com/redcap-relay/relay/services/internal/pipeline/router"
	"github.com/redcap-relay/relay/services/internal/pipeline/sitemeta"
	"github.com/redcap-relay/relay/services/internal/pipeline/telemetry"
	"github.com/redcap-relay/relay/services/internal/policy"
)

// Deps is what a transformer needs.
type Deps struct {
	NC       *nats.Conn
	JS       jetstream.JetStream
	Network  *config.Network
	Logger   *slog.Logger
	Timing   broker.Timing
	Parallel int // messages handled at once by this replica (default 32)
}

// Run transforms records until ctx ends.
func Run(ctx context.Context, d Deps) error {
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	if d.Timing == (broker.Timing{}) {
		d.Timing = broker.DefaultTiming
	}
	if d.Parallel == 0 {
		d.Parallel = 32
	}
	t := &Transformer{d: d, log: d.Logger.With("service", "transformer"), cache: map[string]*entry{}}
	if k := d.Network.PseudonymKey; k.IsSet() {
		v, err := k.Read()
		if err != nil {
			return fmt.Errorf("pseudonym_key: %w", err)
		}
		t.key = []byte(v)
	}
	return router.Run(ctx, d.NC, d.JS, router.Config{
		Stage:          messages.StageTransform,
		Stream:         messages.StreamRecordsRaw,
		Consumer:       broker.ConsumerTransformer,
		Topic:          messages.SubjectRecordsRaw + ".*",
		Parallel:       d.Parallel,
		HandlerTimeout: d.Timing.TransformAckWait / 6,
		AckWait:        d.Timing.TransformAckWait,
		Retry: middleware.Retry{
			MaxRetries: 3, InitialInterval: 200 * time.Millisecond, Multiplier: 2, MaxInterval: 2 * time.Second,
			MaxElapsedTime: d.Timing.TransformAckWait / 4,
		},
		Logger: t.log,
	}, t.handle)
}

// Transformer holds compiled policies per site and metadata version.
type Transformer struct {
	d   Deps
	log *slog.Logger
	key []byte

	mu    sync.Mutex
	cache map[string]*entry // site + metadata hash
}

type entry struct {
	compiled *policy.Compiled
	modTime  time.Time // the policy file's, to notice a fixed policy
	checked  time.Time
}

func (t *Transformer) handle(msg *message.Message) error {
	var rec messages.RecordExported
	if err := router.Decode(msg, &rec); err != nil {
		return err
	}
	cleaned, err := t.Transform(msg.Context(), rec)
	if err != nil {
		if router.IsPermanent(err) {
			telemetry.DeadLetters.WithLabelValues(messages.StageTransform, rec.Site).Inc()
		}
		return err
	}
	route := broker.Route{Site: cleaned.Site, Run: cleaned.RunID, Record: cleaned.DestRecordID}
	if err := broker.Publish(msg.Context(), t.d.JS, messages.RecordsCleanSubject(cleaned.Site), cleaned.MsgID(), route, cleaned); err != nil {
		return err
	}
	telemetry.Records.WithLabelValues(messages.StageTransform, rec.Site, "cleaned").Inc()
	return nil
}

// Transform applies the site's policy to one record.
func (t *Transformer) Transform(ctx context.Context, rec messages.RecordExported) (messages.RecordCleaned, error) {
	c, err := t.compiled(ctx, rec.Site, rec.MetadataHash)
	if err != nil {
		return messages.RecordCleaned{}, err
	}
	out, err := c.Apply(rec)
	if err != nil {
		// Apply's errors already name the site and the record (by its
		// destination ID, never a hashed-away source ID).
		return out, router.Permanent(err)
	}
	out.V = messages.V
	if out.CleanedAt.IsZero() {
		out.CleanedAt = time.Now().UTC()
	}
	return out, nil
}

func (t *Transformer) compiled(ctx context.Context, siteID, metaHash string) (*policy.Compiled, error) {
	site, ok := t.d.Network.Site(siteID)
	if !ok {
		return nil, router.Permanent(fmt.Errorf("record from unknown site %q: it is not in the network file", siteID))
	}
	key := siteID + "/" + metaHash
	t.mu.Lock()
	e := t.cache[key]
	t.mu.Unlock()
	if e != nil && time.Since(e.checked) < 5*time.Second {
		return e.compiled, nil
	}
	fi, err := os.Stat(site.Policy)
	if err != nil {
		return nil, router.Permanent(fmt.Errorf("site %s: policy file: %w", siteID, err))
	}
	if e != nil && fi.ModTime().Equal(e.modTime) {
		t.mu.Lock()
		e.checked = time.Now()
		t.mu.Unlock()
		return e.compiled, nil
	}
	snap, err := sitemeta.Load(ctx, t.d.JS, messages.MetadataKey(siteID, metaHash))
	if err != nil {
		return nil, router.Permanent(fmt.Errorf("site %s: metadata snapshot %s is not in %s (was the bucket purged?): %w", siteID, metaHash, messages.BucketMetadata, err))
	}
	pol, err := policy.Load(site.Policy)
	if err != nil {
		return nil, router.Permanent(fmt.Errorf("site %s: %w", siteID, err))
	}
	c, err := policy.Compile(pol, snap, policy.Options{Site: siteID, Namespace: site.Namespace, DAG: site.DAG, Key: t.key})
	if err != nil {
		return nil, router.Permanent(fmt.Errorf("site %s: policy %s: %w", siteID, site.Policy, err))
	}
	t.mu.Lock()
	t.cache[key] = &entry{compiled: c, modTime: fi.ModTime(), checked: time.Now()}
	t.mu.Unlock()
	return c, nil
}
