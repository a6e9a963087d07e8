package dryrun

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/redcap"
	"github.com/redcap-relay/relay/services/internal/tools/redcapsim"
)

const filesPolicy = `name: dry-run-files
approved:
  forms: [consent]
rules:
  - field: consent_file
    rule: keep
    justification: the IRB approved transferring signed consent forms
    types: [application/pdf]
    max_size: 1MB
`

// A dry run lists what a sync would do to each kept file: new, replaced,
// unchanged, removed, and (downloading them) refused by the policy's type
// limit; by presence only without --files. It never names or shows a file.
func TestDryRunComparesFiles(t *testing.T) {
	sim, err := redcapsim.New(redcapsim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	url, err := sim.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fields := []messages.Field{f("record_id", "consent", "text", "", ""), f("consent_file", "consent", "file", "", "")}
	sitePID, err := sim.CreateProject(redcapsim.ProjectSpec{Title: "Site A", Fields: fields})
	if err != nil {
		t.Fatal(err)
	}
	destPID, err := sim.CreateProject(redcapsim.ProjectSpec{Title: "Center", Fields: fields})
	if err != nil {
		t.Fatal(err)
	}
	for pid, tok := range map[int]string{sitePID: siteToken, destPID: destToken} {
		if err := sim.AddToken(pid, tok, redcapsim.FullRights(), ""); err != nil {
			t.Fatal(err)
		}
	}
	var siteRows, destRows []messages.Row
	for _, id := range []string{"1", "2", "3", "4", "5"} {
		siteRows = append(siteRows, messages.Row{"record_id": id, "consent_complete": "2"})
		destRows = append(destRows, messages.Row{"record_id": "A-" + id, "consent_complete": "2"})
	}
	if err := sim.ImportRows(sitePID, siteRows, false); err != nil {
		t.Fatal(err)
	}
	if err := sim.ImportRows(destPID, destRows[:4], false); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	upload := func(tok, rec, name, body string) {
		t.Helper()
		c, err := redcap.New(redcap.Options{Site: "t", URL: url, Token: tok, CallsPerMinute: -1})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.ImportFile(ctx, redcap.FileRef{Record: rec, Field: "consent_file"}, name, strings.NewReader(body), int64(len(body))); err != nil {
			t.Fatal(err)
		}
	}
	upload(siteToken, "1", "jane_roe.pdf", "%PDF same consent")
	upload(destToken, "A-1", "consent_file.pdf", "%PDF same consent")
	upload(siteToken, "2", "john_doe.pdf", "%PDF new version")
	upload(destToken, "A-2", "consent_file.pdf", "%PDF old version")
	upload(siteToken, "3", "new_one.pdf", "%PDF first upload")
	upload(destToken, "A-4", "consent_file.pdf", "%PDF removed at the site since")
	upload(siteToken, "5", "diary_of_mary_major.txt", "not a PDF: Mary Major's notes")

	dir := t.TempDir()
	for name, body := range map[string]string{"site.token": siteToken, "dest.token": destToken, "policy.yaml": filesPolicy,
		"network.yaml": "destination:\n  url: " + url + "\n  token: {file: dest.token}\nsites:\n  - id: site_a\n    url: " + url +
			"\n    token: {file: site.token}\n    policy: policy.yaml\n    namespace: A\n    calls_per_minute: -1\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	net, err := config.Load(filepath.Join(dir, "network.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	statuses := func(r *Report) map[string]string {
		out := map[string]string{}
		for _, fr := range r.Files {
			out[fr.DestRecordID] = fr.Status
		}
		return out
	}

	quick, err := Run(ctx, Options{Network: net, Site: "site_a"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"A-1": StatusFilePresent, "A-2": StatusFilePresent, "A-3": StatusFileNew, "A-4": StatusFileRemoved, "A-5": StatusFileNew}
	if got := statuses(quick); !equalMaps(got, want) {
		t.Fatalf("without --files: %v, want %v", got, want)
	}

	full, err := Run(ctx, Options{Network: net, Site: "site_a", Files: true})
	if err != nil {
		t.Fatal(err)
	}
	want = map[string]string{"A-1": StatusFileUnchanged, "A-2": StatusFileReplaced, "A-3": StatusFileNew, "A-4": StatusFileRemoved, "A-5": StatusFileRefused}
	if got := statuses(full); !equalMaps(got, want) {
		t.Fatalf("with --files: %v, want %v", got, want)
	}
	var text bytes.Buffer
	if err := full.WriteText(&text, false); err != nil {
		t.Fatal(err)
	}
	js, _ := json.Marshal(full)
	for _, out := range []string{text.String(), string(js)} {
		for _, secret := range []string{"jane_roe", "john_doe", "mary_major", "Mary Major", "%PDF", "consent_file.pdf"} {
			if strings.Contains(out, secret) {
				t.Fatalf("the report shows %q:\n%s", secret, out)
			}
		}
	}
	if !strings.Contains(text.String(), "1 new, 1 replaced, 1 unchanged, 0 present at both (not compared), 1 would be removed, 1 refused by the policy") {
		t.Fatalf("files summary missing:\n%s", text.String())
	}
	t.Log(text.String())
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}
