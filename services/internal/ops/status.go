package ops

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/config"
)

// Results of a site's last run, as `relay status`, the dashboard, the
// metrics and the alerts name them.
const (
	ResultNeverRun      = "never run"
	ResultRunning       = "running"        // exporting
	ResultRetrying      = "retrying"       // a call failed and is retried, or the run is redone after a transient failure
	ResultImporting     = "importing"      // exported; records still on their way to the destination
	ResultSynced        = "synced"         // every record of the run is at the destination
	ResultPartial       = "partial"        // some records of the run were dead-lettered
	ResultFailed        = "failed"         // the run failed (Reason says why), or every record was dead-lettered
	ResultDeletionsHeld = "deletions held" // synced, but deletions wait for an operator
)

// RunCounts are the distinct records of one run at each stage. Replays and
// dead-letter retries deliver some of them again; they are counted once
// here and shown on their own in Again. They add up:
//
//	Exported + Deleted = Imported + DeadLettered + Waiting
type RunCounts struct {
	Exported     int `json:"exported"`      // records the exporter published
	Deleted      int `json:"deleted"`       // deletions the exporter published
	Cleaned      int `json:"cleaned"`       // distinct records (and deletions) the transformer passed
	Imported     int `json:"imported"`      // distinct records (and deletions) the destination confirmed
	DeadLettered int `json:"dead_lettered"` // distinct records of the run held in the DLQ now (transform or import)
	Waiting      int `json:"waiting"`       // neither imported nor dead-lettered yet
}

// Again is what was delivered again of a run after it ended: never mixed
// into its counts.
type Again struct {
	// Replayed are copies of the run's cleaned records put back on the
	// stream by `relay replay --site` (each imported again, latest wins).
	Replayed int `json:"replayed"`
	// Retried are the run's dead letters sent back by `relay dlq retry`;
	// FailedAgain of them were dead-lettered again.
	Retried     int `json:"retried"`
	FailedAgain int `json:"failed_again"`
}

// RunSummary is one site run as its lifecycle events tell it.
type RunSummary struct {
	ID      string    `json:"id"`
	Full    bool      `json:"full"`
	Started time.Time `json:"started"`
	// Exported is when the exporter finished (zero while it runs);
	// Finished when the last of the run's records was imported.
	Exported time.Time `json:"exported,omitzero"`
	Finished time.Time `json:"finished,omitzero"`
	// Seconds is the run's duration so far: to Finished, else to Exported
	// or the last event, or to now while it runs.
	Seconds float64 `json:"seconds"`
	Phase   string  `json:"phase"` // the newest event's phase
	Error   string  `json:"error,omitempty"`
	// RetryingSince is the first "retrying" event of the run.
	RetryingSince time.Time `json:"retrying_since,omitzero"`
	Attempt       int       `json:"attempt,omitempty"`
	NextAttempt   time.Time `json:"next_attempt,omitzero"`
	Calls         int       `json:"calls,omitempty"`
}

// Progress is a running run's progress.
type Progress struct {
	Elapsed  float64 `json:"elapsed_seconds"`
	Exported int     `json:"exported"` // published so far
	Cleaned  int     `json:"cleaned"`
	Imported int     `json:"imported"`
	// Expected is the site's record count at its last complete run (the
	// size of a full run), 0 when unknown.
	Expected int `json:"expected,omitempty"`
}

// RunRef names a run and when it ran.
type RunRef struct {
	ID string    `json:"id"`
	At time.Time `json:"at"`
}

// ProtocolSummary is the site's latest protocol check.
type ProtocolSummary struct {
	Score     *float64  `json:"score"` // 0..100; null when the site could not be checked
	Status    string    `json:"status"`
	Errors    int       `json:"errors"`
	Warnings  int       `json:"warnings"`
	New       int       `json:"new_findings"` // findings new since the check before
	CheckedAt time.Time `json:"checked_at"`
}

// Verification is the site's latest `relay verify` result, read from
// relay.verify.<site> on AUDIT (the JSON of messages.VerifyResult: status,
// counts, finished_at). Nil until a verification has run.
type Verification struct {
	Status      string    `json:"status"`
	Differences int       `json:"differences"`
	Records     int       `json:"records"`
	Error       string    `json:"error,omitempty"`
	At          time.Time `json:"at"`
}

