package ops

import (
	"strings"
	"testing"
	"time"

	"github.com/redcap-relay/relay/services/internal/pipeline/topology"
)

// Why a backlog does not move, from the consumer's counters and times.
func TestStuckReasons(t *testing.T) {
	now := time.Now()
	ago := func(d time.Duration) *time.Time { x := now.Add(-d); return &x }
	for _, c := range []struct {
		name  string
		stage topology.Stage
		l     StageLag
		want  string
	}{
		{"empty", topology.Import, StageLag{}, ""},
		{"importer between fetches", topology.Import, StageLag{Pending: 40, Lag: 40, LastDelivered: ago(time.Second)}, ""},
		{"no importer", topology.Import, StageLag{Pending: 40, Lag: 40, LastDelivered: ago(5 * time.Minute)}, "no importer connected: 40 message(s) wait"},
		{"importing", topology.Import, StageLag{Pending: 40, AckPending: 25, Lag: 65, Waiting: 0, LastDelivered: ago(5 * time.Second), LastAcked: ago(2 * time.Second), ackWait: 30 * time.Second}, ""},
		{"destination down", topology.Import, StageLag{Pending: 40, AckPending: 25, Lag: 65, LastDelivered: ago(4 * time.Minute), LastAcked: ago(4 * time.Minute), ackWait: 30 * time.Second},
			"destination unreachable: the importer holds 25 record(s) and has confirmed none for 4m0s"},
		{"no transformer", topology.Transform, StageLag{Pending: 3, Lag: 3}, "no transformer connected: 3 message(s) wait and nothing is subscribed"},
		{"a long export run", topology.Export, StageLag{AckPending: 1, Lag: 1, Connected: true, LastDelivered: ago(3 * time.Hour), ackWait: 2 * time.Minute}, ""},
	} {
		got := stuckReason(c.stage, c.l, now)
		if (c.want == "") != (got == "") || !strings.HasPrefix(got, c.want) {
			t.Errorf("%s: %q, want %q", c.name, got, c.want)
		}
	}
}
