package protocol

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/redcap-relay/relay/messages"
)

func TestHEALAdultLoadsAndSelfConforms(t *testing.T) {
	p, err := HEALAdult()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Err(); err != nil {
		t.Fatal(err)
	}
	if len(p.Instruments) != 12 || len(p.Substitutes) != 5 || len(p.Events) != 4 {
		t.Fatalf("instruments %d substitutes %d events %d", len(p.Instruments), len(p.Substitutes), len(p.Events))
	}
	r := Check(p, "site-a", SiteSnapshot(p, "site-a"), nil)
	if r.Status != messages.ProtocolConformant || *r.Score != 100 {
		for _, f := range r.Findings {
			t.Logf("%+v", f)
		}
		t.Fatalf("status %s score %v", r.Status, *r.Score)
	}
	// corrections table: GAD-7's PHQDiffcltyPerfScl is marked SKIP, and the
	// GAD-2 items accept both spellings.
	gad7 := p.Instrument("gad7")
	if !gad7.Skip["phqdiffcltyperfscl"] {
		t.Errorf("gad7 skip = %v", gad7.Skip)
	}
	if got := p.Instrument("gad2").FieldAliases["gad2notstopwryscale"]; len(got) != 1 || got[0] != "gad2notstopwryscl" {
		t.Errorf("gad2 aliases = %v", got)
	}
}

// The embedded library must be the same as the deployable one.
func TestEmbeddedLibraryMatchesDeploy(t *testing.T) {
	deploy := filepath.Join("..", "..", "..", "deploy", "protocol")
	if _, err := os.Stat(deploy); err != nil {
		t.Skip("deploy/protocol not present")
	}
	err := filepath.Walk("library", func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, _ := filepath.Rel("library", path)
		a, _ := os.ReadFile(path)
		b, err := os.ReadFile(filepath.Join(deploy, rel))
		if err != nil {
			t.Errorf("deploy/protocol/%s: %v", rel, err)
			return nil
		}
		if !bytes.Equal(a, b) {
			t.Errorf("deploy/protocol/%s differs from the embedded copy: copy library/ over it", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
