package redcap

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Kind says whether retrying a failed call can help.
type Kind int

const (
	// KindTransient: the server or network failed; the same call may succeed later.
	KindTransient Kind = iota
	// KindPermanent: the request itself, the token or its rights are wrong; retrying
	// the same call gives the same answer until someone fixes it.
	KindPermanent
)

func (k Kind) String() string {
	if k == KindPermanent {
		return "permanent"
	}
	return "transient"
}

// Error is every failure of a REDCap call. It never holds the token, and its
// Error() text never holds a field value.
type Error struct {
	Site   string // the client's site name, e.g. "site-a" or "destination"
	Call   string // e.g. "export records"
	Status int    // HTTP status; 0 when no answer came (network, timeout)
	Kind   Kind
	// Message is REDCap's own text (or our description of a bad body). For
	// validation errors it is rebuilt from Problems without their values.
	Message string
	// Hint says what to fix, when we know.
	Hint string
	// Problems are REDCap's per-record validation lines of a 400.
	Problems []Problem
	Err      error // underlying cause (network, context), may be nil
}

// Problem is one REDCap validation line: "record","field","value","message".
// Value is kept for the caller (e.g. to show inside the trust boundary) and is
// never printed by Error().
type Problem struct {
	Record, Field, Value, Message string
}

// maxProblemsInText bounds Error() for batches with many bad records.
const maxProblemsInText = 5

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Site)
	b.WriteString(": ")
	b.WriteString(e.Call)
	b.WriteString(": ")
	if e.Status != 0 {
		b.WriteString("HTTP ")
		b.WriteString(strconv.Itoa(e.Status))
		b.WriteString(": ")
	}
	switch {
	case len(e.Problems) > 0:
		fmt.Fprintf(&b, "REDCap rejected the data (%d problem%s): ", len(e.Problems), plural(len(e.Problems)))
		for i, p := range e.Problems {
			if i == maxProblemsInText {
				fmt.Fprintf(&b, "; and %d more", len(e.Problems)-i)
				break
			}
			if i > 0 {
				b.WriteString("; ")
			}
			b.WriteString(p.String())
		}
	case e.Message != "":
		b.WriteString(e.Message)
	case e.Err != nil:
		b.WriteString(e.Err.Error())
	default:
		b.WriteString("failed")
	}
	if e.Message != "" && e.Err != nil && len(e.Problems) == 0 && !strings.Contains(e.Message, e.Err.Error()) {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	if e.Hint != "" {
		b.WriteString(" (")
		b.WriteString(e.Hint)
		b.WriteString(")")
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// String is the problem without its value.
func (p Problem) String() string {
	return fmt.Sprintf("record %q field %q: %s", p.Record, p.Field, p.Message)
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// IsTransient reports whether err (or what it wraps) is a transient REDCap error.
func IsTransient(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Kind == KindTransient
}

// IsPermanent reports whether err (or what it wraps) is a permanent REDCap error.
func IsPermanent(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Kind == KindPermanent
}

// IsOverload reports whether a call failed in a way a smaller request may
// avoid: REDCap ran out of memory, the request was too large (413), or no
// complete answer came in time (the client's timeout, a gateway's 504).
func IsOverload(err error) bool {
	var e *Error
	if !errors.As(err, &e) {
		return false
	}
	m := strings.ToLower(e.Message)
	switch {
	case e.Status == 413, e.Status == 504:
		return true
	case strings.Contains(m, "out of server memory"), strings.Contains(m, "allowed memory size"):
		return true
	case e.Status == 0 && strings.HasPrefix(m, "no complete answer within"):
		return true
	}
	return false
}

// Problems returns the validation lines of a REDCap 400, or nil.
func Problems(err error) []Problem {
	var e *Error
	if errors.As(err, &e) {
		return e.Problems
	}
	return nil
}

// parseProblems reads REDCap's validation lines: each line is four CSV
// fields "record","field","value","message". Lines that are not of that shape
// make the whole message not a problem list (returns nil).
func parseProblems(msg string) []Problem {
	msg = strings.TrimSpace(strings.ReplaceAll(msg, "\r\n", "\n"))
	if !strings.HasPrefix(msg, `"`) {
		return nil
	}
	var out []Problem
	rest := msg
	for rest != "" {
		fields, next, ok := parseCSVLine(rest)
		if !ok || len(fields) != 4 {
			return parseProblemsLoose(msg)
		}
		p := Problem{Record: fields[0], Field: fields[1], Value: fields[2], Message: fields[3]}
		p.Message = redactValue(p.Message, p.Value)
		out = append(out, p)
		rest = strings.TrimLeft(next, "\n")
	}
	return out
}

// parseProblemsLoose reads problem lines whose inner quotes were not
// doubled: a line starts with `"`, its parts are separated by `","`, and
// whatever sits between the field and the message is the value.
func parseProblemsLoose(msg string) []Problem {
	var lines []string
	for _, l := range strings.Split(msg, "\n") {
		if len(lines) > 0 && !strings.HasPrefix(l, `"`) {
			lines[len(lines)-1] += "\n" + l // a value with a line break
			continue
		}
		lines = append(lines, l)
	}
	var out []Problem
	for _, l := range lines {
		if len(l) < 2 || !strings.HasPrefix(l, `"`) || !strings.HasSuffix(l, `"`) {
			return nil
		}
		parts := strings.Split(l[1:len(l)-1], `","`)
		if len(parts) < 4 {
			return nil
		}
		und := func(s string) string { return strings.ReplaceAll(s, `""`, `"`) }
		p := Problem{Record: und(parts[0]), Field: und(parts[1]), Value: und(strings.Join(parts[2:len(parts)-1], `","`)), Message: und(parts[len(parts)-1])}
		p.Message = redactValue(p.Message, p.Value)
		out = append(out, p)
	}
	return out
}

// parseCSVLine reads one line of quoted CSV fields (quotes doubled inside).
// Quoted fields may contain newlines (a multi-line text value).
func parseCSVLine(s string) (fields []string, rest string, ok bool) {
	i := 0
	for {
		if i >= len(s) {
			return fields, "", true
		}
		if s[i] != '"' {
			// unquoted field up to , or \n
			j := i
			for j < len(s) && s[j] != ',' && s[j] != '\n' {
				j++
			}
			fields = append(fields, s[i:j])
			i = j
		} else {
			var b strings.Builder
			j := i + 1
			for {
				if j >= len(s) {
					return nil, "", false
				}
				if s[j] == '"' {
					if j+1 < len(s) && s[j+1] == '"' {
						b.WriteByte('"')
						j += 2
						continue
					}
					j++
					break
				}
				b.WriteByte(s[j])
				j++
			}
			fields = append(fields, b.String())
			i = j
		}
		if i >= len(s) {
			return fields, "", true
		}
		switch s[i] {
		case ',':
			i++
		case '\n':
			return fields, s[i+1:], true
		default:
			return nil, "", false
		}
	}
}

// redactValue removes a field value from a REDCap message, in case a server
// version quotes the value in its text. Short bare values are left alone
// (replacing every "1" would garble the text); quoted ones always go.
func redactValue(msg, value string) string {
	if value == "" {
		return msg
	}
	msg = strings.ReplaceAll(msg, "'"+value+"'", "'<value>'")
	msg = strings.ReplaceAll(msg, `"`+value+`"`, `"<value>"`)
	if len(value) >= 4 {
		msg = strings.ReplaceAll(msg, value, "<value>")
	}
	return msg
}

// problemsText rebuilds a validation message without values.
func problemsText(ps []Problem) string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}
