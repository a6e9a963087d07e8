package ops

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/pipeline/topology"
)

// RunCounts are the records of one run at each stage.
type RunCounts struct {
	Exported     int `json:"exported"`      // records published by the exporter
	Deleted      int `json:"deleted"`       // deletions published
	Cleaned      int `json:"cleaned"`       // messages on relay.records.clean.<site> of this run
	Imported     int `json:"imported"`      // records (and deletions) the importer confirmed
	DeadLettered int `json:"dead_lettered"` // dead letters of this run, any stage
}

// SiteStatus is one site's line of `relay status`.
type SiteStatus struct {
	Site    string              `json:"site"`
	LastRun *messages.RunEvent  `json:"last_run,omitempty"` // the newest event on relay.run.<site>
	Started time.Time           `json:"started,omitzero"`
	Counts  RunCounts           `json:"counts"`
	State   *messages.SiteState `json:"state,omitempty"`
	DLQ     map[string]uint64   `json:"dlq"` // stage -> dead letters held for the site
	Notes   []string            `json:"notes,omitempty"`
}

// StageLag is a durable consumer's backlog.
type StageLag struct {
	Stage       string `json:"stage"`
	Stream      string `json:"stream"`
	Consumer    string `json:"consumer"`
	Pending     uint64 `json:"pending"`     // not yet delivered
	AckPending  int    `json:"ack_pending"` // delivered, not yet acked
	Redelivered int    `json:"redelivered"`
	Lag         uint64 `json:"lag"` // Pending + AckPending
	Missing     bool   `json:"missing,omitempty"`
	// StreamMissing: the stream itself is gone (deleted, or not recovered
	// by the NATS server after a crash).
	StreamMissing bool `json:"stream_missing,omitempty"`
}

// Status is what `relay status` shows.
type Status struct {
	At    time.Time                    `json:"at"`
	Sites []SiteStatus                 `json:"sites"`
	Lag   []StageLag                   `json:"lag"`
	DLQ   map[string]map[string]uint64 `json:"dlq"` // stage -> site -> count
}

// GetStatus collects the status of the given sites plus every site the
// streams and state bucket know about.
func GetStatus(ctx context.Context, js jetstream.JetStream, sites []string) (*Status, error) {
	st := &Status{At: time.Now().UTC(), DLQ: map[string]map[string]uint64{}}
	known := map[string]bool{}
	for _, s := range sites {
		known[s] = true
	}
	audit, err := js.Stream(ctx, messages.StreamAudit)
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w (has the pipeline been provisioned? start any service or `relay provision`)", messages.StreamAudit, err)
	}
	if info, err := audit.Info(ctx, jetstream.WithSubjectFilter(messages.SubjectRun+".*")); err == nil {
		for subj := range info.State.Subjects {
			known[messages.SiteFromSubject(subj)] = true
		}
	}
	if dlq, err := js.Stream(ctx, messages.StreamDLQ); err == nil {
		if info, err := dlq.Info(ctx, jetstream.WithSubjectFilter(messages.SubjectDLQ+".>")); err == nil {
			for subj, n := range info.State.Subjects {
				stage, site, ok := parseDLQSubject(subj)
				if !ok {
					continue
				}
				if st.DLQ[stage] == nil {
					st.DLQ[stage] = map[string]uint64{}
				}
				st.DLQ[stage][site] += n
				known[site] = true
			}
		}
	}
	kv, kvErr := js.KeyValue(ctx, messages.BucketSiteState)
	if kvErr == nil {
		if lister, err := kv.ListKeys(ctx); err == nil {
			for k := range lister.Keys() {
				known[k] = true
			}
		}
	}
	names := make([]string, 0, len(known))
	for s := range known {
		names = append(names, s)
	}
	sort.Strings(names)
	for _, site := range names {
		ss := SiteStatus{Site: site, DLQ: map[string]uint64{}}
		for stage, bySite := range st.DLQ {
			if n := bySite[site]; n > 0 {
				ss.DLQ[stage] = n
			}
		}
		if kvErr == nil {
			if e, err := kv.Get(ctx, site); err == nil {
				var s messages.SiteState
				if json.Unmarshal(e.Value(), &s) == nil {
					ss.State = &s
				} else {
					ss.Notes = append(ss.Notes, "state in "+messages.BucketSiteState+" is unreadable")
				}
			}
		}
		if err := lastRun(ctx, js, audit, &ss); err != nil {
			ss.Notes = append(ss.Notes, err.Error())
		}
		st.Sites = append(st.Sites, ss)
	}
	lag, err := Lag(ctx, js)
	if err != nil {
		return nil, err
	}
	st.Lag = lag
	return st, nil
}

