package broker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/config"
)

// Durable consumer names (no dots: JetStream forbids them). Each is also the
// queue group of the service, so replicas split the work.
const (
	ConsumerExporter    = "exporter"
	ConsumerTransformer = "transformer"
	ConsumerImporter    = "importer"
	ConsumerChecker     = "checker"
)

// DeliverSubject is where a push consumer delivers; services subscribe to it
// with their queue group.
func DeliverSubject(consumer string) string { return "relay.deliver." + consumer }

// Timing keeps the rule handler timeout < watermill ack timeout < AckWait,
// except for the exporter, whose heartbeat holds a request for as long as
// ExportRunTimeout with a short ExportAckWait.
type Timing struct {
	// ExportAckWait is how long an export request stays with an exporter
	// that stopped saying it is working on it (the exporter sends a
	// heartbeat every quarter of it): a crashed exporter's run is taken
	// over after this.
	ExportAckWait time.Duration
	// ExportRunTimeout bounds one site run (a whole run happens inside one
	// export request); a run still going after it is abandoned and redone.
	ExportRunTimeout time.Duration
	TransformAckWait time.Duration
	ImportAckWait    time.Duration
	CheckAckWait     time.Duration
}

// TimingFrom takes the ack waits from the network file's streams section.
func TimingFrom(s config.Streams) Timing {
	return Timing{
		ExportAckWait:    s.ExportAckWait.D(),
		ExportRunTimeout: s.ExportRunTimeout.D(),
		TransformAckWait: s.TransformAckWait.D(),
		ImportAckWait:    s.ImportAckWait.D(),
		CheckAckWait:     DefaultTiming.CheckAckWait,
	}
}

// DefaultTiming is used unless a test or config shortens it.
var DefaultTiming = Timing{
	ExportAckWait:    2 * time.Minute,
	ExportRunTimeout: 6 * time.Hour,
	TransformAckWait: 60 * time.Second,
	ImportAckWait:    time.Minute,
	CheckAckWait:     10 * time.Minute,
}

// Streams returns every stream's configuration from the network settings.
func Streams(s config.Streams) []jetstream.StreamConfig {
	dup := s.DedupeWindow.D()
	base := func(name string, subjects []string, maxAge time.Duration) jetstream.StreamConfig {
		if dup > maxAge {
			dup = maxAge
		}
		return jetstream.StreamConfig{
			Name:       name,
			Subjects:   subjects,
			Retention:  jetstream.LimitsPolicy,
			Storage:    jetstream.FileStorage,
			MaxAge:     maxAge,
			Duplicates: dup,
			Replicas:   s.Replicas,
			Discard:    jetstream.DiscardOld,
		}
	}
	req := base(messages.StreamExportRequests, []string{messages.SubjectExportRequested + ".*"}, 7*24*time.Hour)
	raw := base(messages.StreamRecordsRaw, []string{messages.SubjectRecordsRaw + ".*"}, s.RawMaxAge.D())
	raw.Description = "exported site records; holds PHI for approved fields only"
	// A full stream must push back on the exporter, never drop unprocessed records.
	raw.Discard = jetstream.DiscardNew
	raw.MaxBytes = orInt64(s.RawMaxBytes, -1)
	meta := base(messages.StreamMetadata, []string{messages.SubjectMetadata + ".*"}, 365*24*time.Hour)
	meta.MaxMsgsPerSubject = s.MetadataPerSite
	clean := base(messages.StreamRecordsClean, []string{messages.SubjectRecordsClean + ".*"}, s.CleanMaxAge.D())
	clean.Description = "de-identified records ready for import; the replay window"
	clean.Discard = jetstream.DiscardNew
	clean.MaxBytes = orInt64(s.CleanMaxBytes, -1)
	audit := base(messages.StreamAudit, []string{messages.SubjectImportDone + ".*", messages.SubjectRun + ".*"}, s.AuditMaxAge.D())
	dlq := base(messages.StreamDLQ, []string{messages.SubjectDLQ + ".>"}, s.DLQMaxAge.D())
	reports := base(messages.StreamReports, []string{messages.SubjectProtocolReport + ".*"}, 365*24*time.Hour)
	reports.MaxMsgsPerSubject = 20
	return []jetstream.StreamConfig{req, raw, meta, clean, audit, dlq, reports}
}

func orInt64(v, d int64) int64 {
	if v == 0 {
		return d
	}
	return v
}

// Consumers returns the durable consumer of each service.
func Consumers(t Timing) map[string]jetstream.ConsumerConfig {
	return map[string]jetstream.ConsumerConfig{
		messages.StreamExportRequests: {
			Durable:        ConsumerExporter,
			DeliverSubject: DeliverSubject(ConsumerExporter),
			DeliverGroup:   ConsumerExporter,
			FilterSubject:  messages.SubjectExportRequested + ".*",
			AckPolicy:      jetstream.AckExplicitPolicy,
			AckWait:        t.ExportAckWait,
			MaxDeliver:     -1,
			MaxAckPending:  16, // sites exported at once
		},
		messages.StreamRecordsRaw: {
			Durable:        ConsumerTransformer,
			DeliverSubject: DeliverSubject(ConsumerTransformer),
			DeliverGroup:   ConsumerTransformer,
			FilterSubject:  messages.SubjectRecordsRaw + ".*",
			AckPolicy:      jetstream.AckExplicitPolicy,
			AckWait:        t.TransformAckWait,
			MaxDeliver:     -1,
			MaxAckPending:  2048,
		},
		messages.StreamRecordsClean: {
			Durable:       ConsumerImporter,
			FilterSubject: messages.SubjectRecordsClean + ".*",
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       t.ImportAckWait,
			MaxDeliver:    -1,
			MaxAckPending: 20000,
			MaxWaiting:    64,
		},
		messages.StreamMetadata: {
			Durable:       ConsumerChecker,
			FilterSubject: messages.SubjectMetadata + ".*",
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       t.CheckAckWait,
			MaxDeliver:    -1,
		},
	}
}