// SiteStatus is one site's line of `relay status`.
type SiteStatus struct {
	Site string `json:"site"`
	Name string `json:"name,omitempty"`
	// Outcome is one of the Result constants; Reason says why for failed,
	// retrying, partial and deletions held.
	Outcome string `json:"result"`
	Reason  string `json:"reason,omitempty"`
	// Run is the last run (a run that was skipped because the previous one
	// still ran is not a run).
	Run      *RunSummary        `json:"run,omitempty"`
	LastRun  *messages.RunEvent `json:"last_event,omitempty"` // the run's newest event
	Counts   RunCounts          `json:"counts"`
	Again    Again              `json:"again"`
	Progress *Progress          `json:"progress,omitempty"`
	// NextRun is the next scheduled run (from the network file's cron).
	NextRun *time.Time `json:"next_run,omitempty"`
	// ScheduleSeconds is the time between two scheduled runs.
	ScheduleSeconds float64 `json:"schedule_seconds,omitempty"`
	// LastSuccess is the newest run that exported and whose records all
	// reached the destination or the DLQ (and, for the last run, none was
	// dead-lettered).
	LastSuccess  *RunRef             `json:"last_success,omitempty"`
	Verification *Verification       `json:"verification,omitempty"`
	Protocol     *ProtocolSummary    `json:"protocol,omitempty"`
	DLQ          map[string]uint64   `json:"dlq"` // stage -> dead letters held for the site
	State        *messages.SiteState `json:"state,omitempty"`
	// History is the site's recent runs, oldest first (StatusOptions.History).
	History []RunPoint `json:"history,omitempty"`
	// Scores are the site's recent protocol scores, oldest first.
	Scores []ScorePoint `json:"scores,omitempty"`
	Notes  []string     `json:"notes,omitempty"`
}

// RunPoint is one past run, for charts.
type RunPoint struct {
	ID       string    `json:"id"`
	At       time.Time `json:"at"`
	Phase    string    `json:"phase"`
	Exported int       `json:"exported"`
	Deleted  int       `json:"deleted"`
}

// ScorePoint is one protocol check, for charts.
type ScorePoint struct {
	At    time.Time `json:"at"`
	Score float64   `json:"score"`
}

// Result is the outcome of the site's last run (one of the Result constants).
func (s SiteStatus) Result() string { return s.Outcome }

// Status is what `relay status` shows.
type Status struct {
	At    time.Time                    `json:"at"`
	Sites []SiteStatus                 `json:"sites"`
	Lag   []StageLag                   `json:"lag"`
	DLQ   map[string]map[string]uint64 `json:"dlq"` // stage -> site -> count
	// Notifier is the alert notifier's own state, when one answered.
	Notifier *NotifierStatus `json:"notifier,omitempty"`
}

// NotifierStatus is what the notifier says of itself (relay notifier).
type NotifierStatus struct {
	Channels []ChannelStatus `json:"channels"`
	Checked  time.Time       `json:"checked"`
}

