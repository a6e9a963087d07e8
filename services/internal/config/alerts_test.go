package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestAlertsSectionLoads(t *testing.T) {
	p := writeNet(t, good+`alerts:
  email:
    smtp: smtp.center.example.org:587
    from: relay@center.example.org
    to: [dm@center.example.org]
    summary_to: [pi@center.example.org]
    username: relay
    password: {file: site.token}
  webhooks:
    - url: {env: RELAY_TEST_HOOK}
      format: slack
  daily_summary: "07:30"
  time_zone: America/Chicago
`)
	t.Setenv("RELAY_TEST_HOOK", "http://127.0.0.1:9/hook")
	n, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	a := n.Alerts
	if !a.Enabled() || !a.Email.UsesStartTLS() || a.MaxPerHour != 12 || a.CheckEvery.D() != 30*time.Second || a.Webhooks[0].Name != "webhook 1" {
		t.Fatalf("defaults: %+v", a)
	}
	if h, m, ok := a.SummaryAt(); !ok || h != 7 || m != 30 || a.Location().String() != "America/Chicago" {
		t.Fatalf("summary at %d:%d %v in %s", h, m, ok, a.Location())
	}
	if !filepath.IsAbs(a.Email.Password.File) || !a.Wants(AlertRunFailed) {
		t.Fatalf("password file %q not resolved, or run_failed not wanted", a.Email.Password.File)
	}
	if ps := n.CheckSecrets(); len(ps) != 0 {
		t.Fatalf("secrets: %v", ps)
	}
	os.Remove(a.Email.Password.File)
	t.Setenv("RELAY_TEST_HOOK", "")
	ps := n.CheckSecrets()
	var got []string
	for _, p := range ps {
		got = append(got, p.Setting)
	}
	if strings.Join(got, " ") != "sites[site-a].token alerts.email.password alerts.webhooks[0].url" {
		t.Fatalf("unreadable secrets reported: %v", ps)
	}
}

// Every mistake of the alerts section is reported at once, each with its
// setting and line.
func TestAlertsSectionMistakes(t *testing.T) {
	p := writeNet(t, good+`alerts:
  email:
    smtp: smtp.center.example.org
    to: [not-an-address]
    username: relay
    starttls: false
  webhooks:
    - format: discord
  events: [run_failed, pager]
  daily_summary: "7 o'clock"
  time_zone: Mars/Olympus
  max_per_hour: -1
`)
	_, err := Load(p)
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("want a config error, got %v", err)
	}
	want := map[string]string{
		"alerts.email.smtp":         "is not host:port",
		"alerts.email.from":         "missing: the sender's address",
		"alerts.email.to[0]":        `"not-an-address" is not an e-mail address`,
		"alerts.email.password":     "missing: give the SMTP password",
		"alerts.email.starttls":     "credentials in clear",
		"alerts.webhooks[0].url":    "never in this file",
		"alerts.webhooks[0].format": `"discord" is not a webhook format`,
		"alerts.events[1]":          `"pager" is not an alert`,
		"alerts.daily_summary":      "is not a time of day",
		"alerts.time_zone":          `"Mars/Olympus" is not a known time zone`,
		"alerts.max_per_hour":       "out of range",
	}
	got := map[string]Problem{}
	for _, p := range ce.Problems {
		got[p.Setting] = p
	}
	for setting, msg := range want {
		p, ok := got[setting]
		if !ok || !strings.Contains(p.Message, msg) || p.Line == 0 {
			t.Errorf("%s: got %+v, want a message with %q and a line", setting, p, msg)
		}
	}
	if len(ce.Problems) != len(want) {
		t.Errorf("%d problems, want %d:\n%v", len(ce.Problems), len(want), err)
	}
}
