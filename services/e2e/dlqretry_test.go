package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/ops"
	"github.com/redcap-relay/relay/services/internal/pipeline/app"
	"github.com/redcap-relay/relay/services/internal/pipeline/broker"
)

// retryFailsAgain retries a stage's dead letters while their cause is not
// fixed yet and checks that each failure of the retry leaves a dead letter
// of its own: the count stays, the letters are new (another sequence, and a
// message ID naming the retry), and nothing vanishes in the duplicate window.
func retryFailsAgain(t *testing.T, n *testNet, stage, site string) {
	t.Helper()
	ctx := context.Background()
	before, err := ops.ListDLQ(ctx, n.stack.JS, ops.DLQFilter{Stage: stage, Site: site}, 0)
	if err != nil || len(before) == 0 {
		t.Fatalf("%s: no dead letters to retry (%v)", stage, err)
	}
	for _, e := range before {
		if _, err := ops.RetryDLQ(ctx, n.stack.JS, e.Seq); err != nil {
			t.Fatalf("%s: retry %d: %v", stage, e.Seq, err)
		}
	}
	var after []ops.DeadLetterEntry
	waitFor(t, time.Minute, stage+" retries to fail again", func() bool {
		after, _ = ops.ListDLQ(ctx, n.stack.JS, ops.DLQFilter{Stage: stage, Site: site}, 0)
		return len(after) == len(before) && broker.Drained(ctx, n.stack.JS)
	})
	old := map[uint64]bool{}
	for _, e := range before {
		old[e.Seq] = true
	}
	for _, e := range after {
		if old[e.Seq] || e.Letter.MsgID == "" || e.Letter.Error == "" {
			t.Fatalf("%s: after the retry %+v; want a new dead letter for each failure", stage, e)
		}
	}
	st, err := ops.GetStatus(ctx, n.stack.JS, []string{site})
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Sites[0].DLQ[stage]; got != uint64(len(before)) {
		t.Fatalf("%s: status shows %d dead letters held, want %d", stage, got, len(before))
	}
}

func TestARetriedDeadLetterThatFailsAgainIsKept(t *testing.T) {
	t.Run("export", func(t *testing.T) {
		n := newNet(t, netOpts{sites: []string{"beta"}, records: 5})
		n.sim.RevokeToken(n.tokens["beta"])
		n.start(pipeline...)
		n.sync(false, time.Now())
		retryFailsAgain(t, n, messages.StageExport, "beta")
	})
	t.Run("import", func(t *testing.T) {
		n := newNet(t, netOpts{sites: []string{"alpha"}, records: 12, destScoreCodes: "0, 0 | 1, 1 | 2, 2 | 3, 3 | 4, 4 | 5, 5 | 6, 6 | 7, 7"})
		n.start(pipeline...)
		n.sync(false, time.Now())
		retryFailsAgain(t, n, messages.StageImport, "alpha")
	})
	t.Run("transform", func(t *testing.T) {
		n := newNet(t, netOpts{sites: []string{"alpha"}, records: 5})
		n.start(pipeline...)
		ctx := context.Background()
		// A raw record whose snapshot the transformers cannot find.
		rec := messages.RecordExported{V: messages.V, Site: "alpha", RunID: "alpha-x", RecordID: "1", Version: 1, Hash: "h", MetadataHash: "nosuchsnapshot",
			Rows: []messages.Row{{"record_id": "1"}}}
		if err := broker.Publish(ctx, n.stack.JS, messages.RecordsRawSubject("alpha"), rec.MsgID(), broker.Route{Site: "alpha", Run: rec.RunID, Record: "1"}, rec); err != nil {
			t.Fatal(err)
		}
		waitFor(t, time.Minute, "the transform dead letter", func() bool { return len(n.deadLetters(messages.StageTransform, "alpha")) == 1 })
		retryFailsAgain(t, n, messages.StageTransform, "alpha")
	})
	t.Run("check", func(t *testing.T) {
		n := newNet(t, netOpts{sites: []string{"alpha"}, records: 5, reports: true})
		n.start(append(pipeline, app.Checker)...)
		ctx := context.Background()
		if err := broker.Publish(ctx, n.stack.JS, messages.MetadataSubject("alpha"), "meta.broken", broker.Route{Site: "alpha"}, map[string]any{"v": 1, "site": "alpha"}); err != nil {
			t.Fatal(err)
		}
		waitFor(t, time.Minute, "the check dead letter", func() bool { return len(n.deadLetters(messages.StageCheck, "alpha")) == 1 })
		retryFailsAgain(t, n, messages.StageCheck, "alpha")
	})
}
