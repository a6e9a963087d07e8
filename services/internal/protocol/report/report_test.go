package report

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
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
	bin := chromium(t)
	_, rs := network(t)
	dir := t.TempDir()
	if err := Write(dir, rs...); err != nil {
		t.Fatal(err)
	}
	art := artifacts(t)
	shot := filepath.Join(art, "protocol-report.png")
	page := "file://" + filepath.Join(dir, "index.html")
	run := func(args ...string) []byte { return runChromium(t, bin, args...) }
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

// forwardedSite is a site report with something in every table: changes,
// instruments (one incomplete, one substituted), deviations, warnings with
// identifiers not flagged, notes, completion and item missingness.
func forwardedSite(t *testing.T, p *protocol.Protocol) *messages.MetadataSnapshot {
	m := protocol.SiteSnapshot(p, "site-d")
	drop(m, "phq_down", "pegenjoylifescl", "sd6a_sleep72")
	for _, f := range []messages.Field{
		{FieldName: "first_name", FieldType: "text", FieldLabel: "First name"},
		{FieldName: "email", FieldType: "text", FieldLabel: "E-mail", TextValidationTypeOrShowSlider: "email"},
		{FieldName: "home_phone", FieldType: "text", FieldLabel: "Phone", TextValidationTypeOrShowSlider: "phone"},
		{FieldName: "zip", FieldType: "text", FieldLabel: "ZIP", TextValidationTypeOrShowSlider: "zipcode"},
		{FieldName: "enroll_date", FieldType: "text", FieldLabel: "Enrolled", TextValidationTypeOrShowSlider: "date_ymd"},
	} {
		f.FormName = "demographics"
		m.Fields = append(m.Fields, f)
	}
	return m
}

// artifacts is where screenshots and PDFs are kept ($RELAY_ARTIFACTS).
func artifacts(t *testing.T) string {
	art := os.Getenv("RELAY_ARTIFACTS")
	if art == "" {
		art = t.TempDir()
	}
	if err := os.MkdirAll(art, 0o755); err != nil {
		t.Fatal(err)
	}
	return art
}

func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless_shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Skip("chromium not installed (apt-get install -y chromium): skipping the browser rendering test")
	return ""
}

