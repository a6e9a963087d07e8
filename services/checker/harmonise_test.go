package checker

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/ops/dryrun"
	"github.com/redcap-relay/relay/services/internal/pipeline/retry"
	"github.com/redcap-relay/relay/services/internal/protocol"
	"github.com/redcap-relay/relay/services/internal/testfixtures"
	"github.com/redcap-relay/relay/services/internal/tools/redcapsim"
)

// From drift to harmonised data: a site runs the PHQ-8 under its export's
// variable names; relay check finds it by content and suggests rename
// rules; pasted into the site's policy, relay dry-run (against the
// simulator over HTTP) writes every item under the library's name into a
// destination that has only the library's names, and nothing is refused.
func TestSuggestedPolicyDryRunWritesLibraryNames(t *testing.T) {
	p, _ := protocol.HEALAdult()
	sim, err := redcapsim.New(redcapsim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	url, err := sim.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	items, err := protocol.ParseDictionary(strings.NewReader(testfixtures.PHQ8Export))
	if err != nil {
		t.Fatal(err)
	}
	id := messages.Field{FieldName: "record_id", FormName: "phq8_s1_r1_e1", FieldType: "text", FieldLabel: "Record ID"}
	sitePID, err := sim.CreateProject(redcapsim.ProjectSpec{Title: "FIU", Fields: append([]messages.Field{id}, items...)})
	if err != nil {
		t.Fatal(err)
	}
	lib, _ := fs.ReadFile(protocol.LibraryFS(), "heal-adult/phq8.csv")
	libItems, err := protocol.ParseDictionary(bytes.NewReader(lib))
	if err != nil {
		t.Fatal(err)
	}
	destID := messages.Field{FieldName: "record_id", FormName: "phq8", FieldType: "text", FieldLabel: "Record ID"}
	destPID, err := sim.CreateProject(redcapsim.ProjectSpec{Title: "Center", Fields: append([]messages.Field{destID}, libItems...)})
	if err != nil {
		t.Fatal(err)
	}
	siteTok, destTok := "A1A1A1A1A1A1A1A1A1A1A1A1A1A1A1A1", "D2D2D2D2D2D2D2D2D2D2D2D2D2D2D2D2"
	sim.AddToken(sitePID, siteTok, redcapsim.FullRights(), "")
	sim.AddToken(destPID, destTok, redcapsim.FullRights(), "")
	var rows []messages.Row
	for r := 1; r <= 3; r++ {
		row := messages.Row{"record_id": fmt.Sprint(r), "phq8_s1_r1_e1_complete": "2"}
		for _, f := range items {
			row[f.FieldName] = fmt.Sprint(r % 4)
		}
		rows = append(rows, row)
	}
	if err := sim.ImportRows(sitePID, rows, false); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "site.token"), []byte(siteTok), 0o600)
	os.WriteFile(filepath.Join(dir, "dest.token"), []byte(destTok), 0o600)
	policyHead := "name: fiu\napproved:\n  forms: [phq8_s1_r1_e1]\n"
	os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(policyHead), 0o600)
	netFile := filepath.Join(dir, "network.yaml")
	os.WriteFile(netFile, []byte(fmt.Sprintf("destination:\n  url: %s\n  token: {file: dest.token}\nsites:\n  - id: fiu\n    url: %s\n    token: {file: site.token}\n    policy: policy.yaml\n    calls_per_minute: 500\n", url, url)), 0o600)
	n, err := config.Load(netFile)
	if err != nil {
		t.Fatal(err)
	}

	r := CheckSites(context.Background(), n, p, []string{"fiu"}, Options{Retry: retry.Policy{MaxElapsed: 1}})[0]
	s := protocol.Suggest(r)
	if len(s.Renames) != 9 {
		t.Fatalf("suggested renames: %+v (report %s: %+v)", s.Renames, r.Status, r.Findings)
	}
	pol := policyHead + s.YAML(nil, nil)
	os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(pol), 0o600)
	t.Logf("policy.yaml:\n%s", pol)

	rep, err := dryrun.Run(context.Background(), dryrun.Options{Network: n, Site: "fiu", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.DestinationProblems) != 0 {
		t.Errorf("the destination cannot take the harmonised fields: %v", rep.DestinationProblems)
	}
	written := map[string]int{}
	for _, fc := range rep.Fields {
		written[fc.Field] = fc.New
	}
	for _, f := range libItems {
		if written[f.FieldName] != 3 {
			t.Errorf("dry run writes %s for %d records, want 3 (%v)", f.FieldName, written[f.FieldName], written)
		}
	}
	for _, f := range items {
		if _, ok := written[f.FieldName]; ok {
			t.Errorf("the site's name %s reaches the destination", f.FieldName)
		}
	}
	if written["phq8_complete"] != 3 || rep.Counts[dryrun.StatusNew] != 3 || rep.Counts[dryrun.StatusRefused] != 0 {
		t.Errorf("form status %d, counts %v", written["phq8_complete"], rep.Counts)
	}
	var text bytes.Buffer
	rep.WriteText(&text, false)
	t.Logf("relay dry-run:\n%s", text.String())
}