// ChannelStatus is one alert channel's delivery state.
type ChannelStatus struct {
	Channel     string    `json:"channel"` // email, webhook <host>
	Sent        int       `json:"sent"`
	Waiting     int       `json:"waiting"` // alerts not delivered yet (retried with backoff)
	Failures    int       `json:"failures"`
	GaveUp      int       `json:"gave_up"`
	LastError   string    `json:"last_error,omitempty"`
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// StatusOptions say what to collect.
type StatusOptions struct {
	// Network, when given, names the sites (with their names and
	// schedules); sites the streams know of are added.
	Network *config.Network
	Sites   []string
	// History is how many past runs (and protocol scores) to keep per site
	// (0: none).
	History int
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Only, when set, limits the status to these sites (progress).
	Only []string
	// SkipRaw does not read RECORDS_RAW's headers (the notifier's NATS user
	// may not read that stream at all): a running run's progress then shows
	// no exported count, and dead-letter retries of the transform stage are
	// not counted.
	SkipRaw bool
}

// GetStatus collects the status of the given sites plus every site the
// streams and state bucket know about.
func GetStatus(ctx context.Context, js jetstream.JetStream, sites []string) (*Status, error) {
	return Collect(ctx, js, StatusOptions{Sites: sites})
}

// Collect reads the pipeline's state from NATS: per site the last run and
// its records at each stage, the next run, the protocol score; the lag and
// dead letters per stage.
func Collect(ctx context.Context, js jetstream.JetStream, o StatusOptions) (*Status, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	st := &Status{At: o.Now().UTC(), DLQ: map[string]map[string]uint64{}}
	audit, err := js.Stream(ctx, messages.StreamAudit)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w (has the pipeline been provisioned? start any service or `relay provision`)", messages.StreamAudit, err)
	}
	lag, err := Lag(ctx, js)
	if err != nil {
		return nil, err
	}
	st.Lag = lag
	st.DLQ = dlqCounts(ctx, js)
	sites := o.Sites
	if o.Network != nil {
		sites = append(o.Network.SiteIDs(), sites...)
	}
	names, err := KnownSites(ctx, js)
	if err != nil {
		return nil, err
	}
	c := &collector{js: js, audit: audit, o: o, now: st.At, exportAckWait: exportAckWait(lag)}
	if kv, err := js.KeyValue(ctx, messages.BucketSiteState); err == nil {
		c.state = kv
	}
	all := union(sites, names)
	if len(o.Only) > 0 {
		all = union(o.Only, nil)
	}
	for _, site := range all {
		ss := SiteStatus{Site: site, DLQ: map[string]uint64{}}
		for stage, bySite := range st.DLQ {
			if n := bySite[site]; n > 0 {
				ss.DLQ[stage] = n
			}
		}
		c.site(ctx, &ss)
		st.Sites = append(st.Sites, ss)
	}
	return st, nil
}

// collector reads one site after another.
type collector struct {
	js            jetstream.JetStream
	audit         jetstream.Stream
	state         jetstream.KeyValue
	o             StatusOptions
	now           time.Time
	exportAckWait time.Duration
}

func (c *collector) site(ctx context.Context, ss *SiteStatus) {
	if c.o.Network != nil {
		if s, ok := c.o.Network.Site(ss.Site); ok {
			ss.Name = s.Name
			if sched, err := s.ParseSchedule(); err == nil {
				next := sched.Next(c.now)
				ss.NextRun = &next
				ss.ScheduleSeconds = sched.Next(next).Sub(next).Seconds()
			}
		}
	}
	if c.state != nil {
		if e, err := c.state.Get(ctx, ss.Site); err == nil {
			var s messages.SiteState
			if json.Unmarshal(e.Value(), &s) == nil {
				ss.State = &s
			} else {
				ss.Notes = append(ss.Notes, "state in "+messages.BucketSiteState+" is unreadable")
			}
		}
	}
	if err := c.runs(ctx, ss); err != nil {
		ss.Notes = append(ss.Notes, err.Error())
	}
	c.protocol(ctx, ss)
	c.verification(ctx, ss)
}

// protocol reads the site's latest protocol report (and, for charts, the
// ones before it).
func (c *collector) protocol(ctx context.Context, ss *SiteStatus) {
	reports, err := c.js.Stream(ctx, messages.StreamReports)
	if err != nil {
		return
	}
	m, err := reports.GetLastMsgForSubject(ctx, messages.ProtocolReportSubject(ss.Site))
	if err != nil {
		return
	}
	var r messages.ProtocolReport
	if json.Unmarshal(m.Data, &r) != nil {
		ss.Notes = append(ss.Notes, fmt.Sprintf("protocol report (seq %d) is unreadable", m.Sequence))
		return
	}
	ss.Protocol = &ProtocolSummary{Score: r.Score, Status: r.Status, Errors: r.Errors, Warnings: r.Warnings, CheckedAt: r.CheckedAt, New: NewFindings(r)}
	if c.o.History <= 0 {
		return
	}
	_ = scan(ctx, c.js, messages.StreamReports, []string{messages.ProtocolReportSubject(ss.Site)}, time.Time{}, 0, func(msg jetstream.Msg) bool {
		var r struct {
			Score     *float64  `json:"score"`
			CheckedAt time.Time `json:"checked_at"`
		}
		if json.Unmarshal(msg.Data(), &r) == nil && r.Score != nil {
			ss.Scores = append(ss.Scores, ScorePoint{At: r.CheckedAt, Score: *r.Score})
		}
		return true
	})
	if len(ss.Scores) > c.o.History {
		ss.Scores = ss.Scores[len(ss.Scores)-c.o.History:]
	}
}

