package notify

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/ops"
)

// mailServer is an SMTP server on loopback (emersion/go-smtp) that offers
// STARTTLS with a certificate of the test's own CA, takes AUTH PLAIN only
// after it, and refuses the first `refuse` messages with a 451.
type mailServer struct {
	addr, caFile string
	refuse       atomic.Int32
	mu           sync.Mutex
	msgs         []mail
}

type mail struct {
	from   string
	to     []string
	body   string
	user   string
	secure bool
}

func startMailServer(t *testing.T) *mailServer {
	t.Helper()
	ms := &mailServer{}
	cert, caPEM := testCert(t)
	ms.caFile = filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(ms.caFile, caPEM, 0o600)
	s := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) { return &session{ms: ms, c: c}, nil }))
	s.Domain, s.TLSConfig = "localhost", &tls.Config{Certificates: []tls.Certificate{cert}}
	s.ReadTimeout, s.WriteTimeout = 10*time.Second, 10*time.Second
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(ln)
	t.Cleanup(func() { s.Close() })
	ms.addr = ln.Addr().String()
	return ms
}

func (ms *mailServer) messages() []mail {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	return append([]mail(nil), ms.msgs...)
}

type session struct {
	ms   *mailServer
	c    *smtp.Conn
	cur  mail
	user string
}

func (s *session) AuthMechanisms() []string { return []string{sasl.Plain} }
func (s *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != "relay" || pass != "s3cret-pw" {
			return errors.New("bad credentials")
		}
		s.user = user
		return nil
	}), nil
}
func (s *session) Mail(from string, _ *smtp.MailOptions) error { s.cur.from = from; return nil }
func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.cur.to = append(s.cur.to, to)
	return nil
}
func (s *session) Data(r io.Reader) error {
	b, _ := io.ReadAll(r)
	if s.ms.refuse.Add(-1) >= 0 {
		return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try again later"}
	}
	_, secure := s.c.TLSConnectionState()
	s.cur.body, s.cur.user, s.cur.secure = string(b), s.user, secure
	s.ms.mu.Lock()
	s.ms.msgs = append(s.ms.msgs, s.cur)
	s.ms.mu.Unlock()
	return nil
}
func (s *session) Reset()        { s.cur = mail{} }
func (s *session) Logout() error { return nil }

// testCert makes a CA and a certificate for 127.0.0.1 signed by it.
func testCert(t *testing.T) (tls.Certificate, []byte) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "relay test CA"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	caCert, _ := x509.ParseCertificate(caDER)
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	cert, err := tls.X509KeyPair(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	if err != nil {
		t.Fatal(err)
	}
	return cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
}

// hookServer is a webhook receiver on loopback that answers 500 to the
// first `fail` posts.
type hookServer struct {
	url    string
	fail   atomic.Int32
	mu     sync.Mutex
	bodies []map[string]any
	posts  atomic.Int32
}

func startHook(t *testing.T) *hookServer {
	h := &hookServer{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.posts.Add(1)
		if h.fail.Add(-1) >= 0 {
			http.Error(w, "boom", http.StatusInternalServerError)
			return
		}
		var m map[string]any
		json.NewDecoder(r.Body).Decode(&m)
		h.mu.Lock()
		h.bodies = append(h.bodies, m)
		h.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	h.url = srv.URL + "/hooks/T000/B000/secretpart"
	return h
}

func (h *hookServer) got() []map[string]any {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]map[string]any(nil), h.bodies...)
}

func alertsConfig(t *testing.T, ms *mailServer, hook *hookServer) *config.Alerts {
	dir := t.TempDir()
	pw := filepath.Join(dir, "smtp.pw")
	os.WriteFile(pw, []byte("s3cret-pw\n"), 0o600)
	url := filepath.Join(dir, "hook.url")
	os.WriteFile(url, []byte(hook.url+"\n"), 0o600)
	return &config.Alerts{
		Email: &config.Email{SMTP: ms.addr, From: "relay@center.test", To: []string{"dm@center.test"}, SummaryTo: []string{"pi@center.test"},
			Username: "relay", Password: config.Secret{File: pw}, CAFile: ms.caFile, Timeout: config.Duration(5 * time.Second)},
		Webhooks:   []config.Webhook{{Name: "slack", URL: config.Secret{File: url}, Format: config.FormatJSON}},
		CheckEvery: config.Duration(time.Second), UnreachableAfter: config.Duration(time.Minute), MaxPerHour: 3600,
		RetryFor: config.Duration(time.Hour), TimeZone: "UTC",
	}
}

