package notify

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/ops"
	"github.com/redcap-relay/relay/services/internal/pipeline/telemetry"
)

// SubjectStatus is where the notifier answers `relay status` and the
// dashboard with its channels' delivery state (NATS request/reply).
const SubjectStatus = "relay.notifier.status"

// Options configure a notifier.
type Options struct {
	NC      *nats.Conn
	JS      jetstream.JetStream
	Network *config.Network
	Logger  *slog.Logger
	// Channels replace the ones the network file configures (tests).
	Channels []Channel
}

// Notifier watches the pipeline and sends alerts.
type Notifier struct {
	o        Options
	a        *config.Alerts
	log      *slog.Logger
	channels []*dispatcher
	summary  *dispatcher

	mu    sync.Mutex
	state *State
	last  *ops.Status
}

// New builds the notifier's channels from the network file's alerts.
func New(o Options) (*Notifier, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	a := &o.Network.Alerts
	n := &Notifier{o: o, a: a, log: o.Logger.With("service", "notifier")}
	chans := o.Channels
	if chans == nil {
		var err error
		if chans, err = channelsOf(a); err != nil {
			return nil, err
		}
	}
	for _, ch := range chans {
		n.channels = append(n.channels, newDispatcher(ch, a.MaxPerHour, a.RetryFor.D(), n.log))
	}
	if a.Email != nil && len(a.Email.SummaryTo) > 0 {
		m, err := NewMailer(a.Email, true)
		if err != nil {
			return nil, err
		}
		n.summary = newDispatcher(m, 24, a.RetryFor.D(), n.log)
	}
	n.state = n.loadState()
	return n, nil
}

