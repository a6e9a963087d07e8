package phi

import (
	"strings"
	"unicode"
)

// Tokens splits a field name into lower-case words: at anything that is not
// a letter or digit (snake case), at camel-case humps ("homePhone",
// "SSNumber"), between letters and digits ("zip5"), and, for a run-together
// word made only of known words ("ptname", "dateofbirth", "homephone"),
// into those words. Digits are kept as their own tokens.
func Tokens(name string) []string {
	var out []string
	for _, raw := range splitRaw(name) {
		if isDigits(raw) || vocabulary[raw] {
			out = append(out, raw)
			continue
		}
		if parts := segment(raw); parts != nil {
			out = append(out, parts...)
			continue
		}
		out = append(out, raw)
	}
	return out
}

// splitRaw does the separator, camel-case and digit splits.
func splitRaw(name string) []string {
	rs := []rune(name)
	var out []string
	var cur []rune
	flush := func() {
		if len(cur) > 0 {
			out = append(out, strings.ToLower(string(cur)))
			cur = cur[:0]
		}
	}
	for i, r := range rs {
		if !unicode.IsLetter(r) && !unicode.IsDigit(r) {
			flush()
			continue
		}
		if len(cur) > 0 {
			prev := cur[len(cur)-1]
			switch {
			case unicode.IsDigit(r) != unicode.IsDigit(prev):
				flush()
			case unicode.IsUpper(r) && unicode.IsLower(prev):
				flush() // homePhone
			case unicode.IsUpper(r) && unicode.IsUpper(prev) && i+1 < len(rs) && unicode.IsLower(rs[i+1]):
				flush() // SSNumber: SS | Number
			}
		}
		cur = append(cur, r)
	}
	flush()
	return out
}

func isDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}

// segment splits a run-together word into known words (each at least two
// letters), fewest pieces first; nil when it cannot be covered or when no
// piece is a word the lexicon cares about ("ethnicity" is not "ethni" +
// "city": "ethni" is no word).
func segment(w string) []string {
	if len(w) < 4 || len(w) > 40 {
		return nil
	}
	// best[i] = fewest pieces covering w[:i]; from[i] = where the last starts
	best := make([]int, len(w)+1)
	from := make([]int, len(w)+1)
	for i := 1; i <= len(w); i++ {
		best[i] = -1
		for j := 0; j <= i-2; j++ {
			if best[j] < 0 && j > 0 {
				continue
			}
			if !vocabulary[w[j:i]] {
				continue
			}
			if n := best[j] + 1; best[i] < 0 || n < best[i] {
				best[i], from[i] = n, j
			}
		}
	}
	if best[len(w)] < 0 {
		return nil
	}
	var parts []string
	for i := len(w); i > 0; i = from[i] {
		parts = append([]string{w[from[i]:i]}, parts...)
	}
	for _, p := range parts {
		if heads[p] {
			return parts
		}
	}
	return nil
}