// story is a network with a failed site, a site with dead letters, a
// healthy one, a stuck importer and new protocol findings.
func story(now time.Time) *ops.Status {
	score := 92.5
	return &ops.Status{At: now, DLQ: map[string]map[string]uint64{"import": {"lakeshore": 3}, "export": {"hillcrest": 1}},
		Sites: []ops.SiteStatus{
			{Site: "hillcrest", Outcome: ops.ResultFailed, Reason: "hillcrest: export metadata: HTTP 403: You do not have permissions to use the API",
				Run: &ops.RunSummary{ID: "hillcrest-20261202T020000Z"}, DLQ: map[string]uint64{"export": 1}},
			{Site: "lakeshore", Outcome: ops.ResultPartial, Reason: "3 record(s) dead-lettered: destination rejected record lakeshore-7: not a valid category (score)",
				Run: &ops.RunSummary{ID: "lakeshore-20261202T020000Z"}, DLQ: map[string]uint64{"import": 3},
				Protocol: &ops.ProtocolSummary{Score: &score, Status: messages.ProtocolDeviations, New: 2, CheckedAt: now}},
			{Site: "riverside", Outcome: ops.ResultSynced, Run: &ops.RunSummary{ID: "riverside-20261202T020000Z"}, DLQ: map[string]uint64{}},
		},
		Lag: []ops.StageLag{{Stage: "import", Stream: "RECORDS_CLEAN", Consumer: "importer", Lag: 40, Stuck: "destination unreachable: the importer holds 40 record(s)"}},
	}
}

