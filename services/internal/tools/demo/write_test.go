package demo

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/tools/redcapsim"
)

// The folders `relay demo --write` produces load into a fresh simulator
// with the same records, and the network file validates.
func TestWriteRoundTrips(t *testing.T) {
	dir := t.TempDir()
	if err := Write(context.Background(), WriteOptions{Dir: dir, SiteURL: "http://sites:8080/api/", DestinationURL: "http://destination:8080/api/", Scale: 0.1}); err != nil {
		t.Fatal(err)
	}
	n, err := config.Load(filepath.Join(dir, "network.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if n.Destination.URL != "http://destination:8080/api/" || n.Sites[0].URL != "http://sites:8080/api/" {
		t.Errorf("URLs not applied: %s %s", n.Destination.URL, n.Sites[0].URL)
	}
	sim, err := redcapsim.New(redcapsim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	ids, err := sim.LoadDir(filepath.Join(dir, "projects", "sites"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != len(Sites) {
		t.Fatalf("loaded %d site projects, want %d", len(ids), len(Sites))
	}
	total := 0
	for _, id := range ids {
		rows, err := sim.ExportRows(id)
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) == 0 {
			t.Errorf("project %d has no records", id)
		}
		total += len(rows)
	}
	dest, err := sim.LoadDir(filepath.Join(dir, "projects", "destination"))
	if err != nil {
		t.Fatal(err)
	}
	// The destination keeps its data access groups: records can be assigned.
	row := messages.Row{"record_id": "riverside-1", "redcap_event_name": "baseline_arm_1", "redcap_data_access_group": "riverside"}
	if err := sim.ImportRows(dest[0], []messages.Row{row}, false); err != nil {
		t.Errorf("destination lost its DAGs: %v", err)
	}
	t.Logf("%d site rows reloaded", total)
}