// Lag reads each stage's durable consumer.
func Lag(ctx context.Context, js jetstream.JetStream) ([]StageLag, error) {
	var out []StageLag
	for _, sc := range topology.Stages {
		l := StageLag{Stage: sc.Name, Stream: sc.Stream, Consumer: sc.Consumer}
		info, err := consumerInfo(ctx, js, sc)
		if err != nil {
			l.Missing = true
			l.StreamMissing = errors.Is(err, jetstream.ErrStreamNotFound)
		} else {
			l.Pending, l.AckPending, l.Redelivered = info.NumPending, info.NumAckPending, info.NumRedelivered
			l.Lag = l.Pending + uint64(l.AckPending)
		}
		out = append(out, l)
	}
	return out, nil
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

// lastRun fills the site's newest run event and counts the run's records at
// each stage, reading only the messages since the run started.
func lastRun(ctx context.Context, js jetstream.JetStream, audit jetstream.Stream, ss *SiteStatus) error {
	m, err := audit.GetLastMsgForSubject(ctx, messages.RunSubject(ss.Site))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("last run: %w", err)
	}
	var ev messages.RunEvent
	if err := json.Unmarshal(m.Data, &ev); err != nil {
		return fmt.Errorf("last run event (seq %d) is unreadable", m.Sequence)
	}
	ss.LastRun = &ev
	ss.Counts.Exported, ss.Counts.Deleted = ev.Exported, ev.Deleted
	start := runStart(ev.RunID, m.Time)
	ss.Started = start
	from := start.Add(-time.Minute)
	sameRun := func(msg jetstream.Msg) bool { return msg.Headers().Get(messages.HeaderRun) == ev.RunID }
	if err := scan(ctx, js, messages.StreamRecordsClean, []string{messages.RecordsCleanSubject(ss.Site)}, from, 0, func(msg jetstream.Msg) bool {
		if sameRun(msg) {
			ss.Counts.Cleaned++
		}
		return true
	}); err != nil {
		return err
	}
	// Distinct records: a batch imported again after a lost ack (NATS
	// restart, importer crash) is audited again but is not a new import.
	imported := map[string]bool{}
	if err := scan(ctx, js, messages.StreamAudit, []string{messages.ImportDoneSubject(ss.Site)}, from, 0, func(msg jetstream.Msg) bool {
		var d messages.ImportDone
		if json.Unmarshal(msg.Data(), &d) == nil && contains(d.Runs, ev.RunID) {
			for _, r := range d.Records {
				imported["+"+r] = true
			}
			for _, r := range d.Deleted {
				imported["-"+r] = true
			}
		}
		return true
	}); err != nil {
		return err
	}
	ss.Counts.Imported = len(imported)
	return scan(ctx, js, messages.StreamDLQ, []string{messages.SubjectDLQ + ".*." + ss.Site}, from, 0, func(msg jetstream.Msg) bool {
		if sameRun(msg) {
			ss.Counts.DeadLettered++
		}
		return true
	})
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

// Result of a run for the table: the phase, with "running" for a run that
// has started but not finished.
func (s SiteStatus) Result() string {
	if s.LastRun == nil {
		return "never run"
	}
	switch s.LastRun.Phase {
	case messages.PhaseStarted:
		return "running"
	case messages.PhaseRetrying:
		return "retrying"
	case messages.PhaseExported:
		if s.LastRun.DeletionsHeld > 0 {
			return "deletions held"
		}
		return "exported"
	}
	return s.LastRun.Phase
}

// WriteTable prints the status for people.
func (st *Status) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SITE\tLAST RUN\tWHEN\tRESULT\tEXPORTED\tDELETED\tCLEANED\tIMPORTED\tDEAD-LETTERED\tDLQ HELD")
	for _, s := range st.Sites {
		run, when := "-", "-"
		if s.LastRun != nil {
			run = s.LastRun.RunID
			when = s.LastRun.At.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\n", s.Site, run, when, s.Result(),
			s.Counts.Exported, s.Counts.Deleted, s.Counts.Cleaned, s.Counts.Imported, s.Counts.DeadLettered, dlqCell(s.DLQ))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range st.Sites {
		switch {
		case s.LastRun != nil && s.LastRun.Phase == messages.PhaseRetrying:
			next := time.Until(s.LastRun.NextAt).Round(time.Second)
			fmt.Fprintf(w, "  %s: retrying: %s (attempt %d, next in %s)\n", s.Site, s.LastRun.Error, s.LastRun.Attempt, max(next, 0))
		case s.LastRun != nil && s.LastRun.Error != "":
			fmt.Fprintf(w, "  %s: %s\n", s.Site, s.LastRun.Error)
		}
		if s.LastRun != nil {
			for _, warn := range s.LastRun.Warnings {
				fmt.Fprintf(w, "  %s: %s\n", s.Site, warn)
			}
			if n := s.LastRun.DeletionsPending; n > 0 {
				fmt.Fprintf(w, "  %s: %d record(s) gone at the site, deleted at the destination once they stay gone (deletion_delay)\n", s.Site, n)
			}
		}
		for _, n := range s.Notes {
			fmt.Fprintf(w, "  %s: %s\n", s.Site, n)
		}
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STAGE\tSTREAM\tCONSUMER\tPENDING\tACK PENDING\tLAG\tREDELIVERED")
	for _, l := range st.Lag {
		if l.StreamMissing {
			fmt.Fprintf(tw, "%s\t%s\t%s\t-\t-\t-\t-\t(stream missing: run `relay provision`, then `relay sync --all --full`; if NATS restarted, its log says why the stream did not recover)\n", l.Stage, l.Stream, l.Consumer)
			continue
		}
		if l.Missing {
			fmt.Fprintf(tw, "%s\t%s\t%s\t-\t-\t-\t-\t(consumer missing: not provisioned, or a replay is resetting it)\n", l.Stage, l.Stream, l.Consumer)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\n", l.Stage, l.Stream, l.Consumer, l.Pending, l.AckPending, l.Lag, l.Redelivered)
	}
	return tw.Flush()
}

func dlqCell(m map[string]uint64) string {
	if len(m) == 0 {
		return "0"
	}
	var parts []string
	for _, stage := range messages.Stages {
		if n := m[stage]; n > 0 {
			parts = append(parts, fmt.Sprintf("%s:%d", stage, n))
		}
	}
	for stage, n := range m {
		if !contains(messages.Stages, stage) {
			parts = append(parts, fmt.Sprintf("%s:%d", stage, n))
		}
	}
	return strings.Join(parts, " ")
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
	if dlq, err := js.Stream(ctx, messages.StreamDLQ); err == nil {
		if info, err := dlq.Info(ctx, jetstream.WithSubjectFilter(messages.SubjectDLQ+".>")); err == nil {
			for subj := range info.State.Subjects {
				if _, site, ok := parseDLQSubject(subj); ok {
					known[site] = true
				}
			}
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
