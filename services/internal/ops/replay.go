package ops

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/pipeline/broker"
	"github.com/redcap-relay/relay/services/internal/pipeline/topology"
)

// ReplayOptions says what to deliver again.
type ReplayOptions struct {
	// Stage is "import" (RECORDS_CLEAN: the destination gets the records
	// again, e.g. after a restore from an old backup) or "transform"
	// (RECORDS_RAW: records are transformed again, e.g. after a policy fix).
	Stage string
	// Site limits the replay to one site. Empty replays every site by
	// resetting the stage's durable consumer.
	Site string
	// Since or FromSeq is the start point (one of them is required).
	Since   time.Time
	FromSeq uint64
	// DryRun counts what would be replayed and changes nothing.
	DryRun bool
	// Tag makes the message IDs of a one-site replay; a replay run again
	// with the same tag (e.g. after it was interrupted) republishes only
	// what is missing, because JetStream dedupes the IDs. Default: the
	// current minute.
	Tag string
	// Streams gives the ack waits a recreated consumer gets when the
	// running one cannot be read (default: the network defaults).
	Streams config.Streams
}

// Replay modes.
const (
	ModeReset     = "reset"     // the durable consumer was recreated at the start point
	ModeRepublish = "republish" // the site's messages were copied back onto the stream
)

// ReplayResult reports what a replay did.
type ReplayResult struct {
	Stage    string `json:"stage"`
	Stream   string `json:"stream"`
	Consumer string `json:"consumer"`
	Site     string `json:"site,omitempty"`
	Mode     string `json:"mode"`
	DryRun   bool   `json:"dry_run,omitempty"`
	// Matched is the number of messages in the window (for Site, or all).
	Matched uint64 `json:"matched"`
	// Republished is how many copies were stored (one-site mode; copies
	// deduped as already republished under the same tag are not counted).
	Republished int `json:"republished"`
	// Pending is the durable's backlog right after a reset.
	Pending uint64 `json:"pending"`
}

// ReplayStage is the stage a replay delivers again: import or transform.
func ReplayStage(stage string) (topology.Stage, error) {
	switch stage {
	case messages.StageImport:
		return topology.Import, nil
	case messages.StageTransform:
		return topology.Transform, nil
	}
	return topology.Stage{}, fmt.Errorf("stage %q cannot be replayed: use import (re-deliver cleaned records to the destination) or transform (re-run the transfer policy on exported records)", stage)
}

