package broker

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/pipeline/topology"
)

// Provision creates or updates every stream, consumer and bucket of the
// topology. It is idempotent: every service may call it at start-up, and
// `relay provision` re-applies changed settings to a running deployment.
func Provision(ctx context.Context, js jetstream.JetStream, s config.Streams) error {
	_, err := ProvisionChanges(ctx, js, s)
	return err
}

// Change is one setting provisioning changed on a running deployment.
type Change struct {
	Kind, Name string // "stream", "consumer", "bucket"; its name
	Setting    string
	From, To   string
}

func (c Change) String() string {
	return fmt.Sprintf("%s %s: %s %s -> %s", c.Kind, c.Name, c.Setting, c.From, c.To)
}

// ProvisionChanges is Provision that also says what it changed (nothing on a
// second run: provisioning is idempotent). It never loses a message or a
// cursor: a byte cap below what a stream holds now is refused, and a
// consumer setting JetStream cannot update in place (push to pull, max
// waiting, ack policy) is migrated by recreating the consumer at its ack
// floor, so nothing it acknowledged in order is delivered again.
func ProvisionChanges(ctx context.Context, js jetstream.JetStream, s config.Streams) ([]Change, error) {
	var changes []Change
	for _, spec := range topology.Streams {
		cfg := spec.Config(s)
		old, err := streamBefore(ctx, js, spec.Name, cfg.MaxBytes)
		if err != nil {
			return changes, err
		}
		st, err := js.CreateOrUpdateStream(ctx, cfg)
		if err != nil {
			return changes, provisionErr("stream", spec.Name, s, err)
		}
		changes = append(changes, streamChanges("stream", old, st.CachedInfo().Config)...)
	}
	for _, st := range topology.Stages {
		c, err := upsertConsumer(ctx, js, st, st.ConsumerConfig(s))
		if err != nil {
			return changes, err
		}
		changes = append(changes, c...)
	}
	for _, b := range topology.Buckets {
		c, err := provisionBucket(ctx, js, b, s)
		if err != nil {
			return changes, err
		}
		changes = append(changes, c...)
	}
	return changes, nil
}

func provisionBucket(ctx context.Context, js jetstream.JetStream, b topology.Bucket, s config.Streams) ([]Change, error) {
	name := b.StreamName()
	old, err := streamBefore(ctx, js, name, s.MaxBytesOf(name))
	if err != nil {
		return nil, err
	}
	if b.Object {
		_, err = js.CreateOrUpdateObjectStore(ctx, b.ObjectStore(s))
	} else {
		_, err = js.CreateOrUpdateKeyValue(ctx, b.KeyValue(s))
	}
	if err != nil {
		return nil, provisionErr("bucket", b.Name, s, err)
	}
	now, err := js.Stream(ctx, name)
	if err != nil {
		return nil, fmt.Errorf("provision bucket %s: %w", b.Name, err)
	}
	return streamChanges("bucket", old, now.CachedInfo().Config), nil
}

// streamBefore reads a stream's current config (nil when it does not exist
// yet) and refuses a byte cap below what the stream holds: JetStream would
// drop the oldest messages at once (or refuse every new one).
func streamBefore(ctx context.Context, js jetstream.JetStream, name string, maxBytes int64) (*jetstream.StreamConfig, error) {
	st, err := js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("provision stream %s: %w", name, err)
	}
	info := st.CachedInfo()
	if maxBytes > 0 && info.State.Bytes > uint64(maxBytes) {
		return nil, fmt.Errorf("provision stream %s: it holds %s, more than streams.max_bytes.%s %s: raise the cap (a lower one would drop or refuse messages), or let the stream age out first",
			name, config.Bytes(info.State.Bytes).Human(), name, config.Bytes(maxBytes))
	}
	cfg := info.Config
	return &cfg, nil
}

// provisionErr explains the errors an operator can act on.
func provisionErr(kind, name string, s config.Streams, err error) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && IsStorageFull(apiErr) {
		return fmt.Errorf("provision %s %s: %w: the streams' byte caps (streams.max_bytes, %s in all) do not fit in what the NATS server may store: raise its max_file_store (relay nats --max-file-store, nats.conf jetstream.max_file_store) or lower the caps",
			kind, name, err, config.Bytes(s.TotalMaxBytes()).Human())
	}
	return fmt.Errorf("provision %s %s: %w", kind, name, err)
}

// JetStream's error codes for "insufficient storage resources available"
// (and its cousins): the server-wide or account store limit is reached.
const (
	errCodeInsufficientResources = 10023
	errCodeStorageExceeded       = 10047
)

