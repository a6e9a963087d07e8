package notify

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/smtp"
	"os"
	"strings"
	"time"

	"github.com/redcap-relay/relay/services/internal/config"
)

// Channel delivers one message holding one or more alerts.
type Channel interface {
	Name() string
	Send(ctx context.Context, alerts []Alert) error
}

// Mailer sends e-mail over SMTP: STARTTLS before anything else (the
// server's certificate verified), then AUTH PLAIN with the password read
// from its secret at each send (a rotated file takes effect at once).
type Mailer struct {
	cfg  *config.Email
	to   []string
	name string
	pool *x509.CertPool
}

// NewMailer builds the error-mail channel (to) or the summary channel
// (summary_to).
func NewMailer(cfg *config.Email, summary bool) (*Mailer, error) {
	m := &Mailer{cfg: cfg, to: cfg.To, name: "email"}
	if summary {
		m.to, m.name = cfg.SummaryTo, "summary"
	}
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("alerts.email.ca_file: %w", err)
		}
		m.pool = x509.NewCertPool()
		if !m.pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("alerts.email.ca_file %s holds no PEM certificate", cfg.CAFile)
		}
	}
	return m, nil
}

func (m *Mailer) Name() string { return m.name }

func (m *Mailer) Send(ctx context.Context, alerts []Alert) error {
	return m.SendText(ctx, subject(alerts), plain(alerts))
}

// SendText sends one plain-text message to the channel's recipients.
func (m *Mailer) SendText(ctx context.Context, subj, body string) error {
	if len(m.to) == 0 {
		return fmt.Errorf("%s: no recipients", m.name)
	}
	host, _, _ := net.SplitHostPort(m.cfg.SMTP)
	timeout := m.cfg.Timeout.D()
	dctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	conn, err := (&net.Dialer{}).DialContext(dctx, "tcp", m.cfg.SMTP)
	if err != nil {
		return fmt.Errorf("SMTP %s: %w", m.cfg.SMTP, err)
	}
	defer conn.Close()
	// One deadline for the whole conversation: a server that stops
	// answering fails the attempt instead of hanging it.
	conn.SetDeadline(time.Now().Add(timeout))
	c, err := smtp.NewClient(conn, host)
	if err != nil {
		return fmt.Errorf("SMTP %s: greeting: %w", m.cfg.SMTP, err)
	}
	defer c.Close()
	if err := c.Hello("redcap-relay"); err != nil {
		return fmt.Errorf("SMTP %s: EHLO: %w", m.cfg.SMTP, err)
	}
	if m.cfg.UsesStartTLS() {
		if ok, _ := c.Extension("STARTTLS"); !ok {
			return fmt.Errorf("SMTP %s does not offer STARTTLS: nothing is sent in clear (set alerts.email.starttls: false only for a local relay without credentials)", m.cfg.SMTP)
		}
		if err := c.StartTLS(&tls.Config{ServerName: host, RootCAs: m.pool, MinVersion: tls.VersionTLS12}); err != nil {
			return fmt.Errorf("SMTP %s: STARTTLS: %w", m.cfg.SMTP, err)
		}
	}
	if m.cfg.Username != "" {
		pw, err := m.cfg.Password.Read()
		if err != nil {
			return fmt.Errorf("alerts.email.password: %w", err)
		}
		if err := c.Auth(smtp.PlainAuth("", m.cfg.Username, pw, host)); err != nil {
			return fmt.Errorf("SMTP %s: login as %s: %w", m.cfg.SMTP, m.cfg.Username, err)
		}
	}
	if err := c.Mail(m.cfg.From); err != nil {
		return fmt.Errorf("SMTP %s: MAIL FROM: %w", m.cfg.SMTP, err)
	}
	for _, to := range m.to {
		if err := c.Rcpt(to); err != nil {
			return fmt.Errorf("SMTP %s: RCPT TO %s: %w", m.cfg.SMTP, to, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("SMTP %s: DATA: %w", m.cfg.SMTP, err)
	}
	if _, err := w.Write(message(m.cfg.From, m.to, subj, body)); err != nil {
		return fmt.Errorf("SMTP %s: sending the message: %w", m.cfg.SMTP, err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("SMTP %s: the server did not take the message: %w", m.cfg.SMTP, err)
	}
	return c.Quit()
}

// message is an RFC 5322 message with a plain-text UTF-8 body.
func message(from string, to []string, subj, body string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "From: %s\r\nTo: %s\r\nSubject: %s\r\nDate: %s\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\nAuto-Submitted: auto-generated\r\n\r\n",
		from, strings.Join(to, ", "), strings.ReplaceAll(subj, "\n", " "), time.Now().UTC().Format(time.RFC1123Z))
	for _, line := range strings.Split(body, "\n") { // net/smtp's DATA writer dot-stuffs
		b.WriteString(strings.TrimRight(line, "\r") + "\r\n")
	}
	return []byte(b.String())
}
