package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/ops"
	"github.com/redcap-relay/relay/services/internal/pipeline/app"
	"github.com/redcap-relay/relay/services/internal/pipeline/broker"
)

// The scheduled verification (verify_every, verify_repair): the verifier
// service takes the ticker's request, finds the record deleted at the
// destination by hand, repairs it, verifies again, and the result is on
// AUDIT and in `relay status`; a second request for the same window is
// skipped.
func TestScheduledVerificationRepairsAndReports(t *testing.T) {
	n := newNet(t, netOpts{sites: []string{"alpha"}, records: 12})
	n.start(append(pipeline, app.Verifier)...)
	// The ticker asks for the window's verification at the tick of the
	// window's first export: the verifier waits for that run.
	tick := time.Now().UTC().Truncate(time.Second)
	n.sync(false, tick)
	want := n.expected()
	if err := n.sim.DeleteRecord(n.dest, "alpha-5"); err != nil {
		t.Fatal(err)
	}

	ctx := context.Background()
	window := messages.VerifyWindow(tick, 24*time.Hour)
	req := messages.VerifyRequested{V: messages.V, Site: "alpha", RunID: "verify-alpha-" + window.Format("20060102T150405Z"),
		Window: window, Repair: true, Reason: "schedule", RequestedAt: tick}
	if err := broker.Publish(ctx, n.stack.JS, messages.VerifyRequestedSubject("alpha"), req.MsgID(), broker.Route{Site: "alpha", Run: req.RunID}, req); err != nil {
		t.Fatal(err)
	}
	var res messages.VerifyResult
	waitFor(t, 2*time.Minute, "the scheduled verification's result on AUDIT", func() bool {
		return broker.LastJSON(ctx, n.stack.JS, messages.StreamAudit, messages.VerifySubject("alpha"), &res)
	})
	if res.Status != messages.VerifyEqual || res.Repair == nil || res.Repair.Records != 1 || res.Repair.Error != "" {
		t.Fatalf("scheduled verification with verify_repair: status %s repair %+v counts %+v", res.Status, res.Repair, res.Counts)
	}
	n.assertEqual(want)

	st, err := ops.Collect(ctx, n.stack.JS, ops.StatusOptions{Network: n.network})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st.Sites {
		if s.Site == "alpha" && (s.Verification == nil || s.Verification.Status != messages.VerifyEqual || s.Verification.Records != 12) {
			t.Fatalf("relay status shows alpha's verification as %+v", s.Verification)
		}
	}

	// The same window asked again (a second ticker after a restart): skipped.
	req.RunID += "-again"
	if err := broker.Publish(ctx, n.stack.JS, messages.VerifyRequestedSubject("alpha"), req.MsgID(), broker.Route{Site: "alpha", Run: req.RunID}, req); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the verifier to take the second request", func() bool {
		return strings.Contains(n.logs.String(), "site already verified in this window")
	})
	if got := broker.CountSubject(ctx, n.stack.JS, messages.StreamAudit, messages.VerifySubject("alpha")); got != 1 {
		t.Fatalf("%d verification results on AUDIT, want 1 (the second request of the window is skipped)", got)
	}
}