// IsStorageFull reports whether a JetStream API error says the store limit
// (max_file_store) is reached.
func IsStorageFull(e *jetstream.APIError) bool {
	return e.ErrorCode == errCodeStorageExceeded || e.ErrorCode == errCodeInsufficientResources
}

// streamChanges lists the settings that differ between a stream's old and
// new config (none for a stream just created).
func streamChanges(kind string, old *jetstream.StreamConfig, now jetstream.StreamConfig) []Change {
	if old == nil {
		return []Change{{Kind: kind, Name: now.Name, Setting: "created", From: "none", To: "max_bytes " + bytesOrUnlimited(now.MaxBytes)}}
	}
	var out []Change
	diff := func(setting string, a, b any) {
		if fa, fb := fmt.Sprint(a), fmt.Sprint(b); fa != fb {
			out = append(out, Change{Kind: kind, Name: now.Name, Setting: setting, From: fa, To: fb})
		}
	}
	diff("max_age", old.MaxAge, now.MaxAge)
	diff("max_bytes", bytesOrUnlimited(old.MaxBytes), bytesOrUnlimited(now.MaxBytes))
	diff("max_msgs_per_subject", old.MaxMsgsPerSubject, now.MaxMsgsPerSubject)
	diff("duplicate_window", old.Duplicates, now.Duplicates)
	diff("discard", old.Discard, now.Discard)
	diff("replicas", old.Replicas, now.Replicas)
	diff("subjects", old.Subjects, now.Subjects)
	return out
}

func bytesOrUnlimited(v int64) string {
	if v <= 0 {
		return "unlimited"
	}
	return config.Bytes(v).String()
}

func upsertConsumer(ctx context.Context, js jetstream.JetStream, st topology.Stage, cc jetstream.ConsumerConfig) ([]Change, error) {
	old, err := ConsumerInfo(ctx, js, st)
	if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, fmt.Errorf("provision consumer %s on %s: %w", cc.Durable, st.Stream, err)
	}
	if old == nil {
		_, err := createConsumer(ctx, js, st, cc)
		return []Change{{Kind: "consumer", Name: st.Stream + "/" + cc.Durable, Setting: "created", From: "none", To: fmt.Sprintf("ack wait %s", cc.AckWait)}}, err
	}
	// Where a consumer starts cannot be updated; keep a replay's start point.
	if cc.DeliverPolicy == jetstream.DeliverAllPolicy {
		cc.DeliverPolicy, cc.OptStartSeq, cc.OptStartTime = old.Config.DeliverPolicy, old.Config.OptStartSeq, old.Config.OptStartTime
	}
	_, err = createConsumer(ctx, js, st, cc)
	if err == nil {
		// Read it back: after a server restart, the answer to the update
		// of a restored consumer still shows its old settings.
		now, err := ConsumerInfo(ctx, js, st)
		if err != nil {
			return nil, fmt.Errorf("provision consumer %s on %s: %w", cc.Durable, st.Stream, err)
		}
		return consumerChanges(st, old.Config, now.Config), nil
	}
	if !notUpdatable(err) {
		return nil, err
	}
	// A setting JetStream cannot change in place: recreate the consumer
	// where its acknowledgements end.
	now, migrated, err := recreateAtAckFloor(ctx, js, st, cc, old)
	if err != nil {
		return nil, err
	}
	return append(consumerChanges(st, old.Config, now.Config), migrated), nil
}

func createConsumer(ctx context.Context, js jetstream.JetStream, st topology.Stage, cc jetstream.ConsumerConfig) (*jetstream.ConsumerInfo, error) {
	var info *jetstream.ConsumerInfo
	var err error
	if cc.DeliverSubject != "" {
		var c jetstream.PushConsumer
		if c, err = js.CreateOrUpdatePushConsumer(ctx, st.Stream, cc); err == nil {
			info = c.CachedInfo()
		}
	} else {
		var c jetstream.Consumer
		if c, err = js.CreateOrUpdateConsumer(ctx, st.Stream, cc); err == nil {
			info = c.CachedInfo()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("provision consumer %s on %s: %w", cc.Durable, st.Stream, err)
	}
	return info, nil
}

// notUpdatable is JetStream's refusal to change a consumer setting in place
// ("max waiting can not be updated", "can not update push consumer to pull based").
func notUpdatable(err error) bool {
	m := err.Error()
	return strings.Contains(m, "can not be updated") || strings.Contains(m, "can not update")
}

func recreateAtAckFloor(ctx context.Context, js jetstream.JetStream, st topology.Stage, cc jetstream.ConsumerConfig, old *jetstream.ConsumerInfo) (*jetstream.ConsumerInfo, Change, error) {
	floor := old.AckFloor.Stream
	if floor > 0 {
		cc.DeliverPolicy, cc.OptStartSeq, cc.OptStartTime = jetstream.DeliverByStartSequencePolicy, floor+1, nil
	}
	if err := js.DeleteConsumer(ctx, st.Stream, cc.Durable); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, Change{}, fmt.Errorf("provision consumer %s on %s: delete for migration: %w", cc.Durable, st.Stream, err)
	}
	now, err := createConsumer(ctx, js, st, cc)
	if err != nil {
		return nil, Change{}, fmt.Errorf("%w (the consumer was deleted for a migration: run relay provision again; it starts from stream sequence %d)", err, floor+1)
	}
	return now, Change{Kind: "consumer", Name: st.Stream + "/" + cc.Durable, Setting: "recreated",
		From: fmt.Sprintf("ack floor %d", floor), To: fmt.Sprintf("delivers from sequence %d", floor+1)}, nil
}

