package exportreq

import (
	"testing"
	"time"
)

func TestRunIDIsDeterministic(t *testing.T) {
	tick := time.Date(2026, 11, 25, 7, 0, 0, 0, time.FixedZone("EST", -5*3600))
	a, b := New("site-a", tick, false, ReasonSchedule), New("site-a", tick.UTC(), false, ReasonSchedule)
	if a.RunID != b.RunID || a.MsgID() != b.MsgID() || a.RunID != "site-a-20261125T120000Z" {
		t.Fatalf("run IDs differ or are not UTC: %s %s", a.RunID, b.RunID)
	}
}
