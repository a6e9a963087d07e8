package report

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/protocol"
)

func drop(m *messages.MetadataSnapshot, names ...string) {
	var keep []messages.Field
	for _, f := range m.Fields {
		skip := false
		for _, n := range names {
			if f.FieldName == n {
				skip = true
			}
		}
		if !skip {
			keep = append(keep, f)
		}
	}
	m.Fields = keep
}

func network(t *testing.T) (*protocol.Protocol, []*messages.ProtocolReport) {
	p, err := protocol.HEALAdult()
	if err != nil {
		t.Fatal(err)
	}
	a := protocol.SiteSnapshot(p, "site-a")
	b := protocol.SiteSnapshot(p, "site-b")
	drop(b, "phq_down", "pegenjoylifescl")
	rows := []messages.Row{
		{"record_id": "1", "redcap_event_name": "baseline_arm_1", "phq2_complete": "2", "phq_interest": "1", "phq_down": ""},
		{"record_id": "2", "redcap_event_name": "baseline_arm_1", "phq2_complete": "0", "phq_interest": "", "phq_down": ""},
		{"record_id": "3", "redcap_event_name": "baseline_arm_1", "phq2_complete": ""},
	}
	ra := protocol.Check(p, "site-a", a, rows)
	rb := protocol.Check(p, "site-b", b, nil)
	rc := protocol.Failed(p, "site-c", errorString("site site-c: export metadata: 403 Forbidden: the token has no API export rights to the project design"))
	return p, []*messages.ProtocolReport{ra, rb, rc}
}

type errorString string

func (e errorString) Error() string { return string(e) }

func TestWriteAndChanges(t *testing.T) {
	p, rs := network(t)
	dir := t.TempDir()
	if err := Write(dir, rs...); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"site-a.json", "site-a.csv", "site-b.json", "site-b.csv", "site-c.json", "site-c.csv", "index.html"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Error(err)
		}
	}
	// JSON round-trips into the message contract
	b, _ := os.ReadFile(filepath.Join(dir, "site-b.json"))
	var back messages.ProtocolReport
	if err := json.Unmarshal(b, &back); err != nil || back.Site != "site-b" || back.Status != messages.ProtocolDeviations || back.Errors != 2 {
		t.Fatalf("%v %+v", err, back)
	}
	// CSV parses with a fixed header
	cf, _ := os.Open(filepath.Join(dir, "site-a.csv"))
	recs, err := csv.NewReader(cf).ReadAll()
	cf.Close()
	if err != nil || strings.Join(recs[0], ",") != strings.Join(CSVHeader, ",") {
		t.Fatalf("%v %v", err, recs[0])
	}
	sections := map[string]int{}
	for _, r := range recs[1:] {
		sections[r[1]]++
	}
	if sections["site"] != 1 || sections["instrument"] != 12 || sections["completion"] == 0 || sections["item"] == 0 {
		t.Errorf("sections %v", sections)
	}

	// next check: site-b removed another field, restored phq_down
	m := protocol.SiteSnapshot(p, "site-b")
	drop(m, "pegenjoylifescl", "gad2feelnervscl")
	time.Sleep(10 * time.Millisecond)
	rb := protocol.Check(p, "site-b", m, nil)
	if err := Write(dir, rb); err != nil {
		t.Fatal(err)
	}
	var msgs []string
	for _, c := range rb.Changes {
		msgs = append(msgs, c.Kind+": "+c.Message)
	}
	joined := strings.Join(msgs, "\n")
	t.Log(joined)
	for _, want := range []string{
		"field_removed: site site-b removed field gad2feelnervscl from form gad2 since the last check",
		"field_added: site site-b added field phq_down to form phq2 since the last check",
	} {
		if !strings.Contains(joined, want) {
			t.Errorf("changes lack %q", want)
		}
	}
	if strings.Contains(joined, "pegenjoylifescl") {
		t.Error("an unchanged deviation is reported as a change")
	}
	if rb.PreviousCheckedAt == nil {
		t.Error("no previous check time")
	}
	html, _ := os.ReadFile(filepath.Join(dir, "index.html"))
	if !bytes.Contains(html, []byte("removed field gad2feelnervscl")) || bytes.Contains(html, []byte("<script")) {
		t.Error("index.html lacks the change view or has a script")
	}
}

func TestCSVDefusesFormulas(t *testing.T) {
	r := &messages.ProtocolReport{Site: "x", Findings: []messages.ProtocolFinding{{Kind: "label_differs", Actual: "=HYPERLINK(\"http://evil\")", Message: "m"}}}
	var b bytes.Buffer
	if err := CSV(&b, r); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `'=HYPERLINK`) {
		t.Fatal(b.String())
	}
}

// TestHTMLInChromium renders the page in a real headless browser, keeps a
// screenshot, and reads the summary table back from the browser's DOM.
func TestHTMLInChromium(t *testing.T) {
	bin := ""
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless_shell"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		t.Skip("chromium not installed (apt-get install -y chromium): skipping the browser rendering test")
	}
	_, rs := network(t)
	dir := t.TempDir()
	if err := Write(dir, rs...); err != nil {
		t.Fatal(err)
	}
	art := os.Getenv("RELAY_ARTIFACTS")
	if art == "" {
		art = t.TempDir()
	}
	if err := os.MkdirAll(art, 0o755); err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(art, "protocol-report.png")
	page := "file://" + filepath.Join(dir, "index.html")
	profile := t.TempDir()
	run := func(args ...string) []byte {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run", "--user-data-dir=" + profile}
		cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("chromium %v: %v\n%s", args, err, errb.String())
		}
		return out.Bytes()
	}
	run("--screenshot="+shot, "--window-size=1280,2000", "--hide-scrollbars", page)
	st, err := os.Stat(shot)
	if err != nil || st.Size() < 10000 {
		t.Fatalf("screenshot %s: %v", shot, err)
	}
	t.Logf("screenshot: %s (%d bytes)", shot, st.Size())
	dom := run("--dump-dom", page)
	rowRe := regexp.MustCompile(`(?s)<tr class="site-row"[^>]*>.*?<td class="site"><a [^>]*>([^<]+)</a>.*?<td class="status ([a-z]+)">.*?<td class="num score">([^<]+)</td>`)
	got := map[string]string{}
	for _, m := range rowRe.FindAllStringSubmatch(string(dom), -1) {
		got[m[1]] = m[2] + " " + m[3]
	}
	want := map[string]string{}
	for _, r := range rs {
		want[r.Site] = r.Status + " " + scoreText(r)
	}
	if len(got) != 3 {
		t.Fatalf("summary rows in the browser DOM: %v", got)
	}
	for s, w := range want {
		if got[s] != w {
			t.Errorf("site %s: browser shows %q, want %q", s, got[s], w)
		}
	}
	if want["site-a"] != "conformant 100.0" || want["site-c"] != "error n/a" {
		t.Errorf("unexpected reports: %v", want)
	}
	t.Logf("summary as rendered: %v", got)
}
