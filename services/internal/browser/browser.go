// Package browser runs Debian's headless Chromium for the tests that look
// at a page as a person would (the dashboard): a screenshot kept as a test
// artifact ($RELAY_ARTIFACTS) and the DOM as the browser has it. A test on
// a machine without Chromium is skipped, saying so.
package browser

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"testing"
	"time"
)

// Find returns the browser's path or skips the test.
func Find(t testing.TB) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless_shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("chromium not installed (apt-get install -y chromium): skipping the browser test")
	return ""
}

// Run runs headless Chromium with args and returns what it printed.
func Run(t testing.TB, bin string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--user-data-dir=" + t.TempDir()}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, errb.String())
	}
	return out.Bytes()
}

// Artifacts is where screenshots are kept: $RELAY_ARTIFACTS, else a
// temporary folder.
func Artifacts(t testing.TB) string {
	art := os.Getenv("RELAY_ARTIFACTS")
	if art == "" {
		art = t.TempDir()
	}
	if err := os.MkdirAll(art, 0o755); err != nil {
		t.Fatal(err)
	}
	return art
}
