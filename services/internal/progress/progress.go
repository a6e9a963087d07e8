// Package progress shows site runs as they go (`relay sync --wait`, `relay
// demo`): per site the records exported, cleaned and imported, the rate and
// the time left, redrawn in place on a terminal (vbauerster/mpb bars) and
// as plain lines every few seconds otherwise. It reads the same status as
// `relay status` and waits until every run is imported (or failed).
package progress

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/ops"
)

// Options say which runs to follow and how to show them.
type Options struct {
	Out io.Writer
	// Runs are the runs to wait for: site -> run ID.
	Runs map[string]string
	// Expected are the records each site's run is expected to export, for
	// the time left before the exporter has finished (0: the site's count
	// at its last complete run, else unknown).
	Expected map[string]int
	Network  *config.Network
	// Poll is how often the status is read (default 1s); Every how often a
	// plain line is printed when Out is not a terminal (default 5s).
	Poll, Every time.Duration
	// Terminal forces (or, false, prevents) the redrawn bars; nil: Out is
	// a terminal.
	Terminal *bool
}

// Site is one followed run as last read.
type Site struct {
	Site, Run string
	Status    ops.SiteStatus
	Started   time.Time
	Done      bool
	Total     int     // records the run exports (estimated until exported)
	Rate      float64 // records imported per second
	ETA       time.Duration
	Phase     string // waiting, exporting, importing, done, failed
}

// Failed reports whether the run failed (its reason is Status.Reason).
func (s *Site) Failed() bool { return s.Status.Outcome == ops.ResultFailed }

// IsTerminal reports whether w is a terminal.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// Wait follows the runs until each is done (imported, or failed) or ctx
// ends, showing their progress, and returns them.
func Wait(ctx context.Context, js jetstream.JetStream, o Options) ([]*Site, error) {
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	if o.Every <= 0 {
		o.Every = 5 * time.Second
	}
	tty := IsTerminal(o.Out)
	if o.Terminal != nil {
		tty = *o.Terminal
	}
	sites := make([]*Site, 0, len(o.Runs))
	for s, r := range o.Runs {
		sites = append(sites, &Site{Site: s, Run: r, Started: time.Now(), Phase: "waiting", Total: o.Expected[s]})
	}
	sort.Slice(sites, func(i, j int) bool { return sites[i].Site < sites[j].Site })
	var view viewer = &lines{out: o.Out, every: o.Every}
	if tty {
		view = newBars(ctx, o.Out, sites)
	}
	defer view.close()
	only := make([]string, 0, len(sites))
	for _, s := range sites {
		only = append(only, s.Site)
	}
	for {
		st, err := ops.Collect(ctx, js, ops.StatusOptions{Network: o.Network, Only: only})
		if err == nil {
			for _, s := range sites {
				s.update(st, o.Expected[s.Site])
			}
			view.show(sites)
		}
		if allDone(sites) {
			return sites, nil
		}
		select {
		case <-ctx.Done():
			return sites, fmt.Errorf("runs not finished: %w", ctx.Err())
		case <-time.After(o.Poll):
		}
	}
}

func allDone(sites []*Site) bool {
	for _, s := range sites {
		if !s.Done {
			return false
		}
	}
	return true
}

// update reads the site's line of a status.
func (s *Site) update(st *ops.Status, expected int) {
	for _, ss := range st.Sites {
		if ss.Site != s.Site {
			continue
		}
		if ss.Run == nil || ss.Run.ID != s.Run {
			return // the exporter has not taken the request yet
		}
		s.Status = ss
		n := ss.Counts
		exported := ss.Run.Phase == messages.PhaseExported || ss.Run.Phase == messages.PhaseCompleted
		switch {
		case ss.Outcome == ops.ResultFailed:
			s.Phase, s.Done = "failed", true
		case exported && n.Waiting == 0:
			s.Phase, s.Done = "done", true
		case exported:
			s.Phase = "importing"
		case ss.Outcome == ops.ResultRetrying:
			s.Phase = "retrying"
		default:
			s.Phase = "exporting"
		}
		s.Total = n.Exported + n.Deleted
		if !exported {
			s.Total = max(expected, s.Total)
			if ss.Progress != nil {
				s.Total = max(s.Total, ss.Progress.Exported, ss.Progress.Expected)
			}
		}
		if !ss.Run.Started.IsZero() {
			s.Started = ss.Run.Started
		}
		// The run's own duration: to its last import once done, so the
		// rate stays what it was.
		if el := ss.Run.Seconds; el > 0 {
			s.Rate = float64(n.Imported+n.DeadLettered) / el
		}
		s.ETA = 0
		if left := s.Total - n.Imported - n.DeadLettered; left > 0 && s.Rate > 0 {
			s.ETA = time.Duration(float64(left) / s.Rate * float64(time.Second))
		}
	}
}

