package ops

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redcap-relay/relay/messages"
)

// Message-ID prefixes of deliveries made again by the operator's tools.
const (
	replayPrefix   = "replay."   // relay replay --site
	dlqRetryPrefix = "dlqretry." // relay dlq retry
)

// runDeadLetters is what the DLQ holds of a run.
type runDeadLetters struct {
	exportFailure string // the export request's dead letter: a permanent failure
	firstReason   string // of the first record dead-lettered
}

// counts counts the run's distinct records at each stage, reading only
// headers (the site, run, record and message ID travel there) except for
// the import audit, and only messages since the run began.
func (c *collector) counts(ctx context.Context, ss *SiteStatus, r *runAgg) (runDeadLetters, error) {
	var out runDeadLetters
	from := r.started
	if t := runStart(r.id, from); t.Before(from) {
		from = t
	}
	from = from.Add(-time.Minute)
	sameRun := func(m jetstream.Msg) bool { return m.Headers().Get(messages.HeaderRun) == r.id }
	headers := func(subject string) jetstream.OrderedConsumerConfig {
		cfg := scanConfig([]string{subject}, from, 0)
		cfg.HeadersOnly = true
		return cfg
	}
	running := r.last.Phase == messages.PhaseStarted || r.last.Phase == messages.PhaseRetrying
	exported := 0
	if c.o.SkipRaw {
		// not read
	} else if err := scanWith(ctx, c.js, messages.StreamRecordsRaw, headers(messages.RecordsRawSubject(ss.Site)), func(m jetstream.Msg) bool {
		if sameRun(m) {
			if strings.HasPrefix(m.Headers().Get(jetstream.MsgIDHeader), dlqRetryPrefix) {
				ss.Again.Retried++
			} else {
				exported++
			}
		}
		return true
	}); err != nil && running {
		return out, err
	}
	cleaned := map[string]bool{}
	if err := scanWith(ctx, c.js, messages.StreamRecordsClean, headers(messages.RecordsCleanSubject(ss.Site)), func(m jetstream.Msg) bool {
		if !sameRun(m) {
			return true
		}
		switch id := m.Headers().Get(jetstream.MsgIDHeader); {
		case strings.HasPrefix(id, replayPrefix):
			ss.Again.Replayed++
		case strings.HasPrefix(id, dlqRetryPrefix):
			ss.Again.Retried++
		}
		cleaned[recordOf(m)] = true
		return true
	}); err != nil {
		return out, err
	}
	imported := map[string]bool{}
	var finished time.Time
	if err := scan(ctx, c.js, messages.StreamAudit, []string{messages.ImportDoneSubject(ss.Site)}, from, 0, func(m jetstream.Msg) bool {
		var d messages.ImportDone
		if json.Unmarshal(m.Data(), &d) != nil || !contains(d.Runs, r.id) {
			return true
		}
		for _, id := range append(d.Records, d.Deleted...) {
			imported[id] = true
		}
		if d.At.After(finished) {
			finished = d.At
		}
		return true
	}); err != nil {
		return out, err
	}
	dead := map[string]bool{}
	var firstSeq uint64
	if err := scanWith(ctx, c.js, messages.StreamDLQ, headers(messages.SubjectDLQ+".*."+ss.Site), func(m jetstream.Msg) bool {
		if !sameRun(m) {
			return true
		}
		md, err := m.Metadata()
		if err != nil {
			return true
		}
		stage, _, _ := parseDLQSubject(m.Subject())
		if stage == messages.StageExport {
			out.exportFailure = c.letterReason(ctx, md.Sequence.Stream)
			return true
		}
		if strings.Contains(m.Headers().Get(jetstream.MsgIDHeader), "."+dlqRetryPrefix) {
			ss.Again.FailedAgain++
		}
		if rec := m.Headers().Get(messages.HeaderRecord); rec != "" && !imported[rec] {
			dead[rec] = true
		}
		if firstSeq == 0 {
			firstSeq = md.Sequence.Stream
		}
		return true
	}); err != nil {
		return out, err
	}
	if firstSeq > 0 {
		out.firstReason = c.letterReason(ctx, firstSeq)
	}
	n := &ss.Counts
	if running {
		n.Exported = exported
	}
	n.Cleaned, n.Imported, n.DeadLettered = len(cleaned), len(imported), len(dead)
	n.Waiting = max(0, n.Exported+n.Deleted-n.Imported-n.DeadLettered)
	if !finished.IsZero() {
		ss.Run.Finished = finished
	}
	if running {
		ss.Progress = &Progress{Elapsed: c.now.Sub(r.started).Seconds(), Exported: exported, Cleaned: n.Cleaned, Imported: n.Imported}
		if ss.State != nil && (r.first.Full || ss.State.Cursor.IsZero()) {
			ss.Progress.Expected = ss.State.Records
		}
	}
	return out, nil
}

// recordOf is the record a cleaned message carries (its destination ID).
func recordOf(m jetstream.Msg) string {
	if r := m.Headers().Get(messages.HeaderRecord); r != "" {
		return r
	}
	return m.Headers().Get(jetstream.MsgIDHeader)
}

// letterReason is a dead letter's reason on one line (never its payload).
func (c *collector) letterReason(ctx context.Context, seq uint64) string {
	e, err := GetDLQ(ctx, c.js, seq)
	if err != nil || e.Unreadable {
		return "(unreadable dead letter)"
	}
	msg := oneLine(e.Letter.Error)
	if len(msg) > 240 {
		msg = msg[:237] + "..."
	}
	return msg
}
