package messages

import (
	"bytes"
	"encoding/json"
	"errors"
	"sort"
	"unicode/utf8"
)

// Rows are on every record's path through every hop, so Row encodes and
// decodes itself without reflection: keys sorted (deterministic bytes, like
// encoding/json), values as JSON strings.

// MarshalJSON writes the row as a JSON object with sorted keys.
func (r Row) MarshalJSON() ([]byte, error) {
	if r == nil {
		return []byte("null"), nil
	}
	keys := make([]string, 0, len(r))
	size := 2
	for k, v := range r {
		keys = append(keys, k)
		size += len(k) + len(v) + 6
	}
	sort.Strings(keys)
	b := make([]byte, 0, size)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		b = append(b, ':')
		b = appendJSONString(b, r[k])
	}
	return append(b, '}'), nil
}

const hexDigits = "0123456789abcdef"

// appendJSONString quotes s as a JSON string: quotes, backslashes and
// control characters escaped, invalid UTF-8 replaced (as encoding/json does).
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

var errNotFlat = errors.New("not a flat object of strings")

// UnmarshalJSON reads a JSON object of string values; anything else (a
// number, null, escapes) takes encoding/json's general path.
func (r *Row) UnmarshalJSON(data []byte) error {
	if m, err := parseFlat(data); err == nil {
		*r = m
		return nil
	}
	var m map[string]string
	if err := json.Unmarshal(data, &m); err != nil {
		return err
	}
	*r = m
	return nil
}

// parseFlat is the fast path: {"k":"v",...} with no escapes and no other
// value types.
func parseFlat(b []byte) (Row, error) {
	b = bytes.TrimSpace(b)
	if bytes.Equal(b, []byte("null")) {
		return nil, nil
	}
	if len(b) < 2 || b[0] != '{' || b[len(b)-1] != '}' {
		return nil, errNotFlat
	}
	b = b[1 : len(b)-1]
	m := make(Row, bytes.Count(b, []byte(`":"`)))
	for len(b) > 0 {
		b = bytes.TrimLeft(b, " \t\r\n")
		k, rest, err := plainString(b)
		if err != nil {
			return nil, err
		}
		rest = bytes.TrimLeft(rest, " \t\r\n")
		if len(rest) == 0 || rest[0] != ':' {
			return nil, errNotFlat
		}
		rest = bytes.TrimLeft(rest[1:], " \t\r\n")
		v, rest, err := plainString(rest)
		if err != nil {
			return nil, err
		}
		m[k] = v
		rest = bytes.TrimLeft(rest, " \t\r\n")
		if len(rest) > 0 {
			if rest[0] != ',' {
				return nil, errNotFlat
			}
			rest = rest[1:]
			if len(bytes.TrimSpace(rest)) == 0 {
				return nil, errNotFlat
			}
		}
		b = rest
	}
	return m, nil
}

// plainString reads a JSON string without escapes or control characters.
func plainString(b []byte) (string, []byte, error) {
	if len(b) == 0 || b[0] != '"' {
		return "", nil, errNotFlat
	}
	for i := 1; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			if !utf8.Valid(b[1:i]) {
				return "", nil, errNotFlat
			}
			return string(b[1:i]), b[i+1:], nil
		case c == '\\' || c < 0x20:
			return "", nil, errNotFlat
		}
	}
	return "", nil, errNotFlat
}