func channelsOf(a *config.Alerts) ([]Channel, error) {
	var out []Channel
	if a.Email != nil {
		m, err := NewMailer(a.Email, false)
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	for _, w := range a.Webhooks {
		h, err := NewWebhook(w)
		if err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	return out, nil
}

// Run checks the pipeline every alerts.check_every until ctx ends.
func (n *Notifier) Run(ctx context.Context) error {
	if n.o.NC != nil {
		sub, err := n.o.NC.Subscribe(SubjectStatus, func(m *nats.Msg) {
			b, _ := json.Marshal(n.Status())
			_ = m.Respond(b)
		})
		if err != nil {
			return fmt.Errorf("notifier: answer on %s: %w", SubjectStatus, err)
		}
		defer sub.Unsubscribe()
	}
	var wg sync.WaitGroup
	for _, d := range n.all() {
		wg.Add(1)
		go func() { defer wg.Done(); d.run(ctx) }()
	}
	defer wg.Wait()
	n.log.Info("notifier started", "channels", len(n.channels), "check_every", n.a.CheckEvery.D(), "daily_summary", n.a.DailySummary)
	t := time.NewTicker(n.a.CheckEvery.D())
	defer t.Stop()
	for {
		n.Check(ctx)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

func (n *Notifier) all() []*dispatcher {
	if n.summary == nil {
		return n.channels
	}
	return append(append([]*dispatcher(nil), n.channels...), n.summary)
}

// Check reads the pipeline once, raises what is new and sets the pipeline
// metrics; the daily summary goes out when its time has come.
func (n *Notifier) Check(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	st, err := ops.Collect(cctx, n.o.JS, ops.StatusOptions{Network: n.o.Network, SkipRaw: true})
	if err != nil {
		if ctx.Err() == nil {
			n.log.Warn("pipeline state not readable; checking again later", "err", err)
		}
		telemetry.SetPipeline([]telemetry.Point{{Name: "relay_pipeline_state_up", Value: 0}})
		return
	}
	telemetry.SetPipeline(Points(st))
	n.mu.Lock()
	alerts := Detect(st, n.state, n.a)
	n.last = st
	due := n.summaryDue(st.At)
	n.mu.Unlock()
	for _, a := range alerts {
		telemetry.NotifierAlerts.WithLabelValues(a.Event).Inc()
		n.log.Warn("alert", "event", a.Event, "site", a.Site, "title", a.Title)
	}
	for _, d := range n.channels {
		d.enqueue(alerts...)
	}
	if due {
		n.SendSummary()
	}
	n.saveState()
}

// summaryDue reports whether today's summary time has passed since the
// last summary (the first run only remembers the time).
func (n *Notifier) summaryDue(now time.Time) bool {
	h, m, ok := n.a.SummaryAt()
	if !ok || n.summary == nil {
		return false
	}
	local := now.In(n.a.Location())
	at := time.Date(local.Year(), local.Month(), local.Day(), h, m, 0, 0, local.Location())
	if n.state.Summary.IsZero() {
		n.state.Summary = now
		return false
	}
	if !now.Before(at) && n.state.Summary.Before(at) {
		n.state.Summary = now
		return true
	}
	return false
}

// SendSummary queues the daily summary of the last state read.
func (n *Notifier) SendSummary() {
	n.mu.Lock()
	st := n.last
	n.mu.Unlock()
	if st == nil || n.summary == nil {
		return
	}
	day := st.At.In(n.a.Location()).Format("2006-01-02")
	n.summary.enqueue(Alert{Key: "summary/" + day, Event: "summary", Severity: "info", At: st.At,
		Title: "daily summary " + day, Text: Summary(st, n.Status())})
}

// Summary is the daily summary's text: every site's last run, what waits,
// the protocol scores, the stuck stages, the notifier's own failures.
func Summary(st *ops.Status, ns *ops.NotifierStatus) string {
	var b strings.Builder
	fmt.Fprintf(&b, "REDCap Relay, %s\n\n", st.At.UTC().Format("2006-01-02 15:04 UTC"))
	_ = st.WriteTable(&b)
	if ns != nil {
		b.WriteString("\n")
		for _, c := range ns.Channels {
			if c.Failures > 0 || c.GaveUp > 0 {
				fmt.Fprintf(&b, "alerts by %s: %d failed attempt(s), %d not delivered; last error: %s\n", c.Channel, c.Failures, c.GaveUp, c.LastError)
			}
		}
	}
	return b.String()
}

// Status is the channels' delivery state.
func (n *Notifier) Status() *ops.NotifierStatus {
	n.mu.Lock()
	at := time.Time{}
	if n.last != nil {
		at = n.last.At
	}
	n.mu.Unlock()
	s := &ops.NotifierStatus{Checked: at}
	for _, d := range n.all() {
		s.Channels = append(s.Channels, d.snapshot())
	}
	return s
}

// Ask asks a running notifier for its state; nil when none answers.
func Ask(ctx context.Context, nc *nats.Conn) *ops.NotifierStatus {
	ctx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer cancel()
	m, err := nc.RequestWithContext(ctx, SubjectStatus, nil)
	if err != nil {
		return nil
	}
	var s ops.NotifierStatus
	if json.Unmarshal(m.Data, &s) != nil {
		return nil
	}
	return &s
}

func (n *Notifier) loadState() *State {
	s := newState(time.Now().UTC())
	if n.a.StateFile == "" {
		return s
	}
	b, err := os.ReadFile(n.a.StateFile)
	if errors.Is(err, os.ErrNotExist) {
		return s
	}
	if err == nil {
		err = json.Unmarshal(b, s)
	}
	if err != nil {
		n.log.Warn("notifier state unreadable; starting afresh (problems still there are reported once more)", "file", n.a.StateFile, "err", err)
		return newState(time.Now().UTC())
	}
	for _, m := range []*map[string]time.Time{&s.Sent, &s.Checked, &s.Verified} {
		if *m == nil {
			*m = map[string]time.Time{}
		}
	}
	if s.DLQ == nil {
		s.DLQ = map[string]uint64{}
	}
	if s.Scores == nil {
		s.Scores = map[string]float64{}
	}
	return s
}

func (n *Notifier) saveState() {
	if n.a.StateFile == "" {
		return
	}
	n.mu.Lock()
	b, err := json.Marshal(n.state)
	n.mu.Unlock()
	if err == nil {
		tmp := n.a.StateFile + ".tmp"
		if err = os.MkdirAll(filepath.Dir(tmp), 0o700); err == nil {
			if err = os.WriteFile(tmp, b, 0o600); err == nil {
				err = os.Rename(tmp, n.a.StateFile)
			}
		}
	}
	if err != nil {
		n.log.Warn("notifier state not saved", "file", n.a.StateFile, "err", err)
	}
}
