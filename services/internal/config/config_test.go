package config

import (
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// writeNet writes a network file and the files it points to.
func writeNet(t *testing.T, body string) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"site.token", "dest.token", "policy.yaml"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("ABCDEF0123456789ABCDEF0123456789\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	p := filepath.Join(dir, "network.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const good = `destination:
  url: https://center.example.org/api/
  token: {file: dest.token}
sites:
  - id: site-a
    url: https://a.example.org/redcap/api/
    token: {file: site.token}
    schedule: "0 2 * * *"
    time_zone: America/Chicago
    policy: policy.yaml
`

func TestLoadAppliesDefaultsAndResolvesPaths(t *testing.T) {
	p := writeNet(t, good)
	n, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	s, ok := n.Site("site-a")
	if !ok {
		t.Fatal("site-a not found")
	}
	if s.Namespace != "site-a" {
		t.Errorf("namespace defaults to the site ID, got %q", s.Namespace)
	}
	if s.BatchSize != DefaultSiteBatchSize || s.CallsPerMinute != DefaultCallsPerMinute || s.ServerTimeZone != "America/Chicago" {
		t.Errorf("defaults not applied: %+v", s)
	}
	if !filepath.IsAbs(s.Policy) || filepath.Dir(s.Policy) != filepath.Dir(p) {
		t.Errorf("policy path %q not resolved against the file's folder", s.Policy)
	}
	tok, err := s.Token.Read()
	if err != nil || tok != "ABCDEF0123456789ABCDEF0123456789" {
		t.Errorf("token: %q %v", tok, err)
	}
	sched, err := s.ParseSchedule()
	if err != nil {
		t.Fatal(err)
	}
	// 02:00 in Chicago is 08:00 UTC in winter.
	next := sched.Next(time.Date(2026, 1, 10, 0, 0, 0, 0, time.UTC))
	if next.UTC().Hour() != 8 {
		t.Errorf("schedule ignores the time zone: next run %s", next.UTC())
	}
	if n.Streams.RawMaxAge.D() != 72*time.Hour || n.Streams.ImportAckWait.D() != time.Minute ||
		n.Streams.ExportAckWait.D() != 2*time.Minute || n.Streams.ExportRunTimeout.D() != 6*time.Hour {
		t.Errorf("stream defaults: %+v", n.Streams)
	}
}

// Every mistake is listed at once, each with its line and setting, and no
// secret value appears in the message.
func TestValidateListsEveryMistakeWithLines(t *testing.T) {
	bad := `destination:
  url: ftp://center.example.org/
  token: {file: missing.token}
  concurrency: 99
sites:
  - id: Site A
    url: https://a.example.org/api/
    token: {file: site.token}
    schedule: "every day at two"
    policy: policy.yaml
    calls_per_minute: 900
  - id: b
    url: https://b.example.org/api/
    token: {env: RELAY_TEST_UNSET_VAR}
    time_zone: Mars/Olympus
    namespace: x
  - id: c
    url: https://c.example.org/api/
    token: {file: site.token}
    policy: policy.yaml
    namespace: x
streams:
  export_ack_wait: 10m
  export_run_timeout: 5m
`
	_, err := Load(writeNet(t, bad))
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("want a config.Error, got %v", err)
	}
	want := map[string]int{ // setting -> line
		"destination.url":                2,
		"destination.concurrency":        4,
		"sites[Site A].id":               6,
		"sites[Site A].schedule":         9,
		"sites[Site A].calls_per_minute": 11,
		"sites[b].time_zone":             15,
		"sites[b].policy":                12,
		"sites[c].namespace":             21,
		"streams.export_run_timeout":     24,
	}
	got := map[string]int{}
	for _, p := range ce.Problems {
		got[p.Setting] = p.Line
	}
	for s, line := range want {
		l, ok := got[s]
		if !ok {
			t.Errorf("no problem reported for %s; got %v", s, ce.Problems)
			continue
		}
		if l != line {
			t.Errorf("%s reported at line %d, want %d", s, l, line)
		}
	}
	msg := err.Error()
	// Unreadable secrets are reported by CheckSecrets (relay config validate).
	var secrets []string
	n, _ := Parse("x", []byte(bad))
	for _, p := range n.CheckSecrets() {
		secrets = append(secrets, p.String())
	}
	msg += "\n" + strings.Join(secrets, "\n")
	for _, frag := range []string{"missing.token", "RELAY_TEST_UNSET_VAR", "already used by site b", "600 calls/minute"} {
		if !strings.Contains(msg, frag) {
			t.Errorf("message lacks %q:\n%s", frag, msg)
		}
	}
	if strings.Contains(msg, "ABCDEF0123456789") {
		t.Error("the message contains a token")
	}
}

func TestUnknownKeysAreRefused(t *testing.T) {
	_, err := Load(writeNet(t, good+"    schedual: \"@daily\"\n"))
	if err == nil || !strings.Contains(err.Error(), "schedual") {
		t.Fatalf("a misspelt key must be refused by name, got %v", err)
	}
}

// Every mistake at once, in the user's terms: misspelt keys (each with the
// key it probably meant) do not hide each other or the other mistakes,
// values of the wrong kind are named in words, sites by their ID, each with
// the line of its key; a bad time zone does not hide a bad schedule.
func TestEveryMistakeAtOnceInTheUsersTerms(t *testing.T) {
	bad := `destination:
  url: https://center.example.org/api/
  token: {file: dest.token}
  batch_size: lots
streams:
  raw_max_age: three days
sites:
  - id: lakeshore
    url: https://a.example.org/api/
    token: {file: site.token}
    schedul: "@daily"
    policy: policy.yaml
  - id: hillcrest
    url: https://b.example.org/api/
    token: ABCDEF0123456789ABCDEF0123456789
    time_zone: Mars/Olympus
    schedule: "every day"
    policy: policy.yaml
    propagate_deletions: maybe
desination:
  url: x
`
	_, err := Load(writeNet(t, bad))
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("want a config.Error, got %v", err)
	}
	type want struct {
		line int
		msg  string
	}
	wants := map[string]want{
		"destination.batch_size":               {4, `"lots" is not a whole number`},
		"streams.raw_max_age":                  {6, `"three days" is not a duration`},
		"sites[lakeshore].schedul":             {11, `unknown key, did you mean "schedule"?`},
		"sites[hillcrest].token":               {15, "{file: PATH} or {env: VARIABLE}"},
		"sites[hillcrest].time_zone":           {16, "not a known time zone"},
		"sites[hillcrest].schedule":            {17, "not a cron schedule"},
		"sites[hillcrest].propagate_deletions": {19, `"maybe" is not true or false`},
		"desination":                           {20, `did you mean "destination"?`},
	}
	got := map[string]Problem{}
	for _, p := range ce.Problems {
		got[p.Setting] = p
	}
	for setting, w := range wants {
		p, ok := got[setting]
		switch {
		case !ok:
			t.Errorf("no problem for %s; got:\n%s", setting, ce.Error())
		case p.Line != w.line || !strings.Contains(p.Message, w.msg):
			t.Errorf("%s: line %d %q; want line %d and %q", setting, p.Line, p.Message, w.line, w.msg)
		}
	}
	msg := ce.Error()
	if m := regexp.MustCompile(`\b(int|int64|bool|float64|string|config\.\w+|time\.Duration|unmarshal)\b|!!`).FindString(msg); m != "" {
		t.Errorf("the message uses a Go or YAML type name %q:\n%s", m, msg)
	}
	if strings.Contains(msg, "ABCDEF0123456789") {
		t.Error("the message quotes the token written into the file")
	}
}

