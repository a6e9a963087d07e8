package redcapsim

import (
	"bytes"
	"crypto/rand"
	"io"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redcap-relay/relay/messages"
)

// upload posts a multipart content=file import.
func upload(t *testing.T, u string, kv []string, name string, content []byte) (int, string) {
	t.Helper()
	var b bytes.Buffer
	mw := multipart.NewWriter(&b)
	for i := 0; i+1 < len(kv); i += 2 {
		mw.WriteField(kv[i], kv[i+1])
	}
	if name != "" {
		fw, _ := mw.CreateFormFile("file", name)
		fw.Write(content)
	}
	mw.Close()
	resp, err := http.Post(u, mw.FormDataContentType(), &b)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

func filesSpec() ProjectSpec {
	f := func(name, form, typ, val string) messages.Field {
		return messages.Field{FieldName: name, FormName: form, FieldType: typ, FieldLabel: name, TextValidationTypeOrShowSlider: val}
	}
	return ProjectSpec{Title: "files",
		Fields: []messages.Field{f("rid", "consent", "text", ""), f("consent_pdf", "consent", "file", ""), f("sig", "consent", "file", "signature"),
			f("scan", "crf", "file", ""), f("weight", "crf", "text", "integer")},
		Events: []messages.Event{{EventName: "Baseline", UniqueEventName: "baseline_arm_1"}, {EventName: "Week 4", UniqueEventName: "week_4_arm_1"}},
		FormEventMapping: []messages.FormEvent{{UniqueEventName: "baseline_arm_1", Form: "consent"}, {UniqueEventName: "baseline_arm_1", Form: "crf"},
			{UniqueEventName: "week_4_arm_1", Form: "crf"}},
		Repeating: []messages.RepeatingForm{{EventName: "week_4_arm_1", FormName: "crf"}},
	}
}

func TestFileExportImportDelete(t *testing.T) {
	for _, dir := range []string{"", t.TempDir()} {
		name := "memory"
		if dir != "" {
			name = "data dir"
		}
		t.Run(name, func(t *testing.T) { testFiles(t, dir) })
	}
}

func testFiles(t *testing.T, dataDir string) {
	now := time.Date(2025, 6, 1, 8, 0, 0, 0, time.UTC)
	s, u := startSim(t, Options{DataDir: dataDir, MaxFileMB: 1, Now: func() time.Time { return now }})
	pid, err := s.CreateProject(filesSpec())
	if err != nil {
		t.Fatal(err)
	}
	s.AddToken(pid, testToken, FullRights(), "")
	e := &simEnv{t: t, s: s, url: u, pid: pid}
	if err := s.ImportRows(pid, []messages.Row{{"rid": "1", "redcap_event_name": "baseline_arm_1", "weight": "70"},
		{"rid": "1", "redcap_event_name": "week_4_arm_1", "redcap_repeat_instrument": "crf", "redcap_repeat_instance": "2", "weight": "71"}}, false); err != nil {
		t.Fatal(err)
	}
	pdf := []byte("%PDF-1.4 consent of record 1")
	base := []string{"token", testToken, "content", "file", "action", "import", "record", "1", "field", "consent_pdf", "event", "baseline_arm_1", "returnFormat", "json"}
	if code, body := upload(t, u, base, "consent form.pdf", pdf); code != 200 || body != "" {
		t.Fatalf("import: %d %q", code, body)
	}
	scan := make([]byte, 300<<10)
	rand.Read(scan)
	inst := []string{"token", testToken, "content", "file", "action", "import", "record", "1", "field", "scan", "event", "week_4_arm_1", "repeat_instance", "2"}
	if code, body := upload(t, u, inst, "scan.bin", scan); code != 200 {
		t.Fatalf("import instance 2: %d %s", code, body)
	}
	// Export: the bytes, the MIME type and name in Content-Type.
	resp, err := http.PostForm(u, form("token", testToken, "content", "file", "action", "export", "record", "1", "field", "consent_pdf", "event", "baseline_arm_1"))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(got, pdf) || resp.Header.Get("Content-Type") != `application/pdf; name="consent form.pdf"` {
		t.Fatalf("export: %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), got)
	}
	code, body := e.call("content", "file", "action", "export", "record", "1", "field", "scan", "event", "week_4_arm_1", "repeat_instance", "2")
	if code != 200 || body != string(scan) {
		t.Fatalf("instance 2 export: %d, %d bytes", code, len(body))
	}
	if code, body := e.call("content", "file", "action", "export", "record", "1", "field", "scan", "event", "week_4_arm_1", "repeat_instance", "1", "returnFormat", "json"); code != 400 || body != `{"error":"There is no file to download for this record"}` {
		t.Fatalf("instance 1 has none: %d %s", code, body)
	}
	// The flat export names the file; EAV gives the doc_id.
	_, body = e.call("content", "record", "format", "json", "fields", "rid,consent_pdf", "events", "baseline_arm_1")
	if !strings.Contains(body, `"consent_pdf":"consent form.pdf"`) {
		t.Fatalf("flat: %s", body)
	}
	_, body = e.call("content", "record", "format", "json", "type", "eav", "fields", "consent_pdf")
	if !strings.Contains(body, `"field_name":"consent_pdf","value":"1"`) {
		t.Fatalf("eav: %s", body)
	}
	// Errors, each with REDCap's text, and nothing changed.
	for _, c := range []struct {
		kv   []string
		file string
		code int
		text string
	}{
		{[]string{"action", "import", "record", "1", "field", "consent_pdf", "event", "baseline_arm_1"}, "", 400, "No valid file was uploaded"},
		{[]string{"action", "import", "record", "1", "field", "consent_pdf"}, "a.txt", 400, "invalid event"},
		{[]string{"action", "import", "record", "9", "field", "consent_pdf", "event", "baseline_arm_1"}, "a.txt", 400, `The record \"9\" does not exist`},
		{[]string{"action", "import", "record", "1", "field", "weight", "event", "baseline_arm_1"}, "a.txt", 400, "The field 'weight' does not exist or is not a 'file' field"},
		{[]string{"action", "import", "record", "1", "field", "nope", "event", "baseline_arm_1"}, "a.txt", 400, "The field 'nope' does not exist or is not a 'file' field"},
		{[]string{"action", "import", "record", "1", "field", "sig", "event", "baseline_arm_1"}, "a.png", 400, "signature"},
		{[]string{"action", "import", "record", "1", "field", "consent_pdf", "event", "week_4_arm_1"}, "a.txt", 400, "not designated"},
		{[]string{"action", "import", "record", "1", "field", "consent_pdf", "event", "baseline_arm_1"}, "big.bin", 400, "The uploaded file exceeded the maximum file size limit of 1 MB"},
		{[]string{"action", "delete", "record", "1", "field", "scan", "event", "baseline_arm_1"}, "", 400, "There is no file to delete for this record"},
	} {
		content := []byte("x")
		if c.file == "big.bin" {
			content = make([]byte, 1<<20+1)
		}
		kv := append([]string{"token", testToken, "content", "file", "returnFormat", "json"}, c.kv...)
		code, body := upload(t, u, kv, c.file, content)
		if code != c.code || !strings.Contains(body, c.text) {
			t.Errorf("%v: %d %s", c.kv, code, body)
		}
	}
	if _, body = e.call("content", "file", "action", "export", "record", "1", "field", "consent_pdf", "event", "baseline_arm_1"); body != string(pdf) {
		t.Fatal("a refused upload replaced the file")
	}
	// Replacing keeps one file; dateRangeBegin sees the upload.
	now = now.Add(time.Hour)
	if code, _ := upload(t, u, base, "v2.pdf", []byte("%PDF v2")); code != 200 {
		t.Fatal(code)
	}
	if _, body = e.call("content", "record", "format", "csv", "fields", "rid", "dateRangeBegin", "2025-06-01 08:30:00"); !strings.Contains(body, "\n1,") {
		t.Fatalf("dateRangeBegin misses the upload: %s", body)
	}
	_, body = e.call("content", "log", "format", "json", "record", "1")
	if !strings.Contains(body, `"action":"Upload document (API) 1"`) || !strings.Contains(body, `"action":"Download file (API)"`) {
		t.Fatalf("log: %s", body)
	}
	// Delete: the cell empties, the record stays.
	if code, body := e.call("content", "file", "action", "delete", "record", "1", "field", "scan", "event", "week_4_arm_1", "repeat_instance", "2"); code != 200 || body != "" {
		t.Fatalf("delete: %d %s", code, body)
	}
	// A restart keeps the files and their cells.
	if dataDir == "" {
		return
	}
	s.Close()
	s2, err := New(Options{DataDir: dataDir})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	u2, _ := s2.Listen("127.0.0.1:0")
	e2 := &simEnv{t: t, s: s2, url: u2, pid: pid}
	if _, body = e2.call("content", "file", "action", "export", "record", "1", "field", "consent_pdf", "event", "baseline_arm_1"); body != "%PDF v2" {
		t.Fatalf("after restart: %q", body)
	}
	if code, _ := e2.call("content", "file", "action", "export", "record", "1", "field", "scan", "event", "week_4_arm_1", "repeat_instance", "2"); code != 400 {
		t.Fatal("the deleted file came back")
	}
}

func TestFileRights(t *testing.T) {
	s, u := startSim(t, Options{})
	pid, _ := s.CreateProject(filesSpec())
	s.AddToken(pid, testToken, FullRights(), "")
	s.ImportRows(pid, []messages.Row{{"rid": "1", "redcap_event_name": "baseline_arm_1"}}, false)
	ro := "99999999999999999999999999999999"
	s.AddToken(pid, ro, Rights{Export: true}, "")
	if code, body := upload(t, u, []string{"token", ro, "content", "file", "action", "import", "record", "1", "field", "consent_pdf", "event", "baseline_arm_1"}, "a.pdf", []byte("x")); code != 403 || !strings.Contains(body, "API Import/Update") {
		t.Fatalf("import without the right: %d %s", code, body)
	}
	noExp := "88888888888888888888888888888888"
	s.AddToken(pid, noExp, Rights{Export: true, FormExport: map[string]int{"consent": 0}}, "")
	e := &simEnv{t: t, s: s, url: u, pid: pid}
	if code, body := e.callTok(noExp, "content", "file", "action", "export", "record", "1", "field", "consent_pdf", "event", "baseline_arm_1"); code != 403 || !strings.Contains(body, "No Access") {
		t.Fatalf("no export rights: %d %s", code, body)
	}
}
