package notify

import (
	"strings"

	"github.com/redcap-relay/relay/services/internal/ops"
	"github.com/redcap-relay/relay/services/internal/pipeline/telemetry"
)

// results every site has a relay_site_result series for (1 for its own).
var results = []string{ops.ResultNeverRun, ops.ResultRunning, ops.ResultRetrying, ops.ResultImporting, ops.ResultSynced,
	ops.ResultPartial, ops.ResultFailed, ops.ResultDeletionsHeld}

// Points turns a status into the pipeline metrics.
func Points(st *ops.Status) []telemetry.Point {
	pts := []telemetry.Point{{Name: "relay_pipeline_state_up", Value: 1}}
	add := func(name string, v float64, labels ...string) {
		pts = append(pts, telemetry.Point{Name: name, Labels: labels, Value: v})
	}
	for stage, bySite := range st.DLQ {
		for site, n := range bySite {
			add("relay_dlq_messages", float64(n), stage, site)
		}
	}
	for _, l := range st.Lag {
		if l.Missing {
			continue
		}
		add("relay_consumer_lag", float64(l.Lag), l.Stage, l.Consumer)
		add("relay_consumer_ack_pending", float64(l.AckPending), l.Stage, l.Consumer)
		add("relay_consumer_waiting", float64(l.Waiting), l.Stage, l.Consumer)
		if l.Stuck != "" {
			add("relay_stage_stuck", 1, l.Stage, stuckClass(l.Stuck))
		}
	}
	for _, s := range st.Sites {
		for _, r := range results {
			v := 0.0
			if s.Outcome == r {
				v = 1
			}
			add("relay_site_result", v, s.Site, r)
		}
		// Every site has a DLQ series, so "growing" has a zero to grow from.
		for _, stage := range []string{"transform", "import"} {
			if st.DLQ[stage][s.Site] == 0 {
				add("relay_dlq_messages", 0, stage, s.Site)
			}
		}
		if s.LastSuccess != nil {
			add("relay_site_last_success_timestamp_seconds", float64(s.LastSuccess.At.UnixMilli())/1000, s.Site)
		}
		if s.ScheduleSeconds > 0 {
			add("relay_site_schedule_seconds", s.ScheduleSeconds, s.Site)
		}
		if s.Run != nil {
			add("relay_site_run_duration_seconds", s.Run.Seconds, s.Site)
			n := s.Counts
			for stage, v := range map[string]int{"exported": n.Exported, "deleted": n.Deleted, "cleaned": n.Cleaned, "imported": n.Imported, "dead_lettered": n.DeadLettered, "waiting": n.Waiting} {
				add("relay_site_run_records", float64(v), s.Site, stage)
			}
		}
		if p := s.Protocol; p != nil {
			add("relay_protocol_errors", float64(p.Errors), s.Site)
			if p.Score != nil {
				add("relay_protocol_score", *p.Score, s.Site)
			}
		}
	}
	return pts
}

// stuckClass is a stuck reason's first words (a label: no counts in it).
func stuckClass(reason string) string {
	if class, _, ok := strings.Cut(reason, ":"); ok {
		return class
	}
	return "stuck"
}