// NewFindings counts the findings a report has that the one before it had not.
func NewFindings(r messages.ProtocolReport) int {
	n := 0
	for _, ch := range r.Changes {
		if ch.Kind == messages.ChangeNewFinding {
			n++
		}
	}
	return n
}

// verification reads the site's latest verification, when there is one.
func (c *collector) verification(ctx context.Context, ss *SiteStatus) {
	m, err := c.audit.GetLastMsgForSubject(ctx, messages.VerifySubject(ss.Site))
	if err != nil {
		return
	}
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Counts struct {
			Records, Missing, Stale, Extra int
		} `json:"counts"`
		FinishedAt time.Time `json:"finished_at"`
	}
	if json.Unmarshal(m.Data, &r) != nil || r.Status == "" {
		return
	}
	ss.Verification = &Verification{Status: r.Status, Error: r.Error, Records: r.Counts.Records,
		Differences: r.Counts.Missing + r.Counts.Stale + r.Counts.Extra, At: r.FinishedAt}
}

// dlqCounts reads the dead letters held per stage and site.
func dlqCounts(ctx context.Context, js jetstream.JetStream) map[string]map[string]uint64 {
	out := map[string]map[string]uint64{}
	dlq, err := js.Stream(ctx, messages.StreamDLQ)
	if err != nil {
		return out
	}
	info, err := dlq.Info(ctx, jetstream.WithSubjectFilter(messages.SubjectDLQ+".>"))
	if err != nil {
		return out
	}
	for subj, n := range info.State.Subjects {
		stage, site, ok := parseDLQSubject(subj)
		if !ok {
			continue
		}
		if out[stage] == nil {
			out[stage] = map[string]uint64{}
		}
		out[stage][site] += n
	}
	return out
}

func union(a, b []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range append(append([]string(nil), a...), b...) {
		if s != "" && !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

// runStart is the run's tick time, read from its deterministic ID
// (<site>-YYYYMMDDTHHMMSSZ); else the event's time.
func runStart(runID string, fallback time.Time) time.Time {
	if i := strings.LastIndexByte(runID, '-'); i >= 0 {
		if t, err := time.Parse("20060102T150405Z", runID[i+1:]); err == nil {
			return t
		}
	}
	return fallback
}

func parseDLQSubject(subj string) (stage, site string, ok bool) {
	rest, found := strings.CutPrefix(subj, messages.SubjectDLQ+".")
	if !found {
		return "", "", false
	}
	stage, site, ok = strings.Cut(rest, ".")
	return stage, site, ok
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

// KnownSites lists every site the pipeline's streams and state know of.
func KnownSites(ctx context.Context, js jetstream.JetStream) ([]string, error) {
	known := map[string]bool{}
	if audit, err := js.Stream(ctx, messages.StreamAudit); err == nil {
		if info, err := audit.Info(ctx, jetstream.WithSubjectFilter(messages.SubjectRun+".*")); err == nil {
			for subj := range info.State.Subjects {
				known[messages.SiteFromSubject(subj)] = true
			}
		}
	}
	for _, bySite := range dlqCounts(ctx, js) {
		for site := range bySite {
			known[site] = true
		}
	}
	if kv, err := js.KeyValue(ctx, messages.BucketSiteState); err == nil {
		if lister, err := kv.ListKeys(ctx); err == nil {
			for k := range lister.Keys() {
				known[k] = true
			}
		}
	}
	out := make([]string, 0, len(known))
	for s := range known {
		out = append(out, s)
	}
	sort.Strings(out)
	return out, nil
}