func testNotifier(t *testing.T, a *config.Alerts) *Notifier {
	t.Helper()
	n, err := New(Options{Network: &config.Network{Alerts: *a}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range n.all() {
		d.firstTry = 100 * time.Millisecond
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, d := range n.all() {
		wg.Add(1)
		go func() { defer wg.Done(); d.run(ctx) }()
	}
	t.Cleanup(func() { cancel(); wg.Wait() })
	return n
}

// feed runs one detection on a status, as Check does after reading NATS.
func (n *Notifier) feed(st *ops.Status) []Alert {
	n.mu.Lock()
	as := Detect(st, n.state, n.a)
	n.last = st
	n.mu.Unlock()
	for _, d := range n.channels {
		d.enqueue(as...)
	}
	return as
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestAlertsByMailAndWebhookOnceEach(t *testing.T) {
	ms, hook := startMailServer(t), startHook(t)
	n := testNotifier(t, alertsConfig(t, ms, hook))
	now := time.Now().UTC()
	as := n.feed(story(now))
	events := map[string]int{}
	for _, a := range as {
		events[a.Event]++
	}
	want := map[string]int{config.AlertRunFailed: 1, config.AlertDeadLetters: 2, config.AlertProtocolDeviations: 1, config.AlertStageStuck: 1}
	for e, c := range want {
		if events[e] != c {
			t.Errorf("%s: %d alerts, want %d (all: %v)", e, events[e], c, events)
		}
	}
	waitFor(t, "the mail and the webhook", func() bool { return len(ms.messages()) == 1 && len(hook.got()) == 1 })
	m := ms.messages()[0]
	if !m.secure || m.user != "relay" || m.from != "relay@center.test" || strings.Join(m.to, ",") != "dm@center.test" {
		t.Fatalf("mail: secure %v, user %q, from %q, to %v", m.secure, m.user, m.from, m.to)
	}
	for _, s := range []string{"Subject: [REDCap Relay] 5 alerts: site hillcrest: run failed", "HTTP 403", "site lakeshore: 3 new dead letter(s) at stage import",
		"relay dlq list --stage import --site lakeshore", "2 new protocol finding(s)", "destination unreachable"} {
		if !strings.Contains(m.body, s) {
			t.Errorf("mail lacks %q:\n%s", s, m.body)
		}
	}
	b := hook.got()[0]
	if b["@type"] != "MessageCard" || !strings.Contains(b["text"].(string), "run failed") || len(b["alerts"].([]any)) != 5 {
		t.Fatalf("webhook body is not Slack- and Teams-compatible: %v", b)
	}
	// The same state again: nothing new. Two more dead letters: one alert.
	if again := n.feed(story(now)); len(again) != 0 {
		t.Fatalf("the same state alerted again: %+v", again)
	}
	st := story(now)
	st.Sites[1].DLQ["import"] = 5
	if more := n.feed(st); len(more) != 1 || !strings.Contains(more[0].Title, "2 new dead letter(s)") {
		t.Fatalf("two more dead letters: %+v", more)
	}
	waitFor(t, "the second mail", func() bool { return len(ms.messages()) == 2 })
}

// A refusing SMTP server and a webhook answering 500: both are retried with
// backoff until they take the alert; the failures are counted and shown.
func TestRefusedDeliveriesAreRetried(t *testing.T) {
	ms, hook := startMailServer(t), startHook(t)
	ms.refuse.Store(2)
	hook.fail.Store(3)
	n := testNotifier(t, alertsConfig(t, ms, hook))
	n.feed(story(time.Now().UTC()))
	waitFor(t, "delivery after the refusals", func() bool { return len(ms.messages()) == 1 && len(hook.got()) == 1 })
	st := n.Status()
	by := map[string]ops.ChannelStatus{}
	for _, c := range st.Channels {
		by[c.Channel] = c
	}
	if e := by["email"]; e.Failures != 2 || e.Sent != 1 || e.Waiting != 0 || !strings.Contains(e.LastError, "451") {
		t.Fatalf("email status %+v", e)
	}
	if w := by["slack"]; w.Failures != 3 || w.Sent != 1 || w.LastError != "slack: HTTP 500" || strings.Contains(w.LastError, "secretpart") {
		t.Fatalf("webhook status %+v", w)
	}
	var b bytes.Buffer
	(&ops.Status{Notifier: st}).WriteTable(&b)
	if !strings.Contains(b.String(), "notifier slack: 1 sent, 0 waiting, 3 failed attempt(s); last error") {
		t.Fatalf("status line:\n%s", b.String())
	}
}

// An SMTP server that accepts the connection and never answers: each
// attempt times out; past retry_for the alert is given up on, loudly.
func TestSilentSMTPServerTimesOutAndIsGivenUp(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // says nothing, ever
		}
	}()
	hook := startHook(t)
	a := alertsConfig(t, &mailServer{addr: ln.Addr().String()}, hook)
	a.Email.CAFile, a.Email.Timeout, a.RetryFor = "", config.Duration(300*time.Millisecond), config.Duration(time.Second)
	n := testNotifier(t, a)
	start := time.Now()
	n.feed(story(time.Now().UTC()))
	waitFor(t, "the webhook, undelayed by the silent mail server", func() bool { return len(hook.got()) == 1 })
	if time.Since(start) > 5*time.Second {
		t.Errorf("the webhook waited %s for the mail server", time.Since(start))
	}
	waitFor(t, "the mail alert to be given up", func() bool { return n.Status().Channels[0].GaveUp == 5 })
	e := n.Status().Channels[0]
	if e.Waiting != 0 || e.Sent != 0 || !strings.Contains(e.LastError, "timeout") {
		t.Fatalf("email status %+v", e)
	}
}

// The daily summary goes to its own recipients, apart from error mail.
func TestDailySummaryGoesToItsOwnRecipients(t *testing.T) {
	ms, hook := startMailServer(t), startHook(t)
	n := testNotifier(t, alertsConfig(t, ms, hook))
	n.mu.Lock()
	n.last = story(time.Now().UTC())
	n.mu.Unlock()
	n.SendSummary()
	waitFor(t, "the summary", func() bool { return len(ms.messages()) == 1 })
	m := ms.messages()[0]
	if strings.Join(m.to, ",") != "pi@center.test" || !strings.Contains(m.body, "daily summary") || !strings.Contains(m.body, "lakeshore  partial") {
		t.Fatalf("summary to %v:\n%s", m.to, m.body)
	}
	if len(hook.got()) != 0 {
		t.Fatal("the summary went to the webhook too")
	}
}
