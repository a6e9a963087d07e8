package broker

import (
	"context"
	"encoding/json"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redcap-relay/relay/services/internal/pipeline/topology"
)

// Backlog is the number of messages a stage's durable has not finished:
// not yet delivered plus delivered but not acked. It asks for the consumer's
// info only (a service user may read its neighbour's consumer, not the stream).
func Backlog(ctx context.Context, js jetstream.JetStream, st topology.Stage) (uint64, error) {
	info, err := ConsumerInfo(ctx, js, st)
	if err != nil {
		return 0, err
	}
	return info.NumPending + uint64(info.NumAckPending), nil
}

// Drained reports whether the export, transform and import consumers have
// nothing left to do.
func Drained(ctx context.Context, js jetstream.JetStream) bool {
	for _, st := range []topology.Stage{topology.Export, topology.Transform, topology.Import} {
		n, err := Backlog(ctx, js, st)
		if err != nil || n > 0 {
			return false
		}
	}
	return true
}

// CountSubject counts the messages a stream holds on subjects matching filter.
func CountSubject(ctx context.Context, js jetstream.JetStream, stream, filter string) int {
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return 0
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return 0
	}
	n := 0
	for _, c := range info.State.Subjects {
		n += int(c)
	}
	return n
}

// LastJSON decodes the last message a stream holds on subject into v.
func LastJSON(ctx context.Context, js jetstream.JetStream, stream, subject string, v any) bool {
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return false
	}
	m, err := st.GetLastMsgForSubject(ctx, subject)
	if err != nil {
		return false
	}
	return json.Unmarshal(m.Data, v) == nil
}

// EachJSON calls f with every message a stream holds on subjects matching
// filter, oldest first, using an ordered consumer (no durable state).
func EachJSON(ctx context.Context, js jetstream.JetStream, stream, filter string, f func(data []byte)) error {
	c, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}})
	if err != nil {
		return err
	}
	st, err := js.Stream(ctx, stream)
	if err != nil {
		return err
	}
	info, err := st.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return err
	}
	want := 0
	for _, n := range info.State.Subjects {
		want += int(n)
	}
	for got := 0; got < want; {
		batch, err := c.Fetch(min(want-got, 1000))
		if err != nil {
			return err
		}
		n := 0
		for m := range batch.Messages() {
			f(m.Data())
			n++
		}
		if n == 0 {
			break
		}
		got += n
	}
	return nil
}
