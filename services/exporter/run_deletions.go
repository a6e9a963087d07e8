package exporter

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/redcap"
)

// deletions reads the site's pending and held deletions and the operator's
// decision, measures the token's access when records went missing, and
// plans (planDeletions).
func (e *Exporter) deletions(ctx context.Context, r *siteRun, st messages.SiteState, absent []string) (deletionPlan, error) {
	cur, err := e.d.Store.Deletions(ctx, r.site.ID)
	if err != nil {
		return deletionPlan{}, err
	}
	var decision *messages.DeletionDecision
	if cur.Held != nil {
		if decision, err = e.d.Store.Decision(ctx, r.site.ID, cur.Held.Run); err != nil {
			return deletionPlan{}, err
		}
	}
	changed := ""
	if len(absent) > 0 || r.plan.Full {
		changed = e.accessChanged(ctx, r, st)
	}
	if len(absent) > 0 && r.snap.Hash != st.SnapshotHash && st.SnapshotHash != "" {
		changed = joinReasons(changed, "the project's metadata changed since the last run")
	}
	p := planDeletions(deletionInput{
		Run: r.req.RunID, Now: r.start, Absent: absent, State: cur, Decision: decision, AccessChanged: changed,
		Delay: r.site.DeletionDelay, Limit: r.site.MaxDeletionsPerRun.Of(st.Records),
	})
	if h := p.State.Held; h != nil {
		h.DestRecords = make([]string, len(h.Records))
		for i, id := range h.Records {
			h.DestRecords[i] = r.compiled.DestRecordID(id)
		}
		e.log.Error("deletions held for an operator", "site", r.site.ID, "run", r.req.RunID, "held", len(h.Records), "reason", h.Detail,
			"remedy", "relay deletions approve --site "+r.site.ID+" --run "+h.Run)
	}
	if p.Decided != "" {
		e.log.Info("held deletions decided by an operator", "site", r.site.ID, "held_run", p.Decided, "decision", decision.Decision,
			"by", decision.By, "deleted", len(p.Delete), "forgotten", len(p.Forget))
	}
	return p, nil
}

// accessChanged measures what the token sees of the project's data access
// groups and compares it with the last measure: a token newly restricted to
// a DAG (or to another one, or seeing other DAGs) sees fewer records, which
// is no reason to delete any. The measure is kept in r.access for the
// site's state: "restricted <dag>" or "all", plus the DAG list's hash when
// the token may export it.
func (e *Exporter) accessChanged(ctx context.Context, r *siteRun, st messages.SiteState) string {
	// Any token may ask for the next record name, and REDCap prefixes it
	// with the DAG's ID for a token assigned to one.
	next, err := r.client.GenerateNextRecordName(ctx)
	if err != nil {
		return "" // not measurable now: compare nothing
	}
	access := "all"
	if dag, _, ok := strings.Cut(next, "-"); ok {
		access = "restricted " + dag
	}
	if dags, err := r.client.ExportDAGs(ctx); err == nil {
		names := make([]string, len(dags))
		for i, d := range dags {
			names[i] = d.Unique
		}
		access += " dags " + messages.HashJSON(names)[:12]
	} else if isDAGRestricted(err) && access == "all" {
		access = "restricted ?"
	}
	r.access = access
	prev := st.DAGAccess
	if prev == "" || prev == access {
		return ""
	}
	wasRestricted, isRestricted := strings.HasPrefix(prev, "restricted"), strings.HasPrefix(access, "restricted")
	switch {
	case isRestricted && !wasRestricted:
		return "the site's token is now restricted to a data access group (it sees only that group's records)"
	case isRestricted && wasRestricted && strings.Fields(prev)[1] != strings.Fields(access)[1]:
		return "the site's token is now assigned to another data access group"
	case wasRestricted && !isRestricted:
		return "the site's token is no longer restricted to a data access group"
	case strings.Contains(prev, " dags ") && strings.Contains(access, " dags "):
		return "the project's data access groups changed since the last run"
	}
	return ""
}

// isDAGRestricted is REDCap's refusal of the DAG export to a token assigned
// to a data access group.
func isDAGRestricted(err error) bool {
	var e *redcap.Error
	return errors.As(err, &e) && e.Status == 403 && strings.Contains(strings.ToLower(e.Message), "assigned to a data access group")
}

func joinReasons(a, b string) string {
	if a == "" {
		return b
	}
	return fmt.Sprintf("%s; %s", a, b)
}
