package redcapsim

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
)

func pdfCall(t *testing.T, e *simEnv, tok string, kv ...string) (int, string, []byte) {
	t.Helper()
	f := form(append([]string{"token", tok, "content", "pdf"}, kv...)...)
	resp, err := http.PostForm(e.url, f)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), b
}

// pages counts page objects; texts lists the text drawn.
func pages(b []byte) int { return bytes.Count(b, []byte("/Type /Page ")) }

func TestExportPDF(t *testing.T) {
	e := loadFixture(t, "simple")
	code, ctype, blank := pdfCall(t, e, testToken)
	if code != 200 || !strings.HasPrefix(ctype, "application/pdf") || !bytes.HasPrefix(blank, []byte("%PDF-1.4")) || pages(blank) != 3 {
		t.Fatalf("blank: %d %s %d pages", code, ctype, pages(blank))
	}
	_, _, one := pdfCall(t, e, testToken, "instrument", "health")
	if pages(one) != 1 || !bytes.Contains(one, []byte("(health)")) {
		t.Fatalf("one blank instrument: %d pages", pages(one))
	}
	_, _, rec := pdfCall(t, e, testToken, "record", "1")
	if pages(rec) != 3 || !bytes.Contains(rec, []byte("Nutmeg")) || !bytes.Contains(rec, []byte("Female")) {
		t.Fatalf("record 1: %d pages\n%s", pages(rec), rec)
	}
	_, _, all := pdfCall(t, e, testToken, "allRecords", "")
	if pages(all) != 15 {
		t.Fatalf("all records: %d pages", pages(all))
	}
	for _, c := range []struct {
		kv   []string
		text string
	}{
		{[]string{"record", "99"}, `The record \"99\" does not exist`},
		{[]string{"instrument", "nope"}, "Invalid instrument"},
	} {
		code, _, body := pdfCall(t, e, testToken, append(c.kv, "returnFormat", "json")...)
		if code != 400 || !strings.Contains(string(body), c.text) {
			t.Errorf("%v: %d %s", c.kv, code, body)
		}
	}
	// De-identified rights leave identifiers and free text out.
	deid := "18181818181818181818181818181818"
	e.s.AddToken(e.pid, deid, Rights{Export: true, FormExport: map[string]int{"demographics": exportDeident}}, "")
	if _, _, d := pdfCall(t, e, deid, "record", "1", "instrument", "demographics"); bytes.Contains(d, []byte("Nutmeg")) || pages(d) != 1 {
		t.Fatalf("de-identified PDF shows names")
	}
	none := "19191919191919191919191919191919"
	e.s.AddToken(e.pid, none, Rights{Export: true, FormExport: map[string]int{"demographics": 0, "health": 0, "race_and_ethnicity": 0}}, "")
	if code, _, body := pdfCall(t, e, none); code != 403 || !strings.Contains(string(body), "No Access") {
		t.Fatalf("no access: %d %s", code, body)
	}
}
