package redcap

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// ClockReading is the REDCap server's wall clock and the true time, from
// one answer: the newest entry of its export log (server-local time, to the
// minute; REDCap logs every API export, so it is the export just made) and
// the HTTP Date header (UTC) of that same answer.
type ClockReading struct {
	NewestLog string    // "YYYY-MM-DD HH:MM", server time; "" when the log had no export
	Date      time.Time // the answer's Date header
}

// ReadServerClock reads the export log of the last 15 hours of the server's
// clock, whatever its zone (UTC-12 to UTC+14), so this very call's own
// export entries are in it. It needs the Logging right.
func (c *Client) ReadServerClock(ctx context.Context) (ClockReading, error) {
	f := content("log")
	f.Set("logtype", "export")
	f.Set("beginTime", time.Now().UTC().Add(-15*time.Hour).Format(logTime))
	f.Set("format", "json")
	f.Set("returnFormat", "json")
	const call = "export logging"
	body, h, err := c.postHeader(ctx, call, f, bodyJSON)
	if err != nil {
		return ClockReading{}, err
	}
	var raw []map[string]any
	if err := decodeLoose(body, &raw); err != nil {
		return ClockReading{}, c.parseError(call, err)
	}
	var r ClockReading
	if r.Date, err = http.ParseTime(h.Get("Date")); err != nil {
		return ClockReading{}, c.newError(call, http.StatusOK, KindPermanent, "the answer has no valid Date header", "", nil)
	}
	for _, m := range raw { // newest first
		if ts := str(m["timestamp"]); ts != "" {
			r.NewestLog = ts
			break
		}
	}
	return r, nil
}

// ZoneOffset is the offset from UTC the server's clock implies (to the
// quarter hour), and whether the reading tells it: the newest export entry
// must be from the last minutes in some real time zone (UTC-12 to UTC+14).
func (r ClockReading) ZoneOffset() (time.Duration, bool) {
	wall, err := time.Parse(logTime, r.NewestLog)
	if err != nil || r.Date.IsZero() {
		return 0, false
	}
	// The entry is stamped when the export started, to the minute, a
	// moment before the Date of the answer that lists it.
	d := wall.Sub(r.Date.UTC().Truncate(time.Minute)).Round(15 * time.Minute)
	if d < -12*time.Hour || d > 14*time.Hour {
		return 0, false
	}
	return d, true
}

// ClockMismatch compares a reading with the zone the network file gives the
// server. It returns "" when they agree, or cannot be compared.
func ClockMismatch(r ClockReading, configured *time.Location, zoneName string) string {
	got, ok := r.ZoneOffset()
	if !ok {
		return ""
	}
	_, off := r.Date.In(configured).Zone()
	want := time.Duration(off) * time.Second
	if diff := got - want; diff > -30*time.Minute && diff < 30*time.Minute {
		return ""
	}
	risk := "changed-since windows start earlier than needed (harmless, slower)"
	if got < want {
		// The server reads our "since" as a later instant than meant.
		risk = fmt.Sprintf("changed-since windows start %s too late, so incremental runs can miss changes until the next full run", hours(want-got))
	}
	return fmt.Sprintf("the REDCap server's clock reads %s (its newest log entry) at %s UTC, which is UTC%s, but server_time_zone %s is UTC%s: %s; set the site's server_time_zone to the server's zone",
		r.NewestLog, r.Date.UTC().Format("2006-01-02 15:04"), offset(got), zoneName, offset(want), risk)
}

func offset(d time.Duration) string {
	sign := "+"
	if d < 0 {
		sign, d = "-", -d
	}
	return fmt.Sprintf("%s%02d:%02d", sign, int(d.Hours()), int(d.Minutes())%60)
}

// hours writes 5h, 5h30m.
func hours(d time.Duration) string {
	return strings.TrimSuffix(strings.TrimSuffix(d.String(), "0s"), "0m")
}
