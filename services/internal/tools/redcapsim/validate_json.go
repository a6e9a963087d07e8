package redcapsim

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// parseJSONRows decodes an import's JSON: an array of flat objects whose
// values are strings, numbers (kept as written), true/false ("1"/"0") or
// null (""). A JSON object instead of an array is notArray (REDCap answers
// 200 with count 0). It is a hand-written scanner rather than
// encoding/json because imports are the bulk of the simulator's work: keys
// are interned and each row is one map. Errors give the byte offset, never
// the payload.
func parseJSONRows(data string) ([]inRow, bool, error) {
	sc := &jsonScanner{s: data, keys: make(map[string]string, 64)}
	sc.ws()
	if sc.i < len(sc.s) && sc.s[sc.i] == '{' {
		if _, err := sc.object(0, 8); err == nil {
			if sc.ws(); sc.i == len(sc.s) {
				return nil, true, nil
			}
		}
		sc.i = 0
		sc.ws()
	}
	rows, err := sc.rows()
	if err != nil {
		return nil, false, err
	}
	return rows, false, nil
}

type jsonScanner struct {
	s    string
	i    int
	keys map[string]string
}

func (sc *jsonScanner) syntax(what string) error {
	return errorf(400, fmt.Sprintf("The data being imported is not formatted correctly. PHP error from JSON decoder: Syntax error (%s at byte %d). The JSON must be in an array, as in [{ ... }].", what, sc.i))
}

func (sc *jsonScanner) ws() {
	for sc.i < len(sc.s) {
		switch sc.s[sc.i] {
		case ' ', '\t', '\n', '\r':
			sc.i++
		default:
			return
		}
	}
}

func (sc *jsonScanner) rows() ([]inRow, error) {
	if sc.i >= len(sc.s) {
		return nil, sc.syntax("unexpected end of data")
	}
	if sc.s[sc.i] != '[' {
		return nil, sc.syntax("not an array of objects")
	}
	sc.i++
	rows := make([]inRow, 0, 64)
	sc.ws()
	if sc.i < len(sc.s) && sc.s[sc.i] == ']' {
		sc.i++
		return rows, sc.end()
	}
	hint := 8
	for item := 1; ; item++ {
		sc.ws()
		var row inRow
		switch {
		case strings.HasPrefix(sc.s[sc.i:], "null"):
			sc.i += 4
			row = inRow{}
		case sc.i < len(sc.s) && sc.s[sc.i] == '{':
			var err error
			if row, err = sc.object(item, hint); err != nil {
				return nil, err
			}
			hint = len(row)
		default:
			return nil, sc.syntax("an item that is not an object")
		}
		rows = append(rows, row)
		sc.ws()
		if sc.i >= len(sc.s) {
			return nil, sc.syntax("unexpected end of data")
		}
		switch sc.s[sc.i] {
		case ',':
			sc.i++
		case ']':
			sc.i++
			return rows, sc.end()
		default:
			return nil, sc.syntax("expected , or ]")
		}
	}
}

func (sc *jsonScanner) end() error {
	sc.ws()
	if sc.i != len(sc.s) {
		return errorf(400, "The data being imported is not formatted correctly. PHP error from JSON decoder: Syntax error (trailing data after the array). The JSON must be in an array, as in [{ ... }].")
	}
	return nil
}

// object reads {"key": value, …} starting at '{'.
func (sc *jsonScanner) object(item, hint int) (inRow, error) {
	sc.i++ // {
	row := make(inRow, hint)
	sc.ws()
	if sc.i < len(sc.s) && sc.s[sc.i] == '}' {
		sc.i++
		return row, nil
	}
	for {
		sc.ws()
		if sc.i >= len(sc.s) || sc.s[sc.i] != '"' {
			return nil, sc.syntax("expected a key")
		}
		k, err := sc.str()
		if err != nil {
			return nil, err
		}
		if ik, ok := sc.keys[k]; ok {
			k = ik
		} else if len(sc.keys) < 4096 {
			sc.keys[k] = k
		}
		sc.ws()
		if sc.i >= len(sc.s) || sc.s[sc.i] != ':' {
			return nil, sc.syntax("expected :")
		}
		sc.i++
		sc.ws()
		v, err := sc.value(item, k)
		if err != nil {
			return nil, err
		}
		row[k] = v
		sc.ws()
		if sc.i >= len(sc.s) {
			return nil, sc.syntax("unexpected end of data")
		}
		switch sc.s[sc.i] {
		case ',':
			sc.i++
		case '}':
			sc.i++
			return row, nil
		default:
			return nil, sc.syntax("expected , or }")
		}
	}
}

