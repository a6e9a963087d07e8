package redcapsim

import (
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"
)

const xmlHeader = `<?xml version="1.0" encoding="UTF-8" ?>`

// Default messages per status, as REDCap's error wrapper fills them in.
var defaultMessages = map[int]string{
	400: "There were errors with your request. If you are sending data, then it might be due to the data being misformatted.",
	401: "The API token was missing or incorrect",
	403: "You do not have permissions to use the API",
	404: "The requested URI was not found.",
	500: "The server encountered an error processing your request.",
	501: "The requested method is not implemented.",
}

func contentType(format string) string {
	switch format {
	case "json":
		return "application/json; charset=utf-8"
	case "csv":
		return "text/csv; charset=utf-8"
	}
	return "text/xml; charset=utf-8"
}

// apiError is an error answer: status and message, shaped by returnFormat.
type apiError struct {
	status int
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func errorf(status int, msg string) *apiError { return &apiError{status: status, msg: msg} }

func writeError(w http.ResponseWriter, returnFormat string, status int, msg string) {
	if msg == "" {
		msg = defaultMessages[status]
	}
	var body string
	switch returnFormat {
	case "json":
		if strings.HasPrefix(msg, `{"error"`) {
			body = msg
		} else {
			body = `{"error":` + phpJSONString(msg) + `}`
		}
	case "csv":
		body = "ERROR: " + msg
	default:
		returnFormat = "xml"
		body = xmlHeader + "<hash><error>" + xmlEscape(msg) + "</error></hash>"
	}
	w.Header().Set("Content-Type", contentType(returnFormat))
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

func writeBody(w http.ResponseWriter, format, body string) {
	w.Header().Set("Content-Type", contentType(format))
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write([]byte(body))
}

// phpEscapeJSON rewrites Go's JSON into PHP's default json_encode escaping:
// "/" as "\/", non-ASCII as \uXXXX, and Go's HTML escapes left as is
// (they are valid JSON either way).
func phpEscapeJSON(b []byte) []byte {
	out := make([]byte, 0, len(b)+len(b)/16)
	inStr := false
	for i := 0; i < len(b); {
		c := b[i]
		if c < utf8.RuneSelf {
			if inStr && c == '\\' && i+1 < len(b) {
				out = append(out, c, b[i+1])
				i += 2
				continue
			}
			if c == '"' {
				inStr = !inStr
			}
			if inStr && c == '/' {
				out = append(out, '\\', '/')
			} else {
				out = append(out, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(b[i:])
		out = appendU(out, r)
		i += size
	}
	return out
}

const hexDigits = "0123456789abcdef"

func appendU(out []byte, r rune) []byte {
	if r > 0xFFFF {
		r -= 0x10000
		out = appendU(out, 0xD800+(r>>10))
		return appendU(out, 0xDC00+(r&0x3FF))
	}
	return append(out, '\\', 'u', hexDigits[r>>12&0xF], hexDigits[r>>8&0xF], hexDigits[r>>4&0xF], hexDigits[r&0xF])
}

// appendJSONString appends s as a PHP-style JSON string.
func appendJSONString(out []byte, s string) []byte {
	out = append(out, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < utf8.RuneSelf && c != '"' && c != '\\' && c != '/' {
			i++
			continue
		}
		out = append(out, s[start:i]...)
		if c < utf8.RuneSelf {
			switch c {
			case '"':
				out = append(out, '\\', '"')
			case '\\':
				out = append(out, '\\', '\\')
			case '/':
				out = append(out, '\\', '/')
			case '\n':
				out = append(out, '\\', 'n')
			case '\r':
				out = append(out, '\\', 'r')
			case '\t':
				out = append(out, '\\', 't')
			case '\b':
				out = append(out, '\\', 'b')
			case '\f':
				out = append(out, '\\', 'f')
			default:
				out = appendU(out, rune(c))
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			out = append(out, `\ufffd`...)
		} else {
			out = appendU(out, r)
		}
		i += size
		start = i
	}
	out = append(out, s[start:]...)
	return append(out, '"')
}

func phpJSONString(s string) string { return string(appendJSONString(nil, s)) }

func xmlEscape(s string) string {
	if !strings.ContainsAny(s, `<>&"'`) {
		return s
	}
	r := strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;", "'", "&#039;")
	return r.Replace(s)
}

// csvNeedsQuote follows PHP fputcsv: quote when the value holds the
// delimiter, a quote, CR, LF, tab, space or backslash.
func csvNeedsQuote(s string, delim byte) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case delim, '"', '\r', '\n', '\t', ' ', '\\':
			return true
		}
	}
	return false
}

func appendCSVField(out []byte, s string, delim byte) []byte {
	if !csvNeedsQuote(s, delim) {
		return append(out, s...)
	}
	out = append(out, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' {
			out = append(out, '"', '"')
		} else {
			out = append(out, s[i])
		}
	}
	return append(out, '"')
}

// csvTable renders a header and rows as REDCap CSV.
func csvTable(header []string, rows [][]string) string {
	var out []byte
	for i, h := range header {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, h...)
	}
	out = append(out, '\n')
	for _, r := range rows {
		for i, v := range r {
			if i > 0 {
				out = append(out, ',')
			}
			out = appendCSVField(out, v, ',')
		}
		out = append(out, '\n')
	}
	return string(out)
}

// xmlTable renders rows as <records><item><k>v</k>…</item></records>.
func xmlTable(header []string, rows [][]string) string {
	var b strings.Builder
	b.WriteString(xmlHeader)
	b.WriteString("<records>\n")
	for _, r := range rows {
		b.WriteString("<item>")
		for i, v := range r {
			b.WriteString("<" + header[i] + "><![CDATA[" + strings.ReplaceAll(v, "]]>", "]]]]><![CDATA[>") + "]]></" + header[i] + ">")
		}
		b.WriteString("</item>\n")
	}
	b.WriteString("</records>")
	return b.String()
}

// table is a small export: a header, string rows, and the columns that are
// JSON numbers.
type table struct {
	header []string
	rows   [][]string
	ints   map[string]bool
}

func (t *table) write(w http.ResponseWriter, format string) {
	switch format {
	case "json":
		buf := []byte{'['}
		for i, r := range t.rows {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = append(buf, '{')
			for j, v := range r {
				if j > 0 {
					buf = append(buf, ',')
				}
				buf = appendJSONString(buf, t.header[j])
				buf = append(buf, ':')
				if t.ints[t.header[j]] && v != "" {
					buf = append(buf, v...)
				} else {
					buf = appendJSONString(buf, v)
				}
			}
			buf = append(buf, '}')
		}
		buf = append(buf, ']')
		writeBody(w, "json", string(buf))
	case "csv":
		writeBody(w, "csv", csvTable(t.header, t.rows))
	default:
		writeBody(w, "xml", xmlTable(t.header, t.rows))
	}
}

func writeCount(w http.ResponseWriter, rf string, n int) {
	switch rf {
	case "json":
		writeBody(w, "json", strconv.Itoa(n))
	case "csv":
		writeBody(w, "csv", strconv.Itoa(n))
	default:
		writeBody(w, "xml", xmlHeader+"<count>"+strconv.Itoa(n)+"</count>")
	}
}