// Replay delivers a stage's messages again from a start point.
//
// Without a site it recreates the stage's durable consumer at the start point
// (broker.ResetConsumer): every site's messages since then are delivered
// again to the running services, which is safe because imports are
// idempotent (same version, same result) but costs work for the other sites.
//
// With a site the durable is left alone: the site's messages in the window
// are copied back onto the same subjects with new message IDs
// ("replay.<tag>.<seq>"), so only that site is delivered again. The copies
// take space in the stream until its retention removes them.
func Replay(ctx context.Context, js jetstream.JetStream, o ReplayOptions) (*ReplayResult, error) {
	st, err := ReplayStage(o.Stage)
	if err != nil {
		return nil, err
	}
	stream, consumer, prefix := st.Stream, st.Consumer, strings.TrimSuffix(st.Filter, ".*")
	if o.Since.IsZero() && o.FromSeq == 0 {
		return nil, errors.New("give a start point: --since TIME (RFC 3339, a date, or a duration ago such as 6h) or --from-seq N")
	}
	if o.Streams == (config.Streams{}) {
		o.Streams = config.DefaultStreams()
	}
	res := &ReplayResult{Stage: o.Stage, Stream: stream, Consumer: consumer, Site: o.Site, DryRun: o.DryRun}
	filter := prefix + ".*"
	if o.Site != "" {
		filter = prefix + "." + o.Site
	}
	if res.Matched, err = countFrom(ctx, js, stream, filter, o.Since, o.FromSeq); err != nil {
		return nil, err
	}
	if o.Site == "" {
		res.Mode = ModeReset
		if o.DryRun {
			return res, nil
		}
		if err := broker.ResetConsumer(ctx, js, st, o.Streams, o.Since, o.FromSeq); err != nil {
			return nil, err
		}
		if info, err := consumerInfo(ctx, js, st); err == nil {
			res.Pending = info.NumPending + uint64(info.NumAckPending)
		}
		return res, nil
	}
	res.Mode = ModeRepublish
	if o.DryRun || res.Matched == 0 {
		return res, nil
	}
	if o.Tag == "" {
		o.Tag = time.Now().UTC().Format("200601021504")
	}
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", stream, err)
	}
	// Copies land on the same subject: stop at the last message that was
	// there before we started, or we would replay our own copies.
	info, err := s.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", stream, err)
	}
	last := info.State.LastSeq
	var futs []jetstream.PubAckFuture
	var pubErr error
	flush := func() {
		for _, f := range futs {
			select {
			case ack := <-f.Ok():
				if !ack.Duplicate {
					res.Republished++
				}
			case err := <-f.Err():
				if pubErr == nil {
					pubErr = fmt.Errorf("republish to %s: %w", f.Msg().Subject, err)
				}
			case <-ctx.Done():
				if pubErr == nil {
					pubErr = ctx.Err()
				}
			}
		}
		futs = futs[:0]
	}
	err = scan(ctx, js, stream, []string{filter}, o.Since, o.FromSeq, func(m jetstream.Msg) bool {
		md, err := m.Metadata()
		if err != nil || md.Sequence.Stream > last {
			return false
		}
		out := nats.NewMsg(m.Subject())
		out.Data = m.Data()
		for k, v := range m.Headers() {
			out.Header[k] = v
		}
		idPrefix := "replay." + o.Tag + "."
		if strings.HasPrefix(m.Headers().Get(jetstream.MsgIDHeader), idPrefix) {
			// A copy this replay (same tag) already made: an interrupted
			// replay run again must not copy its own copies.
			return md.Sequence.Stream < last
		}
		id := idPrefix + strconv.FormatUint(md.Sequence.Stream, 10)
		out.Header.Set(jetstream.MsgIDHeader, id)
		out.Header.Set(broker.WatermillUUIDHeader, id)
		f, err := js.PublishMsgAsync(out, jetstream.WithStallWait(30*time.Second))
		if err != nil {
			pubErr = fmt.Errorf("republish to %s: %w", m.Subject(), err)
			return false
		}
		futs = append(futs, f)
		if len(futs) >= 1024 {
			flush()
		}
		return pubErr == nil && md.Sequence.Stream < last
	})
	flush()
	if err == nil {
		err = pubErr
	}
	if err != nil {
		return res, fmt.Errorf("replay of site %s stopped after %d message(s); run the same command with --tag %s to finish it: %w", o.Site, res.Republished, o.Tag, err)
	}
	return res, nil
}

// countFrom counts a subject's messages from a start point without reading
// them (the pending count of a fresh ordered consumer).
func countFrom(ctx context.Context, js jetstream.JetStream, stream, filter string, since time.Time, fromSeq uint64) (uint64, error) {
	cfg := jetstream.OrderedConsumerConfig{FilterSubjects: []string{filter}, InactiveThreshold: 10 * time.Second}
	switch {
	case fromSeq > 0:
		cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, fromSeq
	case !since.IsZero():
		st := since
		cfg.DeliverPolicy, cfg.OptStartTime = jetstream.DeliverByStartTimePolicy, &st
	}
	c, err := js.OrderedConsumer(ctx, stream, cfg)
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", stream, err)
	}
	info, err := c.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", stream, err)
	}
	return info.NumPending, nil
}

// ParseSince reads a start time: RFC 3339 ("2026-05-01T02:00:00Z"), a date
// ("2026-05-01", midnight UTC), or a duration ago ("6h", "90m", "7d").
func ParseSince(s string, now time.Time) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t, nil
	}
	if n, ok := cutSuffix(s, "d"); ok {
		if d, err := strconv.Atoi(n); err == nil && d >= 0 {
			return now.Add(-time.Duration(d) * 24 * time.Hour), nil
		}
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	return time.Time{}, fmt.Errorf("--since %q: use RFC 3339 (2026-05-01T02:00:00Z), a date (2026-05-01) or a duration ago (6h, 7d)", s)
}

func cutSuffix(s, suf string) (string, bool) {
	if len(s) > len(suf) && s[len(s)-len(suf):] == suf {
		return s[:len(s)-len(suf)], true
	}
	return "", false
}
