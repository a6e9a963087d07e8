package exporter

import (
	"sort"
	"time"

	"github.com/redcap-relay/relay/messages"
)

// runPlan is what a run does, decided from the request, the site's state
// and what the run found at the site; it does no I/O.
type runPlan struct {
	// Full exports every record (not only those changed since the cursor).
	Full bool
	// Force republishes records whose content did not change: the cleaned
	// output may differ when the dictionary or the policy changed.
	Force bool
}

// planRun decides between a full and an incremental run.
func planRun(req messages.ExportRequested, st messages.SiteState, snapHash, policyVersion string, now time.Time, fullEvery time.Duration) runPlan {
	metaChanged := snapHash != st.SnapshotHash || policyVersion != st.PolicyVersion
	return runPlan{
		Full:  req.Full || st.Cursor.IsZero() || metaChanged || now.Sub(st.LastFull) > fullEvery,
		Force: req.Full || metaChanged,
	}
}

// carryKnown starts the run's known set from the site's current IDs with the
// hashes already known for them; it returns the set of current IDs too.
func carryKnown(prev Known, all []string) (next Known, current map[string]struct{}) {
	next = make(Known, len(all))
	current = make(map[string]struct{}, len(all))
	for _, id := range all {
		current[id] = struct{}{}
		if h, ok := prev[id]; ok {
			next[id] = h
		}
	}
	return next, current
}

// unchanged reports whether a record's content is what was last published.
func unchanged(prev Known, id, hash string, force bool) bool {
	return !force && prev[id] == shortHash(hash)
}

// gone lists the IDs known before that the site no longer lists.
func gone[V any](prev Known, current map[string]V) []string {
	var out []string
	for id := range prev {
		if _, ok := current[id]; !ok {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}

// shortHash is what the known-record set keeps per record: 16 hex digits
// (64 bits) tell a changed record with ample certainty in a quarter of the memory.
func shortHash(h string) string {
	if len(h) > 16 {
		return h[:16]
	}
	return h
}