// consumerChanges lists the consumer settings provisioning changes.
func consumerChanges(st topology.Stage, old, now jetstream.ConsumerConfig) []Change {
	var out []Change
	diff := func(setting string, a, b any) {
		if fa, fb := fmt.Sprint(a), fmt.Sprint(b); fa != fb {
			out = append(out, Change{Kind: "consumer", Name: st.Stream + "/" + now.Durable, Setting: setting, From: fa, To: fb})
		}
	}
	diff("ack_wait", old.AckWait, now.AckWait)
	diff("max_ack_pending", old.MaxAckPending, now.MaxAckPending)
	diff("max_deliver", old.MaxDeliver, now.MaxDeliver)
	diff("max_waiting", old.MaxWaiting, now.MaxWaiting)
	diff("filter_subject", old.FilterSubject, now.FilterSubject)
	diff("deliver_subject", old.DeliverSubject, now.DeliverSubject)
	diff("deliver_group", old.DeliverGroup, now.DeliverGroup)
	return out
}

// ResetConsumer recreates a stage's durable consumer so that it delivers
// again from a start time or stream sequence: the replay after a destination
// restore or a policy fix. Running services keep their subscriptions (push
// consumers deliver to the same subject and queue group; pull consumers are
// looked up again by name).
func ResetConsumer(ctx context.Context, js jetstream.JetStream, st topology.Stage, s config.Streams, since time.Time, fromSeq uint64) error {
	cc := st.ConsumerConfig(s)
	// Keep the running deployment's ack wait: the operator's machine may
	// not hold the network file that set it.
	if old, err := consumerConfig(ctx, js, st); err == nil && old.AckWait > 0 {
		cc.AckWait = old.AckWait
	}
	switch {
	case fromSeq > 0:
		cc.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		cc.OptStartSeq = fromSeq
	case !since.IsZero():
		cc.DeliverPolicy = jetstream.DeliverByStartTimePolicy
		t := since
		cc.OptStartTime = &t
	default:
		cc.DeliverPolicy = jetstream.DeliverAllPolicy
	}
	if err := js.DeleteConsumer(ctx, st.Stream, cc.Durable); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("replay: delete consumer %s on %s: %w", cc.Durable, st.Stream, err)
	}
	_, err := upsertConsumer(ctx, js, st, cc)
	return err
}

// ConsumerInfo reads a stage's durable consumer (push or pull) without
// creating anything.
func ConsumerInfo(ctx context.Context, js jetstream.JetStream, st topology.Stage) (*jetstream.ConsumerInfo, error) {
	info, err := consumerInfoAs(ctx, js, st, st.Push)
	if errors.Is(err, jetstream.ErrNotPushConsumer) || errors.Is(err, jetstream.ErrNotPullConsumer) {
		// Provisioned by a release where the stage was the other kind.
		return consumerInfoAs(ctx, js, st, !st.Push)
	}
	return info, err
}

func consumerInfoAs(ctx context.Context, js jetstream.JetStream, st topology.Stage, push bool) (*jetstream.ConsumerInfo, error) {
	if push {
		pc, err := js.PushConsumer(ctx, st.Stream, st.Consumer)
		if err != nil {
			return nil, err
		}
		return pc.CachedInfo(), nil
	}
	c, err := js.Consumer(ctx, st.Stream, st.Consumer)
	if err != nil {
		return nil, err
	}
	return c.CachedInfo(), nil
}

func consumerConfig(ctx context.Context, js jetstream.JetStream, st topology.Stage) (jetstream.ConsumerConfig, error) {
	info, err := ConsumerInfo(ctx, js, st)
	if err != nil {
		return jetstream.ConsumerConfig{}, err
	}
	return info.Config, nil
}