func TestSecretFromEnv(t *testing.T) {
	t.Setenv("RELAY_TEST_TOKEN", "  ABC123  ")
	v, err := Secret{Env: "RELAY_TEST_TOKEN"}.Read()
	if err != nil || v != "ABC123" {
		t.Fatalf("got %q %v", v, err)
	}
}

// verify_every: weekly when silent, 0 turns it off, and a verification
// more often than hourly (or a repair without verification) is refused.
func TestVerifyEvery(t *testing.T) {
	n, err := Load(writeNet(t, good))
	if err != nil {
		t.Fatal(err)
	}
	if got := n.Sites[0].VerifyInterval(); got != 7*24*time.Hour || n.Sites[0].VerifyRepair {
		t.Fatalf("default verify_every %s repair %v, want 168h without repair", got, n.Sites[0].VerifyRepair)
	}
	n, err = Load(writeNet(t, good+"    verify_every: 0s\n"))
	if err != nil || n.Sites[0].VerifyInterval() != 0 {
		t.Fatalf("verify_every 0s: %v %v", err, n)
	}
	_, err = Load(writeNet(t, good+"    verify_every: 10m\n    verify_repair: true\n"))
	if err == nil || !strings.Contains(err.Error(), "sites[site-a].verify_every") || !strings.Contains(err.Error(), "at least 1h") {
		t.Fatalf("verify_every 10m: %v", err)
	}
	_, err = Load(writeNet(t, good+"    verify_every: 0s\n    verify_repair: true\n"))
	if err == nil || !strings.Contains(err.Error(), "sites[site-a].verify_repair") {
		t.Fatalf("verify_repair without verify_every: %v", err)
	}
}

// nats.sync_interval: a duration, "always", or unset (the server's 2m).
func TestNATSSyncInterval(t *testing.T) {
	for v, want := range map[string]struct {
		always bool
		every  time.Duration
		bad    bool
	}{"": {}, "always": {always: true}, "Always": {always: true}, "10s": {every: 10 * time.Second}, "2m": {every: 2 * time.Minute},
		"-1s": {bad: true}, "0s": {bad: true}, "sometimes": {bad: true}} {
		always, every, err := NATS{SyncInterval: v}.Sync()
		if (err != nil) != want.bad || always != want.always || every != want.every {
			t.Errorf("sync_interval %q: %v %v %v, want %+v", v, always, every, err, want)
		}
	}
}
