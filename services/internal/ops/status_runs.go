package ops

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redcap-relay/relay/messages"
)

// skippedPrefix starts the error of a run the exporter skipped because the
// site's previous run still held its lease: that request never ran.
const skippedPrefix = "skipped: "

// runAgg is one run's lifecycle, folded from its events.
type runAgg struct {
	id            string
	first, last   messages.RunEvent
	started       time.Time
	retryingSince time.Time
	skipped       bool
}

// runs reads the site's run events, picks the last run, counts its records
// and decides its result.
func (c *collector) runs(ctx context.Context, ss *SiteStatus) error {
	all, err := c.runEvents(ctx, ss.Site)
	if err != nil {
		return err
	}
	var last *runAgg
	for i := len(all) - 1; i >= 0; i-- {
		if !all[i].skipped {
			last = all[i]
			break
		}
	}
	if n := len(all); n > 0 && all[n-1].skipped && last != nil && all[n-1].last.At.After(last.last.At) {
		ss.Notes = append(ss.Notes, fmt.Sprintf("run %s was skipped: %s", all[n-1].id, strings.TrimPrefix(all[n-1].last.Error, skippedPrefix)))
	}
	c.history(ss, all)
	if last == nil {
		ss.Outcome = ResultNeverRun
		return nil
	}
	ev := last.last
	ss.LastRun = &ev
	ss.Run = &RunSummary{ID: last.id, Full: ev.Full || last.first.Full, Started: last.started, Phase: ev.Phase, Error: ev.Error,
		RetryingSince: last.retryingSince, Calls: ev.Calls}
	if ev.Phase == messages.PhaseRetrying {
		ss.Run.Attempt, ss.Run.NextAttempt = ev.Attempt, ev.NextAt
	}
	if ev.Phase == messages.PhaseExported || ev.Phase == messages.PhaseCompleted {
		ss.Run.Exported = ev.At
	}
	ss.Counts.Exported, ss.Counts.Deleted = ev.Exported, ev.Deleted
	runDLQ, err := c.counts(ctx, ss, last)
	if err != nil {
		return err
	}
	c.decide(ss, last, runDLQ)
	c.duration(ss)
	ss.LastSuccess = lastSuccess(all, ss)
	return nil
}