// Provision creates or updates every stream, consumer and bucket. It is
// idempotent: every service may call it at start-up.
func Provision(ctx context.Context, js jetstream.JetStream, s config.Streams, t Timing) error {
	for _, sc := range Streams(s) {
		if _, err := js.CreateOrUpdateStream(ctx, sc); err != nil {
			return fmt.Errorf("provision stream %s: %w", sc.Name, err)
		}
	}
	for stream, cc := range Consumers(t) {
		if err := upsertConsumer(ctx, js, stream, cc); err != nil {
			return err
		}
	}
	kvs := []jetstream.KeyValueConfig{
		{Bucket: messages.BucketSiteState, Description: "per-site cursor and run state", History: 5, Storage: jetstream.FileStorage, Replicas: s.Replicas},
		{Bucket: messages.BucketLeases, Description: "the run currently holding each site", TTL: t.ExportAckWait, Storage: jetstream.FileStorage, Replicas: s.Replicas},
		{Bucket: messages.BucketDestVersion, Description: "newest record version imported (latest wins)", Storage: jetstream.FileStorage, Replicas: s.Replicas},
		{Bucket: messages.BucketMetadata, Description: "metadata snapshots by site and hash", History: 1, Storage: jetstream.FileStorage, Replicas: s.Replicas, MaxValueSize: 8 << 20},
	}
	for _, kc := range kvs {
		if _, err := js.CreateOrUpdateKeyValue(ctx, kc); err != nil {
			return fmt.Errorf("provision KV bucket %s: %w", kc.Bucket, err)
		}
	}
	if _, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket: messages.BucketRecordIDs, Description: "per-site record IDs and content hashes (deletions, unchanged detection)",
		Storage: jetstream.FileStorage, Replicas: s.Replicas,
	}); err != nil {
		return fmt.Errorf("provision object store %s: %w", messages.BucketRecordIDs, err)
	}
	return nil
}

func upsertConsumer(ctx context.Context, js jetstream.JetStream, stream string, cc jetstream.ConsumerConfig) error {
	// Where a consumer starts cannot be updated; keep a replay's start point.
	if cc.DeliverPolicy == jetstream.DeliverAllPolicy {
		if old, err := consumerConfig(ctx, js, stream, cc.Durable); err == nil {
			cc.DeliverPolicy, cc.OptStartSeq, cc.OptStartTime = old.DeliverPolicy, old.OptStartSeq, old.OptStartTime
		}
	}
	var err error
	if cc.DeliverSubject != "" {
		_, err = js.CreateOrUpdatePushConsumer(ctx, stream, cc)
	} else {
		_, err = js.CreateOrUpdateConsumer(ctx, stream, cc)
	}
	if err != nil {
		return fmt.Errorf("provision consumer %s on %s: %w", cc.Durable, stream, err)
	}
	return nil
}

// ResetConsumer recreates a service's durable consumer so that it delivers
// again from a start time or stream sequence: the replay after a destination
// restore or a policy fix. Running services keep their subscriptions (push
// consumers deliver to the same subject and queue group; the importer
// re-binds its pull consumer by name).
func ResetConsumer(ctx context.Context, js jetstream.JetStream, stream string, t Timing, since time.Time, fromSeq uint64) error {
	cc, ok := Consumers(t)[stream]
	if !ok {
		return fmt.Errorf("stream %s has no service consumer to replay", stream)
	}
	// Keep the running deployment's ack wait: the operator's machine may
	// not hold the network file that set it.
	if old, err := consumerConfig(ctx, js, stream, cc.Durable); err == nil && old.AckWait > 0 {
		cc.AckWait = old.AckWait
	}
	switch {
	case fromSeq > 0:
		cc.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cc.OptStartSeq = fromSeq
	case !since.IsZero():
		cc.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		st := since
		cc.OptStartTime = &st
	default:
		cc.DeliverPolicy = jetstream.DeliverAllPolicy
	}
	if err := js.DeleteConsumer(ctx, stream, cc.Durable); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("replay: delete consumer %s on %s: %w", cc.Durable, stream, err)
	}
	return upsertConsumer(ctx, js, stream, cc)
}

// consumerConfig reads a pull or push consumer's configuration.
func consumerConfig(ctx context.Context, js jetstream.JetStream, stream, name string) (jetstream.ConsumerConfig, error) {
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return jetstream.ConsumerConfig{}, err
	}
	if c, err := st.Consumer(ctx, name); err == nil {
		return c.CachedInfo().Config, nil
	}
	pc, err := st.PushConsumer(ctx, name)
	if err != nil {
		return jetstream.ConsumerConfig{}, err
	}
	return pc.CachedInfo().Config, nil
}
