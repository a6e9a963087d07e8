package redcap

import (
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"

	"github.com/redcap-relay/relay/messages"
)

// decodeRows decodes a flat JSON export: an array of objects whose values
// are strings, except redcap_repeat_instance (an integer on repeating rows).
// Numbers become their decimal text, null "", true/false "1"/"0"; nested
// values are an error.
//
// It is a hand-written scanner rather than encoding/json because exports
// are the bulk of the traffic (see BenchmarkDecodeRows100k): column names
// are interned, the map is sized from the previous row, and each value is
// one small allocation.
func decodeRows(body []byte) ([]messages.Row, error) {
	d := rowDecoder{b: body, keys: make(map[string]string, 64)}
	return d.decode()
}

type rowDecoder struct {
	b    []byte
	i    int
	keys map[string]string
}

type rowSyntaxError struct {
	Offset int
	What   string
}

func (e *rowSyntaxError) Error() string {
	return fmt.Sprintf("JSON syntax error at byte %d: %s", e.Offset, e.What)
}

func (d *rowDecoder) fail(what string) error { return &rowSyntaxError{Offset: d.i, What: what} }

func (d *rowDecoder) ws() {
	for d.i < len(d.b) {
		switch d.b[d.i] {
		case ' ', '\t', '\n', '\r':
			d.i++
		default:
			return
		}
	}
}

func (d *rowDecoder) decode() ([]messages.Row, error) {
	d.ws()
	if d.i >= len(d.b) || d.b[d.i] != '[' {
		return nil, d.fail("expected [")
	}
	d.i++
	rows := make([]messages.Row, 0, 64)
	d.ws()
	if d.i < len(d.b) && d.b[d.i] == ']' {
		d.i++
		return rows, d.end()
	}
	hint := 8
	for {
		d.ws()
		row, err := d.object(hint)
		if err != nil {
			return nil, err
		}
		hint = len(row)
		rows = append(rows, row)
		d.ws()
		if d.i >= len(d.b) {
			return nil, d.fail("the array ends early")
		}
		switch d.b[d.i] {
		case ',':
			d.i++
		case ']':
			d.i++
			return rows, d.end()
		default:
			return nil, d.fail("expected , or ]")
		}
	}
}

func (d *rowDecoder) end() error {
	d.ws()
	if d.i != len(d.b) {
		return d.fail("data after the array")
	}
	return nil
}

func (d *rowDecoder) object(hint int) (messages.Row, error) {
	if d.i >= len(d.b) || d.b[d.i] != '{' {
		return nil, d.fail("expected {")
	}
	d.i++
	row := make(messages.Row, hint)
	d.ws()
	if d.i < len(d.b) && d.b[d.i] == '}' {
		d.i++
		return row, nil
	}
	for {
		d.ws()
		kb, esc, err := d.rawString()
		if err != nil {
			return nil, err
		}
		var key string
		if esc {
			key = unescape(kb)
		} else if k, ok := d.keys[string(kb)]; ok { // no allocation for the lookup
			key = k
		} else {
			key = string(kb)
			d.keys[key] = key
		}
		d.ws()
		if d.i >= len(d.b) || d.b[d.i] != ':' {
			return nil, d.fail("expected :")
		}
		d.i++
		d.ws()
		val, err := d.value()
		if err != nil {
			return nil, err
		}
		row[key] = val
		d.ws()
		if d.i >= len(d.b) {
			return nil, d.fail("the object ends early")
		}
		switch d.b[d.i] {
		case ',':
			d.i++
		case '}':
			d.i++
			return row, nil
		default:
			return nil, d.fail("expected , or }")
		}
	}
}

// rawString reads a JSON string at d.i and returns its raw bytes (without
// quotes) and whether it holds escapes.
func (d *rowDecoder) rawString() ([]byte, bool, error) {
	if d.i >= len(d.b) || d.b[d.i] != '"' {
		return nil, false, d.fail("expected a string")
	}
	start := d.i + 1
	esc := false
	for j := start; j < len(d.b); j++ {
		switch d.b[j] {
		case '"':
			d.i = j + 1
			return d.b[start:j], esc, nil
		case '\\':
			esc = true
			j++ // skip the escaped byte (a \" must not end the string)
		}
	}
	d.i = len(d.b)
	return nil, false, d.fail("a string ends early")
}

func (d *rowDecoder) value() (string, error) {
	if d.i >= len(d.b) {
		return "", d.fail("a value is missing")
	}
	switch c := d.b[d.i]; {
	case c == '"':
		raw, esc, err := d.rawString()
		if err != nil {
			return "", err
		}
		switch {
		case len(raw) == 0:
			return "", nil
		case esc:
			return unescape(raw), nil
		case len(raw) == 1 && raw[0] < utf8.RuneSelf:
			return oneByte[raw[0]], nil // "0", "1", "2": the most common cells
		}
		return string(raw), nil
	case c == '-' || (c >= '0' && c <= '9'):
		start := d.i
		for d.i < len(d.b) {
			c := d.b[d.i]
			if c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E' || (c >= '0' && c <= '9') {
				d.i++
				continue
			}
			break
		}
		num := d.b[start:d.i]
		if _, err := strconv.ParseFloat(unsafe.String(unsafe.SliceData(num), len(num)), 64); err != nil {
			d.i = start
			return "", d.fail("a malformed number")
		}
		return string(num), nil
	case d.lit("null"):
		return "", nil
	case d.lit("true"):
		return "1", nil
	case d.lit("false"):
		return "0", nil
	case c == '{' || c == '[':
		return "", d.fail("a nested value where a string was expected")
	}
	return "", d.fail("an unexpected character")
}

func (d *rowDecoder) lit(s string) bool {
	if len(d.b)-d.i >= len(s) && string(d.b[d.i:d.i+len(s)]) == s {
		d.i += len(s)
		return true
	}
	return false
}

// oneByte holds the one-character strings so that single-digit cells
// (checkboxes, status codes) share storage.
var oneByte = func() (t [utf8.RuneSelf]string) {
	for i := range t {
		t[i] = string(rune(i))
	}
	return
}()

// unescape decodes a JSON string body with escapes (already delimited, so
// a trailing lone backslash cannot occur).
func unescape(raw []byte) string {
	out := make([]byte, 0, len(raw))
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c != '\\' || i+1 >= len(raw) {
			out = append(out, c)
			continue
		}
		i++
		switch raw[i] {
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'u':
			r, n := hexRune(raw[i+1:])
			if n == 0 {
				out = append(out, '\\', 'u')
				continue
			}
			i += n
			if utf16.IsSurrogate(r) {
				// a pair: \uD83D\uDE00
				if i+2 < len(raw) && raw[i+1] == '\\' && raw[i+2] == 'u' {
					if r2, n2 := hexRune(raw[i+3:]); n2 > 0 {
						if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
							out = utf8.AppendRune(out, dec)
							i += 2 + n2
							continue
						}
					}
				}
				r = utf8.RuneError
			}
			out = utf8.AppendRune(out, r)
		default: // \" \\ \/ and anything else: the character itself
			out = append(out, raw[i])
		}
	}
	return string(out)
}

func hexRune(b []byte) (rune, int) {
	if len(b) < 4 {
		return 0, 0
	}
	var r rune
	for _, c := range b[:4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, 0
		}
	}
	return r, 4
}
