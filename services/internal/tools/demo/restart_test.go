package demo

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/tools/redcapsim"
)

// `relay demo --data DIR` keeps the simulator's projects, tokens and key
// in DIR, and the next demo on DIR restarts on them: a record added to a
// site between the two is exported by the second, with the same tokens.
func TestADemoOnItsOwnFolderRestartsOnIt(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	var first bytes.Buffer
	if err := Run(ctx, RunOptions{DataDir: dir, Scale: 0.1, Out: &first}); err != nil {
		t.Fatalf("%v\n%s", err, first.String())
	}
	tok, _ := os.ReadFile(filepath.Join(dir, "secrets", "hillcrest.token"))
	key, _ := os.ReadFile(filepath.Join(dir, "secrets", "pseudonym.key"))
	before := exportedOf(t, first.String(), "hillcrest")

	// Between the runs, the site gains a participant (in the persisted store).
	sim, err := redcapsim.New(redcapsim.Options{DataDir: filepath.Join(dir, "redcap")})
	if err != nil {
		t.Fatal(err)
	}
	pid, ok := sim.ProjectIDForToken(strings.TrimSpace(string(tok)))
	if !ok {
		t.Fatal("the persisted simulator does not know the site's token")
	}
	rows, err := sim.ExportRows(pid)
	if err != nil || len(rows) == 0 {
		t.Fatalf("the persisted site has no rows: %v", err)
	}
	added := messages.Row{"record_id": "9999", "redcap_event_name": rows[0]["redcap_event_name"]}
	if err := sim.ImportRows(pid, []messages.Row{added}, false); err != nil {
		t.Fatal(err)
	}
	sim.Close()

	var second bytes.Buffer
	if err := Run(ctx, RunOptions{DataDir: dir, Scale: 0.1, Out: &second}); err != nil {
		t.Fatalf("%v\n%s", err, second.String())
	}
	if !strings.Contains(second.String(), "restarted on the demo network already in that folder") {
		t.Fatalf("second demo does not say it restarted:\n%s", second.String())
	}
	if got := exportedOf(t, second.String(), "hillcrest"); got != before+1 {
		t.Fatalf("second demo exported %d hillcrest records, want %d (the %d of the first and the one added)\n%s", got, before+1, before, second.String())
	}
	tok2, _ := os.ReadFile(filepath.Join(dir, "secrets", "hillcrest.token"))
	key2, _ := os.ReadFile(filepath.Join(dir, "secrets", "pseudonym.key"))
	if !bytes.Equal(tok, tok2) || !bytes.Equal(key, key2) {
		t.Fatal("the restart changed the site's token or the pseudonym key")
	}
}

func exportedOf(t *testing.T, out, site string) int {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + site + `\s+exported\s+\S+\s+(\d+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no exported count for %s in:\n%s", site, out)
	}
	n := 0
	for _, c := range m[1] {
		n = n*10 + int(c-'0')
	}
	return n
}

// The demo's fault admin API drives the simulator, and DELETE /faults
// clears the faults without turning on REDCap's IP ban the demo's network
// (no rate limit) would trip.
func TestTheDemosFaultAdminAPI(t *testing.T) {
	simd, err := startSimulated(nil, simOptions{dir: t.TempDir(), scale: 0.05, admin: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer simd.close()
	tok, err := os.ReadFile(filepath.Join(simd.setup.Dir, "secrets", "riverside.token"))
	if err != nil {
		t.Fatal(err)
	}
	call := func() int {
		resp, err := http.PostForm(simd.setup.SimURL, url.Values{"token": {strings.TrimSpace(string(tok))}, "content": {"version"}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	admin := func(method, body string) {
		req, _ := http.NewRequest(method, simd.adminURL, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode >= 300 {
			t.Fatalf("%s %s: HTTP %d", method, simd.adminURL, resp.StatusCode)
		}
	}
	admin(http.MethodPut, `{"error_rate":1,"error_statuses":[503]}`)
	if got := call(); got != http.StatusServiceUnavailable {
		t.Fatalf("with error_rate 1: HTTP %d, want 503", got)
	}
	admin(http.MethodDelete, "")
	for i := 0; i < 700; i++ { // over REDCap's 600 calls a minute
		if got := call(); got != http.StatusOK {
			t.Fatalf("call %d after DELETE /faults: HTTP %d, want 200 (no faults, no IP ban)", i+1, got)
		}
	}
}
