package simrun

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/redcap"
	"github.com/redcap-relay/relay/services/internal/tools/redcapsim/faults"
)

const metadataCSV = `field_name,form_name,section_header,field_type,field_label,select_choices_or_calculations,field_note,text_validation_type_or_show_slider_number,text_validation_min,text_validation_max,identifier,branching_logic,required_field,custom_alignment,question_number,matrix_group_name,matrix_ranking,field_annotation
record_id,form_1,,text,Record ID,,,,,,,,,,,,,
age,form_1,,text,Age,,,integer,,,,,,,,,,
`

// writeProjects makes two project folders: one with its own tokens.csv,
// one without.
func writeProjects(t *testing.T) string {
	dir := t.TempDir()
	for _, name := range []string{"alpha", "beta"} {
		p := filepath.Join(dir, name)
		os.MkdirAll(p, 0o755)
		os.WriteFile(filepath.Join(p, "metadata.csv"), []byte(metadataCSV), 0o644)
	}
	os.WriteFile(filepath.Join(dir, "alpha", "data.csv"), []byte("record_id,age\n1,30\n2,41\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "alpha", "tokens.csv"), []byte("token,rights\nABCDEF0123456789ABCDEF0123456789,all\n"), 0o644)
	os.MkdirAll(filepath.Join(dir, "not-a-project"), 0o755)
	return dir
}

type lockedBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuf) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

func start(t *testing.T, o Options) (api, admin string, out *lockedBuf, stop func()) {
	t.Helper()
	out = &lockedBuf{}
	o.Out = out
	o.Listen = "127.0.0.1:0"
	if o.Admin == "" {
		o.Admin = "127.0.0.1:0"
	}
	ready := make(chan [2]string, 1)
	o.Ready = func(a, b string) { ready <- [2]string{a, b} }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Run(ctx, o) }()
	select {
	case u := <-ready:
		return u[0], u[1], out, func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		}
	case err := <-done:
		cancel()
		t.Fatalf("Run: %v", err)
	case <-time.After(20 * time.Second):
		cancel()
		t.Fatal("not ready")
	}
	return
}

