package notify

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/redcap-relay/relay/services/internal/config"
)

// Webhook posts alerts as JSON. Its URL is read from its secret at each
// send and never logged or put in an error (Slack's and Teams' URLs are
// credentials).
type Webhook struct {
	cfg config.Webhook
	hc  *http.Client
}

// NewWebhook builds a webhook channel.
func NewWebhook(cfg config.Webhook) (*Webhook, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("%s: ca_file: %w", cfg.Name, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: ca_file %s holds no PEM certificate", cfg.Name, cfg.CAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &Webhook{cfg: cfg, hc: &http.Client{Transport: tr, Timeout: 20 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}, nil
}

func (w *Webhook) Name() string { return w.cfg.Name }

func (w *Webhook) Send(ctx context.Context, alerts []Alert) error {
	url, err := w.cfg.URL.Read()
	if err != nil {
		return fmt.Errorf("%s: url: %w", w.cfg.Name, err)
	}
	body, err := json.Marshal(Body(w.cfg.Format, alerts))
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSpace(url), bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%s: the URL is not valid", w.cfg.Name)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "redcap-relay-notifier")
	resp, err := w.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s: no answer (%s)", w.cfg.Name, noURL(err))
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s: HTTP %d", w.cfg.Name, resp.StatusCode)
	}
	return nil
}

// noURL is a transport error without the URL it names (net/http's errors
// quote it, and the URL is the webhook's secret).
func noURL(err error) string {
	type unwrapper interface{ Unwrap() error }
	if u, ok := err.(unwrapper); ok && u.Unwrap() != nil {
		return u.Unwrap().Error()
	}
	return "request failed"
}

// Body is the JSON a webhook receives. The default (json) is one body that
// Slack's incoming webhooks (they read "text") and Teams' connectors (a
// MessageCard: "@type", "title", "text") both accept, with the alerts
// themselves under "alerts" for any other receiver.
func Body(format string, alerts []Alert) map[string]any {
	title := strings.TrimPrefix(subject(alerts), "[REDCap Relay] ")
	text := strings.TrimSpace(plain(alerts))
	color := "D97706"
	for _, a := range alerts {
		if a.Severity == SeverityError {
			color = "D7263D"
		}
	}
	slack := map[string]any{"text": "*REDCap Relay: " + title + "*\n" + text}
	teams := map[string]any{
		"@type": "MessageCard", "@context": "https://schema.org/extensions",
		"summary": "REDCap Relay: " + title, "title": "REDCap Relay: " + title, "themeColor": color,
		"text": strings.ReplaceAll(text, "\n", "<br>"),
	}
	switch format {
	case config.FormatSlack:
		return slack
	case config.FormatTeams:
		return teams
	}
	for k, v := range slack {
		teams[k] = v
	}
	teams["alerts"] = alerts
	return teams
}