func (sc *jsonScanner) value(item int, key string) (string, error) {
	if sc.i >= len(sc.s) {
		return "", sc.syntax("unexpected end of data")
	}
	switch c := sc.s[sc.i]; {
	case c == '"':
		return sc.str()
	case c == '{' || c == '[':
		return "", errorf(400, fmt.Sprintf("The data being imported is not formatted correctly. Item %d, key %q holds an array or object; every value must be a string or number. The JSON must be in an array, as in [{ ... }].", item, key))
	case c == '-' || c >= '0' && c <= '9':
		return sc.number()
	}
	rest := sc.s[sc.i:]
	switch {
	case strings.HasPrefix(rest, "true"):
		sc.i += 4
		return "1", nil
	case strings.HasPrefix(rest, "false"):
		sc.i += 5
		return "0", nil
	case strings.HasPrefix(rest, "null"):
		sc.i += 4
		return "", nil
	}
	return "", sc.syntax("invalid value")
}

// number checks JSON's number grammar and keeps the text as written.
func (sc *jsonScanner) number() (string, error) {
	start := sc.i
	digits := func() int {
		n := 0
		for sc.i < len(sc.s) && sc.s[sc.i] >= '0' && sc.s[sc.i] <= '9' {
			sc.i++
			n++
		}
		return n
	}
	if sc.s[sc.i] == '-' {
		sc.i++
	}
	if sc.i < len(sc.s) && sc.s[sc.i] == '0' {
		sc.i++
	} else if digits() == 0 {
		return "", sc.syntax("invalid number")
	}
	if sc.i < len(sc.s) && sc.s[sc.i] == '.' {
		sc.i++
		if digits() == 0 {
			return "", sc.syntax("invalid number")
		}
	}
	if sc.i < len(sc.s) && (sc.s[sc.i] == 'e' || sc.s[sc.i] == 'E') {
		sc.i++
		if sc.i < len(sc.s) && (sc.s[sc.i] == '+' || sc.s[sc.i] == '-') {
			sc.i++
		}
		if digits() == 0 {
			return "", sc.syntax("invalid number")
		}
	}
	return sc.s[start:sc.i], nil
}

// str reads a string at '"': a substring when it has no escapes (the
// usual case), else unescaped; invalid UTF-8 becomes U+FFFD.
func (sc *jsonScanner) str() (string, error) {
	sc.i++
	start := sc.i
	for sc.i < len(sc.s) {
		switch c := sc.s[sc.i]; {
		case c == '"':
			s := sc.s[start:sc.i]
			sc.i++
			if !utf8.ValidString(s) {
				s = fixUTF8(s)
			}
			return s, nil
		case c == '\\':
			return sc.slowStr(start)
		case c < 0x20:
			return "", sc.syntax("a control character in a string")
		}
		sc.i++
	}
	return "", sc.syntax("unterminated string")
}

func (sc *jsonScanner) slowStr(start int) (string, error) {
	var b strings.Builder
	b.WriteString(sc.s[start:sc.i])
	for sc.i < len(sc.s) {
		c := sc.s[sc.i]
		switch {
		case c == '"':
			sc.i++
			s := b.String()
			if !utf8.ValidString(s) {
				s = fixUTF8(s)
			}
			return s, nil
		case c < 0x20:
			return "", sc.syntax("a control character in a string")
		case c != '\\':
			b.WriteByte(c)
			sc.i++
			continue
		}
		if sc.i+1 >= len(sc.s) {
			break
		}
		e := sc.s[sc.i+1]
		sc.i += 2
		switch e {
		case '"', '\\', '/':
			b.WriteByte(e)
		case 'b':
			b.WriteByte('\b')
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'u':
			r, ok := sc.hex4()
			if !ok {
				return "", sc.syntax("invalid \\u escape")
			}
			if utf16.IsSurrogate(r) {
				if r2, ok2 := sc.surrogatePair(); ok2 {
					r = utf16.DecodeRune(r, r2)
				} else {
					r = utf8.RuneError
				}
			}
			b.WriteRune(r)
		default:
			return "", sc.syntax("invalid escape")
		}
	}
	return "", sc.syntax("unterminated string")
}

func (sc *jsonScanner) hex4() (rune, bool) {
	if sc.i+4 > len(sc.s) {
		return 0, false
	}
	n, err := strconv.ParseUint(sc.s[sc.i:sc.i+4], 16, 32)
	if err != nil {
		return 0, false
	}
	sc.i += 4
	return rune(n), true
}

func (sc *jsonScanner) surrogatePair() (rune, bool) {
	if !strings.HasPrefix(sc.s[sc.i:], `\u`) {
		return 0, false
	}
	save := sc.i
	sc.i += 2
	r, ok := sc.hex4()
	if !ok || r < 0xDC00 || r > 0xDFFF {
		sc.i = save
		return 0, false
	}
	return r, true
}

// fixUTF8 replaces each invalid byte with U+FFFD, as encoding/json does.
func fixUTF8(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b.WriteRune(utf8.RuneError)
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	return b.String()
}