// runEvents folds the site's run events into runs, oldest first.
func (c *collector) runEvents(ctx context.Context, site string) ([]*runAgg, error) {
	byID := map[string]*runAgg{}
	var order []*runAgg
	err := scan(ctx, c.js, messages.StreamAudit, []string{messages.RunSubject(site)}, time.Time{}, 0, func(m jetstream.Msg) bool {
		var ev messages.RunEvent
		if json.Unmarshal(m.Data(), &ev) != nil || ev.RunID == "" {
			return true
		}
		r := byID[ev.RunID]
		if r == nil {
			r = &runAgg{id: ev.RunID, first: ev, started: ev.At, skipped: true}
			byID[ev.RunID] = r
		} else {
			// A run redone after a transient failure moves to the end.
			for i, o := range order {
				if o == r {
					order = append(order[:i], order[i+1:]...)
					break
				}
			}
		}
		order = append(order, r)
		r.last = ev
		if !(ev.Phase == messages.PhaseFailed && strings.HasPrefix(ev.Error, skippedPrefix)) {
			r.skipped = false
		}
		if ev.Phase == messages.PhaseRetrying && r.retryingSince.IsZero() {
			r.retryingSince = ev.At
		}
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("run events: %w", err)
	}
	return order, nil
}

// decide sets the site's result from the run's newest event and its counts.
func (c *collector) decide(ss *SiteStatus, r *runAgg, dlq runDeadLetters) {
	ev := r.last
	switch ev.Phase {
	case messages.PhaseStarted:
		ss.Outcome = ResultRunning
	case messages.PhaseRetrying:
		ss.Outcome = ResultRetrying
		ss.Reason = fmt.Sprintf("%s (attempt %d, next in %s)", ev.Error, ev.Attempt, max(ev.NextAt.Sub(c.now).Round(time.Second), 0))
	case messages.PhaseFailed:
		// A permanent failure dead-letters the export request; a transient
		// one (a NATS restart, an interrupted publish) is redone with the
		// same run ID within the export ack wait, so it is not a failure yet.
		if dlq.exportFailure != "" || c.now.Sub(ev.At) > 2*c.exportAckWait {
			ss.Outcome, ss.Reason = ResultFailed, ev.Error
		} else {
			ss.Outcome = ResultRetrying
			ss.Reason = "the run stopped on a transient error and is run again: " + ev.Error
		}
	default: // exported (or completed, from older builds)
		n := ss.Counts
		switch {
		case n.DeadLettered > 0 && n.Imported == 0 && n.Waiting == 0:
			ss.Outcome = ResultFailed
			ss.Reason = fmt.Sprintf("every record of the run was dead-lettered (%d): %s", n.DeadLettered, dlq.firstReason)
		case n.DeadLettered > 0:
			ss.Outcome = ResultPartial
			ss.Reason = fmt.Sprintf("%d record(s) dead-lettered: %s", n.DeadLettered, dlq.firstReason)
		case n.Waiting > 0:
			ss.Outcome = ResultImporting
		case ev.DeletionsHeld > 0:
			ss.Outcome = ResultDeletionsHeld
			ss.Reason = fmt.Sprintf("%d deletion(s) held for an operator", ev.DeletionsHeld)
		default:
			ss.Outcome = ResultSynced
		}
	}
}

// duration is the run's length: to its last import, else its export, else
// now (still running).
func (c *collector) duration(ss *SiteStatus) {
	r := ss.Run
	end := c.now
	switch {
	case !r.Finished.IsZero() && ss.Counts.Waiting == 0:
		end = r.Finished
	case !r.Exported.IsZero() && ss.Counts.Waiting == 0:
		end = r.Exported
	case r.Phase == messages.PhaseFailed:
		end = ss.LastRun.At
	}
	r.Seconds = end.Sub(r.Started).Seconds()
}

// lastSuccess is the newest run that exported and, when it is the last
// run, reached the destination whole.
func lastSuccess(all []*runAgg, ss *SiteStatus) *RunRef {
	for i := len(all) - 1; i >= 0; i-- {
		r := all[i]
		if r.skipped || (r.last.Phase != messages.PhaseExported && r.last.Phase != messages.PhaseCompleted) {
			continue
		}
		if ss.Run != nil && r.id == ss.Run.ID && ss.Outcome != ResultSynced && ss.Outcome != ResultDeletionsHeld {
			continue
		}
		at := r.last.At
		if ss.Run != nil && r.id == ss.Run.ID && !ss.Run.Finished.IsZero() {
			at = ss.Run.Finished
		}
		return &RunRef{ID: r.id, At: at}
	}
	return nil
}

// history keeps the site's recent finished runs for charts.
func (c *collector) history(ss *SiteStatus, all []*runAgg) {
	if c.o.History <= 0 {
		return
	}
	for _, r := range all {
		if r.skipped || (r.last.Phase != messages.PhaseExported && r.last.Phase != messages.PhaseCompleted && r.last.Phase != messages.PhaseFailed) {
			continue
		}
		ss.History = append(ss.History, RunPoint{ID: r.id, At: r.started, Phase: r.last.Phase, Exported: r.last.Exported, Deleted: r.last.Deleted})
	}
	if len(ss.History) > c.o.History {
		ss.History = ss.History[len(ss.History)-c.o.History:]
	}
}

// exportAckWait is the export consumer's ack wait (a transient failure is
// redone within it), 2 minutes when it cannot be read.
func exportAckWait(lag []StageLag) time.Duration {
	for _, l := range lag {
		if l.Stage == messages.StageExport && l.ackWait > 0 {
			return l.ackWait
		}
	}
	return 2 * time.Minute
}
