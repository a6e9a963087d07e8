package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/pipeline/app"
	"github.com/redcap-relay/relay/services/internal/pipeline/broker"
	"github.com/redcap-relay/relay/services/internal/pipeline/topology"
)

func cleaned(site, id string, version int64, score string) messages.RecordCleaned {
	rows := []messages.Row{{"record_id": id, "score": score, "mood": "1", "weight": "1.5", "survey_complete": "2"}}
	return messages.RecordCleaned{V: messages.V, Site: site, RunID: "r", SourceRecord: id, DestRecordID: id,
		Version: version, Hash: messages.HashRows(rows), PolicyVersion: "test", Rows: rows, CleanedAt: time.Now()}
}

// Latest wins: when redeliveries reorder two versions of a record, the
// destination keeps the newer one; replaying the stream leaves it equal.
func TestLatestVersionWinsAndReplayIsIdempotent(t *testing.T) {
	n := newNet(t, netOpts{sites: []string{"alpha"}, records: 1})
	n.start(app.Importer)
	ctx := context.Background()
	publish := func(m messages.RecordCleaned) {
		if err := broker.Publish(ctx, n.stack.JS, messages.RecordsCleanSubject(m.Site), m.MsgID(), broker.Route{Site: m.Site}, m); err != nil {
			t.Fatal(err)
		}
	}
	// The newer version arrives first, the older one (a redelivery) after it.
	publish(cleaned("alpha", "alpha-7", 2000, "9"))
	waitFor(t, 30*time.Second, "the newer version to be imported", func() bool { return n.destination()["alpha-7"]["score"] == "9" })
	publish(cleaned("alpha", "alpha-7", 1000, "1"))
	waitFor(t, 30*time.Second, "the importer to drain", func() bool { return broker.Drained(ctx, n.stack.JS) })
	if got := n.destination()["alpha-7"]["score"]; got != "9" {
		t.Fatalf("an older version overwrote the newer one: score %q, want 9", got)
	}

	// Replay the whole clean stream (a destination restored from backup):
	// the destination ends in the same state.
	if err := n.sim.DeleteRecord(n.dest, "alpha-7"); err != nil {
		t.Fatal(err)
	}
	if err := broker.ResetConsumer(ctx, n.stack.JS, topology.Import, n.network.Streams, time.Time{}, 1); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, "the replay to restore the record", func() bool { return n.destination()["alpha-7"]["score"] == "9" })
	waitFor(t, 30*time.Second, "the importer to drain", func() bool { return broker.Drained(ctx, n.stack.JS) })
	if got := n.destination()["alpha-7"]["score"]; got != "9" {
		t.Fatalf("after replay score %q, want 9", got)
	}
}
