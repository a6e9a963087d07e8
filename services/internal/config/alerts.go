package config

import (
	"fmt"
	"net"
	"net/mail"
	"sort"
	"strings"
	"time"
)

// Alerts is the network file's alerts: section, read by the notifier
// (`relay notifier`, and inside `relay all`). Without email and webhooks
// nothing is sent.
type Alerts struct {
	Email    *Email    `yaml:"email"`
	Webhooks []Webhook `yaml:"webhooks"`
	// CheckEvery is how often the pipeline's state is read (default 30s).
	CheckEvery Duration `yaml:"check_every"`
	// UnreachableAfter is how long a site's run retries before the site is
	// reported unreachable (default 30m).
	UnreachableAfter Duration `yaml:"unreachable_after"`
	// MaxPerHour caps the messages per channel and hour (default 12);
	// alerts over the cap wait and go out together in the next message.
	MaxPerHour int `yaml:"max_per_hour"`
	// RetryFor is how long an alert that cannot be delivered is retried
	// (with backoff) before the notifier gives up on it, loudly (default 24h).
	RetryFor Duration `yaml:"retry_for"`
	// DailySummary is the time of day ("07:00", in TimeZone) of the summary
	// e-mail to email.summary_to; empty: none.
	DailySummary string `yaml:"daily_summary"`
	TimeZone     string `yaml:"time_zone"` // default UTC
	// Events are the alerts to send (default: all of AlertEvents).
	Events []string `yaml:"events"`
	// StateFile keeps what was sent across restarts (dedupe); default none:
	// a restarted notifier reports a problem that is still there once more.
	StateFile string `yaml:"state_file"`
}

// Email is how alerts are mailed: SMTP with STARTTLS, the password from a
// file or environment variable.
type Email struct {
	SMTP      string   `yaml:"smtp"` // host:port, e.g. smtp.center.example.org:587
	From      string   `yaml:"from"`
	To        []string `yaml:"to"`         // error mail
	SummaryTo []string `yaml:"summary_to"` // the daily summary (kept apart from error mail)
	Username  string   `yaml:"username"`
	Password  Secret   `yaml:"password"`
	// StartTLS (default true) upgrades the connection before anything is
	// sent; it may be false only without credentials (a local relay).
	StartTLS *bool    `yaml:"starttls"`
	CAFile   string   `yaml:"ca_file"` // a private CA for the SMTP server
	Timeout  Duration `yaml:"timeout"` // per attempt (default 30s)
}

// UsesStartTLS reports whether the connection is upgraded with STARTTLS.
func (e *Email) UsesStartTLS() bool { return e.StartTLS == nil || *e.StartTLS }

// Webhook is one webhook receiver. Its URL usually holds a secret (Slack's
// and Teams' incoming webhooks do), so it comes from a file or env var.
type Webhook struct {
	Name   string `yaml:"name"` // in status lines and logs; default "webhook N"
	URL    Secret `yaml:"url"`
	Format string `yaml:"format"` // slack, teams or json (default json: a body Slack and Teams both accept)
	CAFile string `yaml:"ca_file"`
}

// Alert events.
const (
	AlertRunFailed          = "run_failed"
	AlertSiteUnreachable    = "site_unreachable"
	AlertDeadLetters        = "dead_letters"
	AlertDeletionsHeld      = "deletions_held"
	AlertProtocolDeviations = "protocol_deviations"
	AlertVerification       = "verification"
	AlertStageStuck         = "stage_stuck"
)

// AlertEvents lists every alert the notifier sends.
var AlertEvents = []string{AlertRunFailed, AlertSiteUnreachable, AlertDeadLetters, AlertDeletionsHeld, AlertProtocolDeviations, AlertVerification, AlertStageStuck}

// Webhook formats.
const (
	FormatJSON  = "json"
	FormatSlack = "slack"
	FormatTeams = "teams"
)

// Enabled reports whether alerts are configured at all.
func (a *Alerts) Enabled() bool { return a.Email != nil || len(a.Webhooks) > 0 }

// Wants reports whether the event is among those to send.
func (a *Alerts) Wants(event string) bool {
	return len(a.Events) == 0 || contains(a.Events, event)
}

// Location is the time zone of the daily summary.
func (a *Alerts) Location() *time.Location {
	if loc, err := time.LoadLocation(a.TimeZone); err == nil {
		return loc
	}
	return time.UTC
}

// SummaryAt parses DailySummary into hour and minute (ok false when none).
func (a *Alerts) SummaryAt() (hour, minute int, ok bool) {
	if a.DailySummary == "" {
		return 0, 0, false
	}
	t, err := time.Parse("15:04", a.DailySummary)
	if err != nil {
		return 0, 0, false
	}
	return t.Hour(), t.Minute(), true
}

func (a *Alerts) applyDefaults() {
	if a.CheckEvery == 0 {
		a.CheckEvery = Duration(30 * time.Second)
	}
	if a.UnreachableAfter == 0 {
		a.UnreachableAfter = Duration(30 * time.Minute)
	}
	if a.MaxPerHour == 0 {
		a.MaxPerHour = 12
	}
	if a.RetryFor == 0 {
		a.RetryFor = Duration(24 * time.Hour)
	}
	if a.TimeZone == "" {
		a.TimeZone = "UTC"
	}
	if a.Email != nil && a.Email.Timeout == 0 {
		a.Email.Timeout = Duration(30 * time.Second)
	}
	for i := range a.Webhooks {
		w := &a.Webhooks[i]
		if w.Format == "" {
			w.Format = FormatJSON
		}
		if w.Name == "" {
			w.Name = fmt.Sprintf("webhook %d", i+1)
		}
	}
}

