package notify

import (
	"fmt"
	"strings"
	"time"

	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/ops"
)

// State is what the detector remembers between checks (and, with
// alerts.state_file, across restarts).
type State struct {
	// Sent are the keys of alerts raised, with when.
	Sent map[string]time.Time `json:"sent"`
	// DLQ is the dead letters last seen per "<stage>/<site>".
	DLQ map[string]uint64 `json:"dlq"`
	// Checked is the newest protocol report (and verification) seen per site.
	Checked  map[string]time.Time `json:"checked"`
	Verified map[string]time.Time `json:"verified"`
	// Scores are the protocol scores last seen per site.
	Scores map[string]float64 `json:"scores"`
	// Since is when the notifier first ran: reports older than that were
	// there before it and are not news.
	Since time.Time `json:"since"`
	// Summary is when the last daily summary was queued.
	Summary time.Time `json:"summary"`
}

func newState(now time.Time) *State {
	return &State{Sent: map[string]time.Time{}, DLQ: map[string]uint64{}, Checked: map[string]time.Time{},
		Verified: map[string]time.Time{}, Scores: map[string]float64{}, Since: now}
}

// keepSent is how long a sent key is remembered (a run that fails is
// alerted once per run, so old keys only take space).
const keepSent = 30 * 24 * time.Hour

// Detect compares a status with what was seen and returns the new alerts.
func Detect(st *ops.Status, s *State, a *config.Alerts) []Alert {
	d := detector{st: st, s: s, a: a, now: st.At}
	for _, site := range st.Sites {
		d.site(site)
	}
	d.stages()
	for k, at := range s.Sent {
		if d.now.Sub(at) > keepSent {
			delete(s.Sent, k)
		}
	}
	return d.out
}

type detector struct {
	st  *ops.Status
	s   *State
	a   *config.Alerts
	now time.Time
	out []Alert
}

func (d *detector) raise(event, key string, al Alert) {
	if !d.a.Wants(event) {
		return
	}
	key = event + "/" + key
	if _, sent := d.s.Sent[key]; sent {
		return
	}
	d.s.Sent[key] = d.now
	al.Key, al.Event, al.At = key, event, d.now
	d.out = append(d.out, al)
}

func (d *detector) site(s ops.SiteStatus) {
	run := ""
	if s.Run != nil {
		run = s.Run.ID
	}
	switch s.Outcome {
	case ops.ResultFailed:
		d.raise(config.AlertRunFailed, s.Site+"/"+run, Alert{Site: s.Site, Severity: SeverityError,
			Title: fmt.Sprintf("site %s: run failed", s.Site),
			Text:  fmt.Sprintf("Run %s of site %s failed: %s\nFix the cause, then: relay sync --site %s", run, s.Site, s.Reason, s.Site)})
	case ops.ResultRetrying:
		if s.Run != nil && !s.Run.RetryingSince.IsZero() && d.now.Sub(s.Run.RetryingSince) >= d.a.UnreachableAfter.D() {
			d.raise(config.AlertSiteUnreachable, s.Site+"/"+run, Alert{Site: s.Site, Severity: SeverityError,
				Title: fmt.Sprintf("site %s: unreachable for %s", s.Site, d.now.Sub(s.Run.RetryingSince).Round(time.Minute)),
				Text:  fmt.Sprintf("Run %s of site %s has been retrying since %s: %s", run, s.Site, s.Run.RetryingSince.UTC().Format(time.RFC3339), s.Reason)})
		}
	}
	if s.LastRun != nil && s.LastRun.DeletionsHeld > 0 {
		d.raise(config.AlertDeletionsHeld, s.Site+"/"+run, Alert{Site: s.Site, Severity: SeverityWarning,
			Title: fmt.Sprintf("site %s: %d deletion(s) held", s.Site, s.LastRun.DeletionsHeld),
			Text: fmt.Sprintf("Run %s of site %s would delete %d record(s) at the destination; nothing is deleted until an operator decides:\n%s",
				run, s.Site, s.LastRun.DeletionsHeld, strings.Join(s.LastRun.Warnings, "\n"))})
	}
	d.deadLetters(s)
	d.protocol(s)
	d.verification(s)
}

