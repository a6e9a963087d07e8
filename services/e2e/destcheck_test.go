package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/pipeline/sitekit"
)

// The destination's data dictionary changes between two runs (a field the
// policy writes loses its number validation for an integer one): the next
// run checks a dictionary read for that run, stops with the list of
// mismatches, imports nothing and dead-letters no record.
func TestADestinationChangeBetweenRunsStopsTheNextRun(t *testing.T) {
	n := newNet(t, netOpts{sites: []string{"alpha"}, records: 30})
	n.start(pipeline...)
	t0 := time.Now()
	n.sync(false, t0)
	n.assertEqual(n.expected())

	ctx := context.Background()
	dest, err := sitekit.New(n.network, nil).Destination()
	if err != nil {
		t.Fatal(err)
	}
	fields := destFields("")
	for i := range fields {
		if fields[i].FieldName == "weight" {
			fields[i].TextValidationTypeOrShowSlider = "integer"
		}
	}
	if _, err := dest.ImportMetadata(ctx, fields); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // REDCap's log has one-second resolution
	if err := n.sim.ImportRows(n.sites["alpha"], []messages.Row{{"record_id": "4", "weight": "61.5"}}, false); err != nil {
		t.Fatal(err)
	}
	before := n.destination()["alpha-4"]["weight"]
	ev := n.sync(false, t0.Add(2*time.Second))["alpha"]
	if ev.Phase != messages.PhaseFailed || !strings.Contains(ev.Error, "weight") || !strings.Contains(ev.Error, "destination cannot take") {
		t.Fatalf("run after the destination changed: %s %q; want failed, naming the field", ev.Phase, ev.Error)
	}
	if got := n.destination()["alpha-4"]["weight"]; got != before {
		t.Fatalf("record 4 was imported (weight %q, was %q)", got, before)
	}
	if dls := n.deadLetters(messages.StageImport, "alpha"); len(dls) != 0 {
		t.Fatalf("%d records dead-lettered at import; the run should have stopped before", len(dls))
	}
	if dls := n.deadLetters(messages.StageExport, "alpha"); len(dls) != 1 || !strings.Contains(dls[0].Error, "weight") {
		t.Fatalf("export dead letters %+v: want the run's, with the mismatch", dls)
	}
}