func (a *Alerts) resolvePaths(abs func(*string)) {
	abs(&a.StateFile)
	if a.Email != nil {
		abs(&a.Email.Password.File)
		abs(&a.Email.CAFile)
	}
	for i := range a.Webhooks {
		abs(&a.Webhooks[i].URL.File)
		abs(&a.Webhooks[i].CAFile)
	}
}

// problems lists every mistake in the alerts section.
func (a *Alerts) problems(checkFile func(setting, path string)) []Problem {
	var ps []Problem
	add := func(setting, format string, args ...any) {
		ps = append(ps, Problem{Setting: "alerts." + setting, Message: fmt.Sprintf(format, args...)})
	}
	if e := a.Email; e != nil {
		e.problems(add, checkFile)
	}
	for i, w := range a.Webhooks {
		p := fmt.Sprintf("webhooks[%d]", i)
		if !w.URL.IsSet() {
			add(p+".url", "missing: give the webhook's URL as file: <path> or env: <VAR> (it holds a secret: never in this file)")
		} else if w.URL.File != "" && w.URL.Env != "" {
			add(p+".url", "give either file or env, not both")
		}
		if w.Format != FormatJSON && w.Format != FormatSlack && w.Format != FormatTeams {
			add(p+".format", "%q is not a webhook format: use slack, teams or json", w.Format)
		}
		checkFile("alerts."+p+".ca_file", w.CAFile)
	}
	for i, ev := range a.Events {
		if !contains(AlertEvents, ev) {
			add(fmt.Sprintf("events[%d]", i), "%q is not an alert: use %s", ev, strings.Join(AlertEvents, ", "))
		}
	}
	if _, err := time.LoadLocation(a.TimeZone); err != nil {
		add("time_zone", "%q is not a known time zone (use e.g. America/New_York)", a.TimeZone)
	}
	if a.DailySummary != "" {
		if _, _, ok := a.SummaryAt(); !ok {
			add("daily_summary", "%q is not a time of day: use HH:MM, e.g. \"07:00\"", a.DailySummary)
		} else if a.Email == nil || len(a.Email.SummaryTo) == 0 {
			add("daily_summary", "the daily summary is an e-mail: set alerts.email with summary_to")
		}
	}
	if a.MaxPerHour < 1 || a.MaxPerHour > 3600 {
		add("max_per_hour", "%d is out of range 1..3600", a.MaxPerHour)
	}
	if a.CheckEvery.D() < time.Second {
		add("check_every", "%s is too short: at least 1s", a.CheckEvery.D())
	}
	return ps
}

func (e *Email) problems(add func(setting, format string, args ...any), checkFile func(setting, path string)) {
	if e.SMTP == "" {
		add("email.smtp", "missing: the SMTP server as host:port, e.g. smtp.center.example.org:587")
	} else if host, port, err := net.SplitHostPort(e.SMTP); err != nil || host == "" || port == "" {
		add("email.smtp", "%q is not host:port (e.g. smtp.center.example.org:587)", e.SMTP)
	}
	checkAddress := func(setting, addr string) {
		if _, err := mail.ParseAddress(addr); err != nil {
			add(setting, "%q is not an e-mail address", addr)
		}
	}
	if e.From == "" {
		add("email.from", "missing: the sender's address, e.g. relay@center.example.org")
	} else {
		checkAddress("email.from", e.From)
	}
	if len(e.To) == 0 {
		add("email.to", "missing: at least one address for error mail")
	}
	for i, to := range e.To {
		checkAddress(fmt.Sprintf("email.to[%d]", i), to)
	}
	for i, to := range e.SummaryTo {
		checkAddress(fmt.Sprintf("email.summary_to[%d]", i), to)
	}
	switch {
	case e.Username != "" && !e.Password.IsSet():
		add("email.password", "missing: give the SMTP password as file: <path> or env: <VAR>")
	case e.Username == "" && e.Password.IsSet():
		add("email.username", "missing: a password is given without the user it belongs to")
	case e.Password.File != "" && e.Password.Env != "":
		add("email.password", "give either file or env, not both")
	}
	if !e.UsesStartTLS() && (e.Username != "" || e.Password.IsSet()) {
		add("email.starttls", "false would send the SMTP credentials in clear: keep STARTTLS on (the default)")
	}
	checkFile("alerts.email.ca_file", e.CAFile)
}

// Secrets are the alerts' secrets with their settings (the notifier reads
// them at start-up, `relay config validate` checks them).
func (a *Alerts) Secrets() map[string]Secret {
	out := map[string]Secret{}
	if a.Email != nil && a.Email.Password.IsSet() {
		out["alerts.email.password"] = a.Email.Password
	}
	for i, w := range a.Webhooks {
		out[fmt.Sprintf("alerts.webhooks[%d].url", i)] = w.URL
	}
	return out
}

func sortedKeys(m map[string]Secret) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}