func (d *detector) deadLetters(s ops.SiteStatus) {
	for stage, n := range s.DLQ {
		k := stage + "/" + s.Site
		before := d.s.DLQ[k]
		d.s.DLQ[k] = n
		if n <= before {
			continue
		}
		why := ""
		if s.Outcome == ops.ResultPartial || s.Outcome == ops.ResultFailed {
			why = "\n" + s.Reason
		}
		d.raise(config.AlertDeadLetters, fmt.Sprintf("%s/%d", k, n), Alert{Site: s.Site, Severity: SeverityError,
			Title: fmt.Sprintf("site %s: %d new dead letter(s) at stage %s", s.Site, n-before, stage),
			Text: fmt.Sprintf("The DLQ holds %d dead letter(s) of site %s at stage %s (%d new).%s\nSee them: relay dlq list --stage %s --site %s",
				n, s.Site, stage, n-before, why, stage, s.Site)})
	}
	for k := range d.s.DLQ {
		stage, site, _ := strings.Cut(k, "/")
		if site == s.Site && s.DLQ[stage] == 0 {
			d.s.DLQ[k] = 0 // retried or purged: the next one is new again
		}
	}
}

func (d *detector) protocol(s ops.SiteStatus) {
	p := s.Protocol
	if p == nil || !p.CheckedAt.After(d.s.Checked[s.Site]) {
		return
	}
	prev, hadPrev := d.s.Scores[s.Site]
	d.s.Checked[s.Site] = p.CheckedAt
	if p.Score != nil {
		d.s.Scores[s.Site] = *p.Score
	}
	if p.CheckedAt.Before(d.s.Since) {
		return // there before the notifier: not news
	}
	dropped := hadPrev && p.Score != nil && *p.Score < prev
	if p.New == 0 && !dropped {
		return
	}
	score := ops.ScoreText(p.Score)
	if hadPrev {
		score = fmt.Sprintf("%.1f -> %s", prev, score)
	}
	d.raise(config.AlertProtocolDeviations, s.Site+"/"+p.CheckedAt.UTC().Format(time.RFC3339Nano), Alert{Site: s.Site, Severity: SeverityWarning,
		Title: fmt.Sprintf("site %s: %d new protocol finding(s), score %s", s.Site, p.New, score),
		Text: fmt.Sprintf("The protocol check of site %s at %s found %d new finding(s) since the check before (%d error(s), %d warning(s); score %s).\nThe site's report is in the reports folder; relay check --site %s runs it again.",
			s.Site, p.CheckedAt.UTC().Format(time.RFC3339), p.New, p.Errors, p.Warnings, score, s.Site)})
}

func (d *detector) verification(s ops.SiteStatus) {
	v := s.Verification
	if v == nil || !v.At.After(d.s.Verified[s.Site]) {
		return
	}
	d.s.Verified[s.Site] = v.At
	if v.Differences == 0 && v.Error == "" {
		return
	}
	d.raise(config.AlertVerification, s.Site+"/"+v.At.UTC().Format(time.RFC3339Nano), Alert{Site: s.Site, Severity: SeverityError,
		Title: fmt.Sprintf("site %s: verification found %d difference(s)", s.Site, v.Differences),
		Text:  fmt.Sprintf("The verification of site %s at %s: %s, %d of %d record(s) differ. %s", s.Site, v.At.UTC().Format(time.RFC3339), v.Status, v.Differences, v.Records, v.Error)})
}

// stages raises a stuck stage once per episode: when it moves again, the
// next time it sticks is news again.
func (d *detector) stages() {
	for _, l := range d.st.Lag {
		k := config.AlertStageStuck + "/" + l.Stage
		if l.Stuck == "" {
			for key := range d.s.Sent {
				if strings.HasPrefix(key, k+"/") {
					delete(d.s.Sent, key)
				}
			}
			continue
		}
		class, _, _ := strings.Cut(l.Stuck, ":")
		d.raise(config.AlertStageStuck, l.Stage+"/"+class, Alert{Severity: SeverityError,
			Title: fmt.Sprintf("stage %s: %s", l.Stage, class),
			Text:  fmt.Sprintf("Stage %s (%s, consumer %s) is stuck with %d message(s): %s", l.Stage, l.Stream, l.Consumer, l.Lag, l.Stuck)})
	}
}
