package exporter

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/config"
)

// A record absent from one record-ID answer is not a deletion: a REDCap
// server can answer a list incompletely (a cut or truncated answer that
// still parses, a server under load, a rights or DAG change on the token, a
// site restored from an old backup), and deleting clinical trial data at the
// coordinating center on one bad answer is the worst failure this product
// can have. So a record that disappears is a candidate; it is deleted at the
// destination only when
//
//  1. a second, direct export of that record (records[]=ID) finds nothing
//     either (confirmCandidates),
//  2. it was already absent in an earlier run, or for the site's
//     deletion_delay (pending),
//  3. the run would not delete more than max_deletions_per_run, and the
//     token's access did not change since the last run (else every deletion
//     of the run is held for an operator: `relay deletions approve|reject`).

// deletionInput is everything planDeletions decides from; it does no I/O.
type deletionInput struct {
	Run string
	Now time.Time
	// Absent are known records that neither the ID list nor a direct export
	// of them found (candidates confirmed absent this run).
	Absent []string
	State  messages.DeletionState
	// Decision is the operator's decision on the held run, if any.
	Decision *messages.DeletionDecision
	// AccessChanged says why the token may see fewer records than in the
	// last run ("" when nothing changed).
	AccessChanged string
	Delay         config.DeletionDelay
	Limit         int
}

// deletionPlan is what the run does with its absent records.
type deletionPlan struct {
	Delete []string // carry out now
	Forget []string // drop from the known set without deleting (rejected)
	State  messages.DeletionState
	// Decided is the held run the operator decided on, now carried out or
	// dropped ("" when none).
	Decided string
	Warn    string // what the run says about held deletions
}

// planDeletions decides, for the records a run found absent, which are
// deleted now, which wait (pending) and which are held for an operator.
func planDeletions(in deletionInput) deletionPlan {
	absent := make(map[string]bool, len(in.Absent))
	for _, id := range in.Absent {
		absent[id] = true
	}
	p := deletionPlan{State: messages.DeletionState{V: messages.V, Pending: map[string]messages.PendingDeletion{}}}
	// A record back at the site is no longer pending: the site's data wins.
	for id, pd := range in.State.Pending {
		if absent[id] {
			p.State.Pending[id] = pd
		}
	}
	decided := map[string]bool{}
	if h := in.State.Held; h != nil && in.Decision != nil && in.Decision.Run == h.Run {
		p.Decided = h.Run
		for _, id := range h.Records {
			if !absent[id] {
				continue // re-created at the site since: nothing to do
			}
			decided[id] = true
			delete(p.State.Pending, id)
			if in.Decision.Decision == messages.DecisionApprove {
				p.Delete = append(p.Delete, id)
			} else {
				p.Forget = append(p.Forget, id)
			}
		}
	}
	var eligible []string
	for _, id := range in.Absent {
		if decided[id] {
			continue
		}
		pd, ok := p.State.Pending[id]
		if !ok {
			p.State.Pending[id] = messages.PendingDeletion{Since: in.Now, Run: in.Run}
			pd = p.State.Pending[id]
		}
		if in.AccessChanged != "" {
			// Held at once: the change is measured now, and a later run
			// would no longer see it as one.
			eligible = append(eligible, id)
			continue
		}
		if !ok && in.Delay.Mode != config.DelayNone {
			continue // first seen absent: wait for a later run
		}
		switch in.Delay.Mode {
		case config.DelayRun:
			if pd.Run == in.Run {
				continue
			}
		case config.DelayFor:
			if in.Now.Sub(pd.Since) < in.Delay.For {
				continue
			}
		}
		eligible = append(eligible, id)
	}
	sort.Strings(eligible)
	// While a hold waits for an operator nothing is deleted: records that
	// become eligible meanwhile join it (under this run, so the operator
	// approves what was last shown).
	var waiting *messages.HeldDeletions
	if in.State.Held != nil && p.Decided == "" {
		waiting = stillAbsent(in.State.Held, absent)
	}
	switch {
	case waiting != nil:
		added := 0
		have := make(map[string]bool, len(waiting.Records))
		for _, id := range waiting.Records {
			have[id] = true
		}
		for _, id := range eligible {
			if !have[id] {
				waiting.Records = append(waiting.Records, id)
				added++
			}
		}
		if added > 0 {
			sort.Strings(waiting.Records)
			waiting.Run, waiting.At = in.Run, in.Now
			waiting.Detail = fmt.Sprintf("%d deletion(s) held: %s", len(waiting.Records), heldWhy(waiting))
		}
		p.State.Held = waiting
	case len(eligible) == 0:
	case in.AccessChanged != "":
		p.State.Held = &messages.HeldDeletions{Run: in.Run, At: in.Now, Reason: messages.HeldAccessChanged, Records: eligible,
			Detail: fmt.Sprintf("%d deletion(s) held: %s", len(eligible), in.AccessChanged)}
	case len(eligible) > in.Limit:
		p.State.Held = &messages.HeldDeletions{Run: in.Run, At: in.Now, Reason: messages.HeldOverLimit, Limit: in.Limit, Records: eligible,
			Detail: fmt.Sprintf("%d deletion(s) held: more than the limit of %d", len(eligible), in.Limit)}
	default:
		for _, id := range eligible {
			delete(p.State.Pending, id)
		}
		p.Delete = append(p.Delete, eligible...)
	}
	if h := p.State.Held; h != nil {
		p.Warn = h.Detail
	}
	sort.Strings(p.Delete)
	sort.Strings(p.Forget)
	return p
}

// heldWhy is a hold's reason in words.
func heldWhy(h *messages.HeldDeletions) string {
	if h.Reason == messages.HeldOverLimit {
		return fmt.Sprintf("more than the limit of %d", h.Limit)
	}
	if _, why, ok := strings.Cut(h.Detail, ": "); ok {
		return why
	}
	return "the token's access changed"
}

// stillAbsent is a held run reduced to the records still absent.
func stillAbsent(h *messages.HeldDeletions, absent map[string]bool) *messages.HeldDeletions {
	out := *h
	out.Records, out.DestRecords = nil, nil
	for i, id := range h.Records {
		if absent[id] {
			out.Records = append(out.Records, id)
			if i < len(h.DestRecords) {
				out.DestRecords = append(out.DestRecords, h.DestRecords[i])
			}
		}
	}
	if len(out.Records) == 0 {
		return nil
	}
	return &out
}
