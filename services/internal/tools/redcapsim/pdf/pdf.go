// Package pdf writes the simple PDF files the REDCap simulator returns for
// content=pdf: pages of text lines in Helvetica, one or more pages per
// instrument. It is a PDF 1.4 writer of about a hundred lines (no fonts to
// embed, no images), enough for any PDF reader to open the file.
package pdf

import (
	"bytes"
	"fmt"
	"io"
	"strings"
)

// Page is one page: a heading and lines of text.
type Page struct {
	Heading string
	Lines   []string
}

const (
	pageW, pageH = 612, 792 // US Letter, points
	margin       = 54
	lineGap      = 14
	linesPerPage = (pageH - 2*margin - 2*lineGap) / lineGap
)

// Split turns a heading and many lines into as many pages as they need,
// each repeating the heading (continued pages say so).
func Split(heading string, lines []string) []Page {
	var out []Page
	for len(lines) > linesPerPage {
		out = append(out, Page{Heading: heading, Lines: lines[:linesPerPage]})
		lines = lines[linesPerPage:]
		heading = strings.TrimSuffix(heading, " (continued)") + " (continued)"
	}
	return append(out, Page{Heading: heading, Lines: lines})
}

// Write renders pages as a PDF document titled title.
func Write(w io.Writer, title string, pages []Page) error {
	if len(pages) == 0 {
		pages = []Page{{Heading: title}}
	}
	var b bytes.Buffer
	var offsets []int
	obj := func(body string) int {
		offsets = append(offsets, b.Len())
		n := len(offsets)
		fmt.Fprintf(&b, "%d 0 obj\n%s\nendobj\n", n, body)
		return n
	}
	b.WriteString("%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
	// Objects: 1 catalog, 2 pages, 3 font, 4 info, then per page: page, content.
	first := 5
	kids := make([]string, len(pages))
	for i := range pages {
		kids[i] = fmt.Sprintf("%d 0 R", first+2*i)
	}
	obj("<< /Type /Catalog /Pages 2 0 R >>")
	obj(fmt.Sprintf("<< /Type /Pages /Kids [%s] /Count %d >>", strings.Join(kids, " "), len(pages)))
	obj("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
	obj(fmt.Sprintf("<< /Title (%s) /Producer (REDCap Relay simulator) >>", escape(title)))
	for i, p := range pages {
		content := pageContent(title, p, i+1, len(pages))
		obj(fmt.Sprintf("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %d %d] /Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>", pageW, pageH, first+2*i+1))
		obj(fmt.Sprintf("<< /Length %d >>\nstream\n%s\nendstream", len(content), content))
	}
	xref := b.Len()
	fmt.Fprintf(&b, "xref\n0 %d\n0000000000 65535 f \n", len(offsets)+1)
	for _, off := range offsets {
		fmt.Fprintf(&b, "%010d 00000 n \n", off)
	}
	fmt.Fprintf(&b, "trailer\n<< /Size %d /Root 1 0 R /Info 4 0 R >>\nstartxref\n%d\n%%%%EOF\n", len(offsets)+1, xref)
	_, err := w.Write(b.Bytes())
	return err
}

func pageContent(title string, p Page, n, of int) string {
	var c strings.Builder
	y := pageH - margin
	line := func(size int, text string) {
		fmt.Fprintf(&c, "BT /F1 %d Tf %d %d Td (%s) Tj ET\n", size, margin, y, escape(text))
		y -= lineGap
	}
	line(9, fmt.Sprintf("%s - page %d of %d", title, n, of))
	line(14, p.Heading)
	for _, l := range p.Lines {
		line(10, l)
	}
	return strings.TrimSuffix(c.String(), "\n")
}

// escape makes text safe inside a PDF string: backslashes and parentheses
// escaped, line breaks as spaces, characters outside Latin-1 as '?',
// lines cut to fit the page.
func escape(s string) string {
	var b strings.Builder
	n := 0
	for _, r := range s {
		if n == 110 {
			b.WriteString("...")
			break
		}
		n++
		switch {
		case r == '\\' || r == '(' || r == ')':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n' || r == '\r' || r == '\t':
			b.WriteByte(' ')
		case r < 0x20:
		case r < 0x80:
			b.WriteRune(r)
		case r < 0x100:
			fmt.Fprintf(&b, "\\%03o", r)
		default:
			b.WriteByte('?')
		}
	}
	return b.String()
}