func TestRunServesProjectsAndFaults(t *testing.T) {
	projects := writeProjects(t)
	data := t.TempDir()
	api, admin, out, stop := start(t, Options{ProjectsDir: projects, DataDir: data, IssueTokens: true,
		Faults: faults.Faults{Latency: faults.Duration(time.Millisecond)}})

	text := out.String()
	t.Log("\n" + text)
	issued := IssuedToken("beta")
	for _, want := range []string{api, admin, "(folder alpha)", "ABCDEF0123456789ABCDEF0123456789", "(folder beta)", issued, "issued by relay sim", `"latency":"1ms"`} {
		if !strings.Contains(text, want) {
			t.Errorf("output lacks %q:\n%s", want, text)
		}
	}
	alpha, _ := redcap.New(redcap.Options{Site: "alpha", URL: api, Token: "ABCDEF0123456789ABCDEF0123456789", CallsPerMinute: -1})
	ids, err := alpha.ExportRecordIDs(context.Background(), "record_id", time.Time{})
	if err != nil || strings.Join(ids, ",") != "1,2" {
		t.Fatalf("alpha ids %v %v", ids, err)
	}
	beta, _ := redcap.New(redcap.Options{Site: "beta", URL: api, Token: issued, CallsPerMinute: -1})
	if _, err := beta.ImportRecords(context.Background(), nil, redcap.ImportParams{}); err != nil {
		t.Fatal(err)
	}
	if _, err := beta.ExportMetadata(context.Background()); err != nil {
		t.Fatal(err)
	}

	// the admin API turns faults on and off at run time
	req, _ := http.NewRequest(http.MethodPut, admin, strings.NewReader(`{"error_rate":1,"error_statuses":[503]}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("admin put: %v %v", resp, err)
	}
	resp.Body.Close()
	_, err = alpha.ExportVersion(context.Background())
	var re *redcap.Error
	if !errors.As(err, &re) || re.Status != 503 || !redcap.IsTransient(err) {
		t.Fatalf("fault not applied: %v", err)
	}
	req, _ = http.NewRequest(http.MethodDelete, admin, nil)
	resp, _ = http.DefaultClient.Do(req)
	resp.Body.Close()
	if _, err := alpha.ExportVersion(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := alpha.ImportRecords(context.Background(), nil, redcap.ImportParams{}); err != nil {
		t.Fatal(err)
	}
	if _, err := alpha.ImportRecords(context.Background(), []messages.Row{{"record_id": "3", "age": "50"}}, redcap.ImportParams{}); err != nil {
		t.Fatal(err)
	}
	stop()

	// a restart reloads from the data dir without loading the folders again
	api, _, out, stop = start(t, Options{ProjectsDir: projects, DataDir: data, IssueTokens: true})
	defer stop()
	if !strings.Contains(out.String(), "--projects is ignored") || strings.Count(out.String(), "(folder ") != 2 {
		t.Fatalf("restart output:\n%s", out.String())
	}
	alpha, _ = redcap.New(redcap.Options{Site: "alpha", URL: api, Token: "ABCDEF0123456789ABCDEF0123456789", CallsPerMinute: -1})
	ids, err = alpha.ExportRecordIDs(context.Background(), "record_id", time.Time{})
	if err != nil || strings.Join(ids, ",") != "1,2,3" {
		t.Fatalf("after restart %v %v", ids, err)
	}
}

func TestRunRejectsBadInput(t *testing.T) {
	err := Run(context.Background(), Options{Listen: "127.0.0.1:0", ProjectsDir: t.TempDir(), Out: io.Discard})
	if err == nil || !strings.Contains(err.Error(), "holds no project folder") {
		t.Fatalf("empty projects dir: %v", err)
	}
	err = Run(context.Background(), Options{Listen: "127.0.0.1:0", Faults: faults.Faults{ErrorRate: 3}})
	if err == nil || !strings.Contains(err.Error(), "error_rate") {
		t.Fatalf("bad faults: %v", err)
	}
}

// TestRunKeepsBanOffAfterDelete: started with the ban off (relay sim
// --ban-threshold 0), DELETE /faults must not re-arm REDCap's IP ban; and
// the omit_records fault, set through the admin API for one project, cuts
// only that project's record-ID lists.
func TestRunKeepsBanOffAfterDelete(t *testing.T) {
	api, admin, _, stop := start(t, Options{ProjectsDir: writeProjects(t), IssueTokens: true,
		Faults: faults.Faults{BanThreshold: -1}})
	defer stop()
	req, _ := http.NewRequest(http.MethodDelete, admin, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatal(resp, err)
	}
	resp.Body.Close()
	alpha, _ := redcap.New(redcap.Options{Site: "alpha", URL: api, Token: "ABCDEF0123456789ABCDEF0123456789", CallsPerMinute: -1})
	for i := 0; i < faults.DefaultBanThreshold+10; i++ {
		if _, err := alpha.ExportVersion(context.Background()); err != nil {
			t.Fatalf("call %d after DELETE /faults: %v", i+1, err)
		}
	}
	req, _ = http.NewRequest(http.MethodPut, admin+"?project=1", strings.NewReader(`{"omit_records":1,"omit_answers":1}`))
	if resp, err = http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Fatal(resp, err)
	}
	resp.Body.Close()
	ids, err := alpha.ExportRecordIDs(context.Background(), "record_id", time.Time{})
	if err != nil || len(ids) != 1 {
		t.Fatalf("first ID list: %v %v, want one of the two records", ids, err)
	}
	if ids, err = alpha.ExportRecordIDs(context.Background(), "record_id", time.Time{}); err != nil || strings.Join(ids, ",") != "1,2" {
		t.Fatalf("second ID list: %v %v", ids, err)
	}
	rows, err := alpha.ExportRecords(context.Background(), redcap.ExportParams{})
	if err != nil || len(rows) != 2 {
		t.Fatalf("full export: %d rows %v", len(rows), err)
	}
}

// TestRunSuperToken: with a super token, clients create projects through
// content=project (the answer is exactly the new token); the token is never
// printed; a malformed one is refused at start.
func TestRunSuperToken(t *testing.T) {
	super := strings.Repeat("5A", 32)
	api, _, out, stop := start(t, Options{SuperToken: super})
	defer stop()
	if strings.Contains(out.String(), super) || !strings.Contains(out.String(), "super token:") {
		t.Fatalf("output:\n%s", out.String())
	}
	resp, err := http.PostForm(api, map[string][]string{"token": {super}, "content": {"project"}, "format": {"xml"},
		"data": {`<?xml version="1.0" encoding="UTF-8" ?><item><project_title>New</project_title><purpose>0</purpose></item>`}})
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || len(tok) != 32 {
		t.Fatalf("create: %d %q", resp.StatusCode, tok)
	}
	c, _ := redcap.New(redcap.Options{Site: "new", URL: api, Token: string(tok), CallsPerMinute: -1})
	if info, err := c.ExportProjectInfo(context.Background()); err != nil || info.ProjectTitle != "New" {
		t.Fatalf("new project: %+v %v", info, err)
	}
	err = Run(context.Background(), Options{Listen: "127.0.0.1:0", SuperToken: "short", Out: io.Discard})
	if err == nil || !strings.Contains(err.Error(), "64") {
		t.Fatalf("short super token: %v", err)
	}
}
