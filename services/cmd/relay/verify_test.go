package main

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/tools/redcapsim"
	"github.com/redcap-relay/relay/services/verifier"
)

// relay verify against the simulator over HTTP, without NATS: the
// destination was never synced, so every record is missing (exit 1); the
// JSON is the documented report; bad arguments exit 2. (Flags keep their
// values between commands run in one process: each line sets those it needs.)
func TestVerifyCommandReportsAndExits(t *testing.T) {
	sim, err := redcapsim.New(redcapsim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	srv := httptest.NewServer(sim.Handler())
	defer srv.Close()
	fields := []messages.Field{
		{FieldName: "record_id", FormName: "survey", FieldType: "text", FieldLabel: "ID"},
		{FieldName: "score", FormName: "survey", FieldType: "text", FieldLabel: "Score", TextValidationTypeOrShowSlider: "integer"},
	}
	dir := t.TempDir()
	site, _ := sim.CreateProject(redcapsim.ProjectSpec{Title: "alpha", Fields: fields})
	dest, _ := sim.CreateProject(redcapsim.ProjectSpec{Title: "destination", Fields: fields})
	if err := sim.ImportRows(site, []messages.Row{{"record_id": "1", "score": "4"}, {"record_id": "2", "score": "7"}}, false); err != nil {
		t.Fatal(err)
	}
	for name, pid := range map[string]int{"alpha": site, "destination": dest} {
		tok := strings.Repeat(strings.ToUpper(name[:1]), 32)
		if err := sim.AddToken(pid, tok, redcapsim.FullRights(), ""); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, name+".token"), []byte(tok+"\n"), 0o600)
	}
	os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte("name: t\napproved: {forms: [survey]}\nrecord_id: {mode: namespace}\n"), 0o600)
	network := filepath.Join(dir, "network.yaml")
	os.WriteFile(network, []byte(fmt.Sprintf(`destination:
  url: %[1]s/api/
  token: {file: destination.token}
  calls_per_minute: -1
sites:
  - id: alpha
    url: %[1]s/api/
    token: {file: alpha.token}
    schedule: "@yearly"
    policy: policy.yaml
    calls_per_minute: -1
`, srv.URL)), 0o600)

	code, out, stderr := relay(t, "verify", "-n", network, "--all", "--json", "--data", filepath.Join(dir, "none"))
	var rep verifier.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("exit %d, not JSON: %v\n%s\n%s", code, err, out, stderr)
	}
	if code != verifier.ExitDifferences || rep.Status != messages.VerifyDifferences || len(rep.Sites) != 1 ||
		rep.Sites[0].Counts.Missing != 2 || strings.Join(rep.Sites[0].Missing, ",") != "alpha-1,alpha-2" {
		t.Fatalf("exit %d: %s\n%s", code, out, stderr)
	}
	if strings.Contains(out, `"4"`) || strings.Contains(out, `"7"`) {
		t.Fatalf("the report holds a value: %s", out)
	}
	code, out, _ = relay(t, "verify", "-n", network, "--all=false", "--json=false", "--site", "alpha", "--data", filepath.Join(dir, "none"))
	if code != verifier.ExitDifferences || !strings.Contains(out, "alpha: differences (2 records: 0 equal, 2 missing") {
		t.Fatalf("text report: exit %d\n%s", code, out)
	}
	if code, _, stderr = relay(t, "verify", "-n", network, "--site="); code != verifier.ExitError || !strings.Contains(stderr, "--site ID or --all") {
		t.Fatalf("no --site or --all: exit %d %s", code, stderr)
	}
	if code, _, stderr = relay(t, "verify", "-n", network, "--site", "nope"); code != verifier.ExitError || !strings.Contains(stderr, `unknown site "nope"`) {
		t.Fatalf("unknown site: exit %d %s", code, stderr)
	}
}
