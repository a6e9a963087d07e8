// Package notify is the alert notifier (`relay notifier`, and inside `relay
// all`): every alerts.check_every it reads the pipeline's state from NATS
// (the same read as `relay status`), turns what changed into alerts (a run
// failed, a site unreachable for long, new dead letters, deletions held,
// new protocol deviations, verification differences, a stuck stage), and
// sends them by e-mail (SMTP with STARTTLS) and to webhooks (JSON that
// Slack and Teams accept), plus a daily summary e-mail to its own
// recipients. Each alert is sent once (deduplicated by a key), channels are
// rate-limited (alerts over the cap wait and go out together), and a
// delivery that fails is retried with backoff in the background, logged
// and counted; one it gives up on is counted and shown in `relay status`.
// The notifier only reads the pipeline: it can never block it.
//
// Alerts carry site IDs, run IDs, counts and the pipeline's own reasons,
// which never hold a field value.
package notify

import (
	"fmt"
	"strings"
	"time"
)

// Severities.
const (
	SeverityError   = "error"
	SeverityWarning = "warning"
)

// Alert is one thing an operator should know.
type Alert struct {
	Key      string    `json:"-"` // dedupe key: the same key is sent once
	Event    string    `json:"event"`
	Site     string    `json:"site,omitempty"`
	Severity string    `json:"severity"`
	Title    string    `json:"title"`
	Text     string    `json:"text"`
	At       time.Time `json:"at"`
}

// subject is an e-mail subject or a card title for one or more alerts.
func subject(as []Alert) string {
	if len(as) == 1 {
		return "[REDCap Relay] " + as[0].Title
	}
	return fmt.Sprintf("[REDCap Relay] %d alerts: %s", len(as), as[0].Title)
}

// plain is the alerts as plain text, one paragraph each.
func plain(as []Alert) string {
	var b strings.Builder
	for i, a := range as {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "%s [%s] %s\n%s\n", a.At.UTC().Format("2006-01-02 15:04:05 UTC"), a.Severity, a.Title, a.Text)
	}
	b.WriteString("\nrelay status shows the whole picture; relay dlq list the dead letters.\n")
	return b.String()
}
