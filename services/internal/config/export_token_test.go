package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestExportTokenIsOptionalAndFallsBackToTheDestinationToken(t *testing.T) {
	n, err := Load(writeNet(t, good))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := n.Destination.ReadExportToken()
	if err != nil || tok != "ABCDEF0123456789ABCDEF0123456789" {
		t.Fatalf("without export_token the destination token is used: %q, %v", tok, err)
	}

	p := writeNet(t, strings.Replace(good, "  token: {file: dest.token}\n", "  token: {file: dest.token}\n  export_token: {file: export.token}\n", 1))
	if err := os.WriteFile(filepath.Join(filepath.Dir(p), "export.token"), []byte("00000000000000000000000000000EEE\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n, err = Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(n.Destination.ExportToken.File) {
		t.Errorf("export_token path %q not resolved against the file's folder", n.Destination.ExportToken.File)
	}
	if tok, err := n.Destination.ReadExportToken(); err != nil || tok != "00000000000000000000000000000EEE" {
		t.Fatalf("export_token is read when set: %q, %v", tok, err)
	}
}

func TestExportTokenMistakesAreNamed(t *testing.T) {
	p := writeNet(t, strings.Replace(good, "  token: {file: dest.token}\n", "  token: {file: dest.token}\n  export_token: {file: missing.token, env: X}\n", 1))
	_, err := Load(p)
	if err == nil || !strings.Contains(err.Error(), "destination.export_token: give either file or env, not both") {
		t.Fatalf("file and env together: %v", err)
	}
	p = writeNet(t, strings.Replace(good, "  token: {file: dest.token}\n", "  token: {file: dest.token}\n  export_token: {file: missing.token}\n", 1))
	n, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	ps := n.CheckSecrets()
	if len(ps) != 1 || ps[0].Setting != "destination.export_token" {
		t.Fatalf("an unreadable export token is listed by CheckSecrets: %v", ps)
	}
	if _, err := n.Destination.ReadExportToken(); err == nil || !strings.Contains(err.Error(), "destination.export_token") || !strings.Contains(err.Error(), "missing.token") {
		t.Fatalf("the read error names the setting and the file: %v", err)
	}
}