func runChromium(t *testing.T, bin string, args ...string) []byte {
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

var (
	tableRe = regexp.MustCompile(`(?s)<table.*?</table>`)
	objRe   = regexp.MustCompile(`(?s)(\d+) 0 obj(.*?)endobj`)
	refRe   = regexp.MustCompile(`(\d+) 0 R`)
	uriRe   = regexp.MustCompile(`/URI \(https://relay\.invalid/(t\d+[se])\)`)
)

// markTables puts a tiny link into the first header cell and the last cell
// of every table; in the PDF each link is an annotation on the page it is
// printed on, so a table whose two marks are on one page is not cut.
func markTables(html []byte) ([]byte, int) {
	n := 0
	out := tableRe.ReplaceAllFunc(html, func(tb []byte) []byte {
		s := string(tb)
		i := strings.Index(s, "<th")
		j := strings.Index(s[i:], ">") + i + 1
		s = s[:j] + fmt.Sprintf(`<a href="https://relay.invalid/t%ds">·</a>`, n) + s[j:]
		k := strings.LastIndex(s, "</td>")
		s = s[:k] + fmt.Sprintf(`<a href="https://relay.invalid/t%de">·</a>`, n) + s[k:]
		n++
		return []byte(s)
	})
	return out, n
}

// pdfMarks reads which page each mark is on, pages in document order.
func pdfMarks(t *testing.T, pdf []byte) (pages int, onPage map[string]int) {
	objs := map[string]string{}
	for _, m := range objRe.FindAllSubmatch(pdf, -1) {
		objs[string(m[1])] = string(m[2])
	}
	var kids []string
	for _, body := range objs {
		if strings.Contains(body, "/Type /Pages") {
			i := strings.Index(body, "/Kids [")
			for _, r := range refRe.FindAllStringSubmatch(body[i:strings.Index(body[i:], "]")+i], -1) {
				kids = append(kids, r[1])
			}
		}
	}
	onPage = map[string]int{}
	for n, id := range kids {
		body := objs[id]
		if !strings.Contains(body, "/Type /Page") {
			t.Fatalf("page %d (object %s) is not a page: nested page trees are not read", n+1, id)
		}
		if i := strings.Index(body, "/Annots ["); i >= 0 {
			for _, r := range refRe.FindAllStringSubmatch(body[i:strings.Index(body[i:], "]")+i], -1) {
				if m := uriRe.FindStringSubmatch(objs[r[1]]); m != nil {
					onPage[m[1]] = n + 1
				}
			}
		}
	}
	return len(kids), onPage
}

// TestSitePageForwardsAndPrints: a site's own page holds that site alone,
// in plain words, and printed to PDF by a real Chromium no table is cut
// across pages.
func TestSitePageForwardsAndPrints(t *testing.T) {
	p, rs := network(t)
	dir := t.TempDir()
	ny, _ := time.LoadLocation("America/New_York")
	if err := WriteWith(dir, Options{Location: ny}, rs...); err != nil {
		t.Fatal(err)
	}
	// the site's second check, with changes
	rows := []messages.Row{}
	for i := 1; i <= 40; i++ {
		for _, ev := range []string{"baseline_arm_1", "month_3_arm_1", "month_6_arm_1", "month_12_arm_1"} {
			st := []string{"2", "2", "1", "0", ""}[i%5]
			rows = append(rows, messages.Row{"record_id": fmt.Sprint(i), "redcap_event_name": ev, "phq2_complete": st, "peg_complete": st, "demographics_complete": "2", "phq_interest": map[bool]string{true: "", false: "1"}[i%4 == 0]})
		}
	}
	if err := WriteWith(dir, Options{Location: ny}, protocol.Check(p, "site-d", forwardedSite(t, p), nil)); err != nil {
		t.Fatal(err)
	}
	m := forwardedSite(t, p)
	drop(m, "gad2feelnervscl")
	r := protocol.Check(p, "site-d", m, rows)
	if err := WriteWith(dir, Options{Location: ny}, r); err != nil {
		t.Fatal(err)
	}
	page, err := os.ReadFile(filepath.Join(dir, "site-d.html"))
	if err != nil {
		t.Fatal(err)
	}
	s := string(page)
	for _, want := range []string{
		"Item missing", "field_missing", // plain words first, the code second
		"Feeling down, depressed, or hopeless", // a missing item's wording from the library
		`class="status incomplete">incomplete`, // items missing: incomplete, not present
		"80% or more complete",                 // the completion legend
		"EST", "America/New_York",              // times in the network's zone
		"Identifier not flagged", "first_name (names)", "email (email)", // one line for the identifiers
		"Changes since the last check",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("site page lacks %q", want)
		}
	}
	if n := strings.Count(s, "phi_not_flagged"); n != 2 { // one line for the warnings, one for the dates note
		t.Errorf("identifier findings shown on %d lines", n)
	}
	for _, other := range []string{"site-a", "site-b", "site-c"} {
		if strings.Contains(s, other) {
			t.Errorf("site-d's page mentions %s", other)
		}
	}
	if strings.Contains(s, r.MetadataHash[:12]) || regexp.MustCompile(`(?i)run[ _]id|metadata <code>`).MatchString(s) {
		t.Error("the page shows a run ID or a hash")
	}
	// the completion table names events as the instrument table does
	if !strings.Contains(s, `<th class="num">month_3<span class="code">month_3_arm_1</span></th>`) || !strings.Contains(s, "✓ month_3") {
		t.Error("event names differ between tables")
	}
	index, _ := os.ReadFile(filepath.Join(dir, "index.html"))
	if !bytes.Contains(index, []byte(`href="site-d.html"`)) || bytes.Contains(index, []byte("Feeling down, depressed")) {
		t.Error("the index does not link the site page, or holds a site's findings")
	}

	bin := chromium(t)
	marked, tables := markTables(page)
	mp := filepath.Join(dir, "marked.html")
	os.WriteFile(mp, marked, 0o644)
	art := artifacts(t)
	pdfPath := filepath.Join(art, "protocol-site-page.pdf")
	runChromium(t, bin, "--no-pdf-header-footer", "--print-to-pdf="+pdfPath, "file://"+mp)
	pdf, err := os.ReadFile(pdfPath)
	if err != nil {
		t.Fatal(err)
	}
	pages, on := pdfMarks(t, pdf)
	t.Logf("%d tables on %d pages: %v (PDF %s)", tables, pages, on, pdfPath)
	if tables < 5 || pages < 2 {
		t.Fatalf("%d tables, %d pages: the test page is too small to prove anything", tables, pages)
	}
	last := 0
	for i := 0; i < tables; i++ {
		st, end := on[fmt.Sprintf("t%ds", i)], on[fmt.Sprintf("t%de", i)]
		if st == 0 || end == 0 {
			t.Errorf("table %d: marks not found in the PDF (start page %d, end page %d)", i, st, end)
			continue
		}
		if st != end {
			t.Errorf("table %d is cut: starts on page %d, ends on page %d", i, st, end)
		}
		last = max(last, end)
	}
	if pages > last+1 {
		t.Errorf("%d pages for tables that end on page %d: blank pages", pages, last)
	}
	shot := filepath.Join(art, "protocol-site-page.png")
	runChromium(t, bin, "--screenshot="+shot, "--window-size=1280,2400", "--hide-scrollbars", "file://"+filepath.Join(dir, "site-d.html"))
	if st, err := os.Stat(shot); err != nil || st.Size() < 10000 {
		t.Errorf("screenshot %s: %v", shot, err)
	}
}
