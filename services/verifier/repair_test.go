package verifier

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redcap-relay/relay/messages"
)

// Repair requests are derived from their content: the same differences
// give the same run IDs (a repeated repair dedupes), other differences
// other IDs; large sets are split, deletions travel in one request.
func TestRepairRequestsAreDeterministicAndBounded(t *testing.T) {
	o := &Outcome{Result: messages.VerifyResult{Site: "alpha"}, destOf: map[string]string{}}
	for i := 0; i < repairChunk+10; i++ {
		o.Records = append(o.Records, fmt.Sprint(i))
	}
	o.Extras = []string{"alpha-x", "alpha-y"}
	now := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	a := RepairRequests(context.Background(), nil, o, now)
	b := RepairRequests(context.Background(), nil, o, now.Add(time.Hour))
	if len(a) != 3 || len(a[0].Records) != repairChunk || len(a[1].Records) != 10 || len(a[2].DeleteDest) != 2 || len(a[2].Records) != 0 {
		t.Fatalf("requests: %d", len(a))
	}
	for i := range a {
		if a[i].RunID != b[i].RunID || a[i].MsgID() != b[i].MsgID() || a[i].Reason != messages.ReasonRepair || !a[i].Repair() {
			t.Fatalf("request %d: %s vs %s", i, a[i].RunID, b[i].RunID)
		}
	}
	o.Records = o.Records[1:]
	if c := RepairRequests(context.Background(), nil, o, now); c[0].RunID == a[0].RunID {
		t.Fatal("other records, same run ID")
	}
	if len(RepairRequests(context.Background(), nil, &Outcome{Result: messages.VerifyResult{Site: "alpha"}}, now)) != 0 {
		t.Fatal("nothing to repair, yet requests")
	}
}
