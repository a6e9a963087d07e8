package protocol

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
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
	if r.Status != messages.ProtocolConformant || *r.Score != 100 || len(r.Findings) != 0 {
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

// relay protocol write: the written library loads and is the built-in one;
// a second write refuses to overwrite without force.
func TestWriteLibraryRoundTrip(t *testing.T) {
	dir := t.TempDir()
	files, err := WriteLibrary(dir, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 18 { // heal-adult.yaml + 17 dictionaries
		t.Errorf("%d files written", len(files))
	}
	got, err := Load(filepath.Join(dir, "heal-adult.yaml"))
	if err != nil || got.Err() != nil {
		t.Fatal(err, got.Err())
	}
	want, _ := HEALAdult()
	for i, in := range want.Instruments {
		g := got.Instruments[i]
		if g.Name != in.Name || len(g.Fields) != len(in.Fields) || strings.Join(g.Aliases, ",") != strings.Join(in.Aliases, ",") {
			t.Errorf("instrument %s differs after writing: %+v", in.Name, g)
		}
	}
	for _, f := range files {
		b, _ := os.ReadFile(f)
		rel, _ := filepath.Rel(dir, f)
		e, _ := fs.ReadFile(LibraryFS(), filepath.ToSlash(rel))
		if !bytes.Equal(b, e) {
			t.Errorf("%s differs from the built-in copy", rel)
		}
	}
	if _, err := WriteLibrary(dir, false); err == nil || !strings.Contains(err.Error(), "--force") {
		t.Errorf("second write: %v", err)
	}
	if _, err := WriteLibrary(dir, true); err != nil {
		t.Errorf("forced write: %v", err)
	}
}
