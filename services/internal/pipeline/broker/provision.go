package broker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/pipeline/topology"
)

// Provision creates or updates every stream, consumer and bucket of the
// topology. It is idempotent: every service may call it at start-up, and
// `relay provision` re-applies changed settings to a running deployment.
func Provision(ctx context.Context, js jetstream.JetStream, s config.Streams) error {
	for _, spec := range topology.Streams {
		if _, err := js.CreateOrUpdateStream(ctx, spec.Config(s)); err != nil {
			return fmt.Errorf("provision stream %s: %w", spec.Name, err)
		}
	}
	for _, st := range topology.Stages {
		if err := upsertConsumer(ctx, js, st, st.ConsumerConfig(s)); err != nil {
			return err
		}
	}
	for _, b := range topology.Buckets {
		if b.Object {
			if _, err := js.CreateOrUpdateObjectStore(ctx, b.ObjectStore(s)); err != nil {
				return fmt.Errorf("provision object store %s: %w", b.Name, err)
			}
			continue
		}
		if _, err := js.CreateOrUpdateKeyValue(ctx, b.KeyValue(s)); err != nil {
			return fmt.Errorf("provision KV bucket %s: %w", b.Name, err)
		}
	}
	return nil
}

func upsertConsumer(ctx context.Context, js jetstream.JetStream, st topology.Stage, cc jetstream.ConsumerConfig) error {
	// Where a consumer starts cannot be updated; keep a replay's start point.
	if cc.DeliverPolicy == jetstream.DeliverAllPolicy {
		if old, err := consumerConfig(ctx, js, st); err == nil {
			cc.DeliverPolicy, cc.OptStartSeq, cc.OptStartTime = old.DeliverPolicy, old.OptStartSeq, old.OptStartTime
		}
	}
	var err error
	if st.Push {
		_, err = js.CreateOrUpdatePushConsumer(ctx, st.Stream, cc)
	} else {
		_, err = js.CreateOrUpdateConsumer(ctx, st.Stream, cc)
	}
	if err != nil {
		return fmt.Errorf("provision consumer %s on %s: %w", cc.Durable, st.Stream, err)
	}
	return nil
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
	return upsertConsumer(ctx, js, st, cc)
}

// ConsumerInfo reads a stage's durable consumer (push or pull) without
// creating anything.
func ConsumerInfo(ctx context.Context, js jetstream.JetStream, st topology.Stage) (*jetstream.ConsumerInfo, error) {
	if st.Push {
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
