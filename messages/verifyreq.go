package messages

import (
	"time"
)

// SubjectVerifyRequested is where the ticker asks for a site's scheduled
// verification (`verify_every`): relay.verify.requested.<site>, on
// EXPORT_REQUESTS next to the export requests.
const SubjectVerifyRequested = "relay.verify.requested"

// VerifyRequestedSubject is the request subject of one site.
func VerifyRequestedSubject(site string) string { return SubjectVerifyRequested + "." + site }

// VerifyRequested asks the verifier to compare one site with the
// destination. Window is the start of the verify_every window the request
// belongs to: RunID is derived from it, so every ticker publishes the same
// message ID for a window, and the verifier skips a window already verified.
type VerifyRequested struct {
	V           int       `json:"v"`
	Site        string    `json:"site"`
	RunID       string    `json:"run_id"`
	Window      time.Time `json:"window"`
	Repair      bool      `json:"repair"` // the site's verify_repair
	Reason      string    `json:"reason"`
	RequestedAt time.Time `json:"requested_at"`
}

// MsgID is the dedupe ID of the request.
func (m VerifyRequested) MsgID() string { return "verify." + m.RunID }

// VerifyWindow is the start of the verify_every window holding t (windows
// are counted from the Unix epoch, so every ticker agrees).
func VerifyWindow(t time.Time, every time.Duration) time.Time {
	return t.UTC().Truncate(every)
}
