package ops

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/redcap-relay/relay/messages"
)

// stamp is how the tables print a time (UTC, to the second).
func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05")
}

// WriteTable prints the status for people: the runs, then per site what
// comes next and the protocol score, then the stages.
func (st *Status) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SITE\tRESULT\tRUN\tSTARTED (UTC)\tTOOK\tEXPORTED\tDELETED\tCLEANED\tIMPORTED\tDEAD-LETTERED\tWAITING\tDLQ HELD")
	for _, s := range st.Sites {
		run, started, took := "-", "-", "-"
		if s.Run != nil {
			run, started, took = s.Run.ID, stamp(s.Run.Started), Seconds(s.Run.Seconds)
		}
		n := s.Counts
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s\n", s.Site, s.Outcome, run, started, took,
			n.Exported, n.Deleted, n.Cleaned, n.Imported, n.DeadLettered, n.Waiting, dlqCell(s.DLQ))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range st.Sites {
		writeSiteLines(w, s)
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SITE\tNEXT RUN (UTC)\tLAST SUCCESS (UTC)\tLAST VERIFIED\tPROTOCOL")
	for _, s := range st.Sites {
		next, ok, verified, proto := "-", "-", "-", "-"
		if s.NextRun != nil {
			next = stamp(*s.NextRun)
		}
		if s.LastSuccess != nil {
			ok = stamp(s.LastSuccess.At)
		}
		if v := s.Verification; v != nil {
			verified = fmt.Sprintf("%s %s (%d differences)", stamp(v.At), v.Status, v.Differences)
		}
		if p := s.Protocol; p != nil {
			proto = ScoreText(p.Score) + " (" + p.Status + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Site, next, ok, verified, proto)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	if err := writeLagTable(w, st.Lag); err != nil {
		return err
	}
	if st.Notifier != nil {
		writeNotifier(w, st.Notifier)
	}
	return nil
}

// writeSiteLines prints what a site's row cannot say: why, the progress of
// a running run, deliveries made again, warnings.
func writeSiteLines(w io.Writer, s SiteStatus) {
	if s.Reason != "" {
		fmt.Fprintf(w, "  %s: %s: %s\n", s.Site, s.Outcome, s.Reason)
	}
	if p := s.Progress; p != nil {
		of := ""
		if p.Expected > 0 {
			of = fmt.Sprintf(" of about %d", p.Expected)
		}
		fmt.Fprintf(w, "  %s: running for %s: exported %d%s, cleaned %d, imported %d\n", s.Site, Seconds(p.Elapsed), p.Exported, of, p.Cleaned, p.Imported)
	}
	if a := s.Again; a.Replayed > 0 || a.Retried > 0 {
		fmt.Fprintf(w, "  %s: delivered again since the run (not in its counts): %d replayed, %d retried from the DLQ (%d failed again)\n",
			s.Site, a.Replayed, a.Retried, a.FailedAgain)
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

func writeLagTable(w io.Writer, lag []StageLag) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "STAGE\tSTREAM\tCONSUMER\tPENDING\tACK PENDING\tLAG\tREDELIVERED\tREADERS WAITING")
	var stuck []string
	for _, l := range lag {
		if l.StreamMissing {
			fmt.Fprintf(tw, "%s\t%s\t%s\t-\t-\t-\t-\t-\t(stream missing: run `relay provision`, then `relay sync --all --full`; if NATS restarted, its log says why the stream did not recover)\n", l.Stage, l.Stream, l.Consumer)
			continue
		}
		if l.Missing {
			fmt.Fprintf(tw, "%s\t%s\t%s\t-\t-\t-\t-\t-\t(consumer missing: not provisioned, or a replay is resetting it)\n", l.Stage, l.Stream, l.Consumer)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\n", l.Stage, l.Stream, l.Consumer, l.Pending, l.AckPending, l.Lag, l.Redelivered, l.Waiting)
		if l.Stuck != "" {
			stuck = append(stuck, fmt.Sprintf("  %s: stuck: %s\n", l.Stage, l.Stuck))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range stuck {
		io.WriteString(w, s)
	}
	return nil
}

func writeNotifier(w io.Writer, n *NotifierStatus) {
	for _, c := range n.Channels {
		line := fmt.Sprintf("notifier %s: %d sent, %d waiting", c.Channel, c.Sent, c.Waiting)
		if c.Failures > 0 {
			line += fmt.Sprintf(", %d failed attempt(s)", c.Failures)
		}
		if c.GaveUp > 0 {
			line += fmt.Sprintf(", %d NOT DELIVERED (gave up)", c.GaveUp)
		}
		if c.LastError != "" {
			line += fmt.Sprintf("; last error %s: %s", stamp(c.LastErrorAt), c.LastError)
		}
		fmt.Fprintln(w, line)
	}
}

// Seconds prints a duration in seconds for people: 850ms, 12s, 3m10s, 2h5m.
func Seconds(s float64) string {
	d := time.Duration(s * float64(time.Second))
	switch {
	case d < time.Second:
		return d.Round(10 * time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	case d < time.Hour:
		return d.Round(time.Second).String()
	}
	return strings.TrimSuffix(d.Round(time.Minute).String(), "0s")
}

// ScoreText prints a protocol score ("n/a" when the site could not be checked).
func ScoreText(s *float64) string {
	if s == nil {
		return "n/a"
	}
	return fmt.Sprintf("%.1f", *s)
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
