package pdf

import (
	"bytes"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestWriteIsAValidPDF checks what a reader needs: the header, one page
// object per page, a cross-reference table whose offsets point at the
// objects, and the trailer.
func TestWriteIsAValidPDF(t *testing.T) {
	lines := make([]string, 120)
	for i := range lines {
		lines[i] = "Field (" + strconv.Itoa(i) + ") \\ café ∑"
	}
	pages := append(Split("Demographics", lines), Page{Heading: "Health"})
	var b bytes.Buffer
	if err := Write(&b, "Project (1)", pages); err != nil {
		t.Fatal(err)
	}
	out := b.Bytes()
	if !bytes.HasPrefix(out, []byte("%PDF-1.4\n")) || !bytes.HasSuffix(out, []byte("%%EOF\n")) {
		t.Fatal("header or trailer missing")
	}
	if n := bytes.Count(out, []byte("/Type /Page ")); n != len(pages) || len(pages) < 3 {
		t.Fatalf("%d page objects for %d pages", n, len(pages))
	}
	m := regexp.MustCompile(`startxref\n(\d+)\n`).FindSubmatch(out)
	if m == nil {
		t.Fatal("no startxref")
	}
	xref, _ := strconv.Atoi(string(m[1]))
	if !bytes.HasPrefix(out[xref:], []byte("xref\n")) {
		t.Fatal("startxref does not point at the xref table")
	}
	entries := regexp.MustCompile(`(\d{10}) 00000 n `).FindAllSubmatch(out[xref:], -1)
	for i, e := range entries {
		off, _ := strconv.Atoi(string(e[1]))
		if want := strconv.Itoa(i+1) + " 0 obj"; !bytes.HasPrefix(out[off:], []byte(want)) {
			t.Fatalf("xref entry %d points at %q", i+1, out[off:off+10])
		}
	}
	// Stream lengths are exact.
	for _, s := range regexp.MustCompile(`(?s)<< /Length (\d+) >>\nstream\n(.*?)\nendstream`).FindAllSubmatch(out, -1) {
		if n, _ := strconv.Atoi(string(s[1])); n != len(s[2]) {
			t.Fatalf("stream length %d, content %d", n, len(s[2]))
		}
	}
	if !strings.Contains(string(out), `(Field \(0\) \\ caf\351 ?) Tj`) {
		t.Fatal("text not escaped")
	}
}