// exported is the records published so far (while the run exports, from
// its progress).
func (s *Site) exported() int {
	if p := s.Status.Progress; p != nil {
		return p.Exported
	}
	return s.Status.Counts.Exported + s.Status.Counts.Deleted
}

func (s *Site) cleaned() int {
	if p := s.Status.Progress; p != nil {
		return p.Cleaned
	}
	return s.Status.Counts.Cleaned
}

// Line is the site's progress in words.
func (s *Site) Line() string {
	n := s.Status.Counts
	total := "?"
	if s.Total > 0 || s.Done {
		total = fmt.Sprint(s.Total)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %s, exported %d, cleaned %d, imported %d/%s", s.Site, s.Phase, s.exported(), s.cleaned(), n.Imported, total)
	if n.DeadLettered > 0 {
		fmt.Fprintf(&b, ", dead-lettered %d", n.DeadLettered)
	}
	if s.Rate > 0 {
		fmt.Fprintf(&b, ", %.0f records/s", s.Rate)
	}
	if s.ETA > 0 && !s.Done {
		fmt.Fprintf(&b, ", about %s left", s.ETA.Round(time.Second))
	}
	if s.Done && s.Phase == "failed" {
		fmt.Fprintf(&b, ": %s", s.Status.Reason)
	}
	return b.String()
}

type viewer interface {
	show([]*Site)
	close()
}

// lines prints one line per site every few seconds, and when a site ends.
type lines struct {
	out   io.Writer
	every time.Duration
	last  time.Time
	ended map[string]bool
}

func (l *lines) show(sites []*Site) {
	if l.ended == nil {
		l.ended = map[string]bool{}
	}
	due := time.Since(l.last) >= l.every
	for _, s := range sites {
		if (due && !l.ended[s.Site]) || (s.Done && !l.ended[s.Site]) {
			fmt.Fprintln(l.out, s.Line())
		}
		if s.Done {
			l.ended[s.Site] = true
		}
	}
	if due {
		l.last = time.Now()
	}
}

func (l *lines) close() {}

// bars redraws one bar per site in place.
type bars struct {
	p    *mpb.Progress
	mu   sync.Mutex
	bars map[string]*mpb.Bar
	text map[string]string
}

func newBars(ctx context.Context, out io.Writer, sites []*Site) *bars {
	b := &bars{p: mpb.NewWithContext(ctx, mpb.WithOutput(out), mpb.WithWidth(32), mpb.WithRefreshRate(200*time.Millisecond)),
		bars: map[string]*mpb.Bar{}, text: map[string]string{}}
	width := 0
	for _, s := range sites {
		width = max(width, len(s.Site))
	}
	for _, s := range sites {
		site := s.Site
		// Total 0: the bar completes only when the run is done (SetTotal
		// with complete), not when the imports catch up with an estimate.
		b.bars[site] = b.p.AddBar(0,
			mpb.PrependDecorators(decor.Name(site, decor.WC{W: width + 1, C: decor.DindentRight})),
			mpb.AppendDecorators(decor.Any(func(decor.Statistics) string {
				b.mu.Lock()
				defer b.mu.Unlock()
				return b.text[site]
			})))
	}
	return b
}

func (b *bars) show(sites []*Site) {
	for _, s := range sites {
		bar := b.bars[s.Site]
		line := strings.TrimPrefix(s.Line(), s.Site+": ")
		b.mu.Lock()
		b.text[s.Site] = line
		b.mu.Unlock()
		n := s.Status.Counts
		if s.Done {
			if !bar.Completed() {
				bar.SetTotal(int64(max(n.Imported+n.DeadLettered, 1)), false)
				bar.SetCurrent(int64(max(n.Imported+n.DeadLettered, 1)))
				bar.SetTotal(-1, true)
			}
			continue
		}
		bar.SetTotal(int64(max(s.Total, n.Imported+n.DeadLettered, 1)), false)
		bar.SetCurrent(int64(n.Imported + n.DeadLettered))
	}
}

func (b *bars) close() {
	for _, bar := range b.bars {
		if !bar.Completed() {
			bar.Abort(false)
		}
	}
	b.p.Wait()
}
