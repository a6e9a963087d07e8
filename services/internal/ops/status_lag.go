package ops

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/pipeline/topology"
)

// StageLag is a durable consumer's backlog, and why it does not move.
type StageLag struct {
	Stage       string `json:"stage"`
	Stream      string `json:"stream"`
	Consumer    string `json:"consumer"`
	Pending     uint64 `json:"pending"`     // not yet delivered
	AckPending  int    `json:"ack_pending"` // delivered, not yet acked
	Redelivered int    `json:"redelivered"`
	Lag         uint64 `json:"lag"` // Pending + AckPending
	// Waiting is the pull requests the stage's readers have open (pull
	// consumers); Connected whether a reader is subscribed (push).
	Waiting   int  `json:"waiting"`
	Connected bool `json:"connected"`
	// LastDelivered and LastAcked are when the consumer last delivered and
	// last had a delivery acknowledged.
	LastDelivered *time.Time `json:"last_delivered,omitempty"`
	LastAcked     *time.Time `json:"last_acked,omitempty"`
	// Stuck says why a backlog does not move ("" when it moves or is empty).
	Stuck   string `json:"stuck,omitempty"`
	Missing bool   `json:"missing,omitempty"`
	// StreamMissing: the stream itself is gone (deleted, or not recovered
	// by the NATS server after a crash).
	StreamMissing bool `json:"stream_missing,omitempty"`

	ackWait time.Duration
}

// Stuck reasons' thresholds: a reader gone this long with a backlog is not
// between two fetches; a reader that acknowledged nothing for longer than
// its ack wait (at least a minute) is not taking messages.
const (
	noReaderAfter = 30 * time.Second
	minNoAckAfter = time.Minute
)

// Lag reads each stage's durable consumer.
func Lag(ctx context.Context, js jetstream.JetStream) ([]StageLag, error) {
	now := time.Now()
	var out []StageLag
	for _, sc := range topology.Stages {
		l := StageLag{Stage: sc.Name, Stream: sc.Stream, Consumer: sc.Consumer}
		info, err := consumerInfo(ctx, js, sc)
		if err != nil {
			l.Missing = true
			l.StreamMissing = errors.Is(err, jetstream.ErrStreamNotFound)
		} else {
			l.fill(sc, info, now)
		}
		out = append(out, l)
	}
	return out, nil
}

func (l *StageLag) fill(sc topology.Stage, info *jetstream.ConsumerInfo, now time.Time) {
	l.Pending, l.AckPending, l.Redelivered = info.NumPending, info.NumAckPending, info.NumRedelivered
	l.Lag = l.Pending + uint64(l.AckPending)
	l.Waiting, l.ackWait = info.NumWaiting, info.Config.AckWait
	l.Connected = info.PushBound || info.NumWaiting > 0
	l.LastDelivered, l.LastAcked = info.Delivered.Last, info.AckFloor.Last
	l.Stuck = stuckReason(sc, *l, now)
}

// stuckReason tells, from the consumer alone, why a stage's backlog does
// not move: no reader (no subscriber on a push consumer, no pull request on
// a pull consumer, nothing delivered for a while), or a reader that holds
// messages and acknowledges none (for the importer: the destination is
// down, refusing its token or banning it; the records wait in the stream).
func stuckReason(sc topology.Stage, l StageLag, now time.Time) string {
	if l.Lag == 0 {
		return ""
	}
	idleSince := func(t *time.Time) time.Duration {
		if t == nil {
			return time.Duration(1<<62 - 1)
		}
		return now.Sub(*t)
	}
	if !sc.Push && l.Waiting == 0 && l.AckPending == 0 && l.Pending > 0 && idleSince(l.LastDelivered) > noReaderAfter {
		return fmt.Sprintf("no %s connected: %d message(s) wait and no pull request is open", sc.Reader, l.Pending)
	}
	if sc.Push && !l.Connected && l.Pending > 0 {
		return fmt.Sprintf("no %s connected: %d message(s) wait and nothing is subscribed to %s", sc.Reader, l.Pending, sc.DeliverSubject())
	}
	if sc.Name == messages.StageExport {
		return "" // a site run holds its request for as long as it runs
	}
	noAck := max(l.ackWait, minNoAckAfter)
	if l.AckPending > 0 && idleSince(l.LastAcked) > noAck && idleSince(l.LastDelivered) > noAck {
		idle := idleSince(l.LastAcked)
		since := "ever"
		if l.LastAcked != nil {
			since = "for " + idle.Round(time.Second).String()
		}
		if sc.Name == messages.StageImport {
			return fmt.Sprintf("destination unreachable: the importer holds %d record(s) and has confirmed none %s (the destination is down, refusing the token, or banning the importer); the records wait in %s", l.AckPending, since, sc.Stream)
		}
		return fmt.Sprintf("the %s holds %d message(s) and has acknowledged none %s", sc.Reader, l.AckPending, since)
	}
	return ""
}

// consumerInfo reads a stage's consumer info, telling a missing stream
// (jetstream.ErrStreamNotFound) from a missing consumer.
func consumerInfo(ctx context.Context, js jetstream.JetStream, st topology.Stage) (*jetstream.ConsumerInfo, error) {
	name := st.Consumer
	s, err := js.Stream(ctx, st.Stream)
	if err != nil {
		return nil, err
	}
	l := s.ListConsumers(ctx)
	for ci := range l.Info() {
		if ci.Name == name {
			return ci, nil
		}
	}
	if err := l.Err(); err != nil {
		return nil, err
	}
	return nil, jetstream.ErrConsumerNotFound
}
