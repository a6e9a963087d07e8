package protocol

import (
	"html"
	"regexp"
	"sort"
	"strings"
	"unicode"

	"github.com/redcap-relay/relay/messages"
)

// Content matching: a site item that carries a library item's question
// under another variable name is the same item when its normalised wording
// agrees and its answers (codes and labels, or type and validation) do
// too. Wording carries most of the weight: many items share an answer
// scale (every PHQ item has "0, Not at all ... 3, Nearly every day"), so
// answers only confirm, and a wording match with answers that disagree is
// a conflict, never a rename.
const (
	minWording   = 0.70 // a rename needs at least this wording score
	minScore     = 0.75 // and this overall score
	conflictWord = 0.85 // wording this close with answers that disagree: a conflict
	conflictAns  = 0.50 // answers below this disagree
	tieMargin    = 0.02 // scores this close are a tie: ambiguous
)

var tagRe = regexp.MustCompile(`<[^>]*>`)

// normWording reduces a question to its words: no HTML, entities, case,
// punctuation, spacing or leading item number.
func normWording(s string) string {
	if strings.ContainsAny(s, "<&") {
		s = html.UnescapeString(tagRe.ReplaceAllString(s, " "))
	}
	s = strings.ToLower(s)
	for i := 0; i < 3; i++ {
		rest, ok := cutNumbering(s)
		if !ok {
			break
		}
		s = rest
	}
	var b strings.Builder
	b.Grow(len(s))
	space := true
	for _, r := range s {
		if unicode.IsLetter(r) || unicode.IsDigit(r) {
			b.WriteRune(r)
			space = false
		} else if !space {
			b.WriteByte(' ')
			space = true
		}
	}
	return strings.TrimSpace(b.String())
}

// cutNumbering removes one leading item number from a lower-cased
// question: "1.", "1)", "(1)", "q1:", "question 1:", "item 3 -", "a)",
// "pcs item 1:", "pfa11:", "sleep109:". It leaves the text alone when
// nothing would remain.
func cutNumbering(s string) (string, bool) {
	t := strings.TrimLeft(s, " \t\n\r")
	t = strings.TrimPrefix(t, "(")
	letters := func(t string) int {
		i := 0
		for i < len(t) && t[i] >= 'a' && t[i] <= 'z' {
			i++
		}
		return i
	}
	digits := func(t string) int {
		i := 0
		for i < len(t) && t[i] >= '0' && t[i] <= '9' {
			i++
		}
		return i
	}
	done := func(rest string) (string, bool) {
		rest = strings.TrimLeft(rest, " ")
		if strings.TrimSpace(rest) == "" {
			return s, false
		}
		return rest, true
	}
	n := letters(t)
	word, after := t[:n], t[n:]
	// "pcs item 1:" / "item 3:" / "question 2." / "q1:" / "pfa11:" / "sleep109:"
	if n > 0 && n <= 10 {
		rest := after
		if strings.HasPrefix(rest, " item ") {
			rest = rest[len(" item "):]
		} else if word == "item" || word == "question" || word == "no" {
			rest = strings.TrimLeft(strings.TrimPrefix(rest, "."), " ")
		}
		if d := digits(rest); d > 0 && d <= 4 {
			rest = rest[d:]
			if len(rest) > 0 && rest[0] >= 'a' && rest[0] <= 'z' && (len(rest) == 1 || !isLetter(rest[1])) {
				rest = rest[1:]
			}
			rest = strings.TrimLeft(rest, " ")
			if len(rest) > 0 && strings.IndexByte(":.)-", rest[0]) >= 0 && (word == "item" || word == "question" || word == "q" || word == "no" || rest[0] == ':' || strings.HasPrefix(after, " item ")) {
				return done(rest[1:])
			}
		}
		// "a) " / "b. "
		if n == 1 && len(after) > 1 && (after[0] == ')' || after[0] == '.') && after[1] == ' ' {
			return done(after[1:])
		}
		return s, false
	}
	// "1." / "1)" / "12a:" / "3 -"
	if d := digits(t); d > 0 && d <= 3 {
		rest := t[d:]
		if len(rest) > 0 && rest[0] >= 'a' && rest[0] <= 'z' && (len(rest) == 1 || !isLetter(rest[1])) {
			rest = rest[1:]
		}
		rest = strings.TrimLeft(rest, " ")
		if len(rest) > 0 && strings.IndexByte(".):-", rest[0]) >= 0 {
			return done(rest[1:])
		}
	}
	return s, false
}

func isLetter(b byte) bool { return b >= 'a' && b <= 'z' }

// itemFeatures is what content matching compares of one item.
type itemFeatures struct {
	words   []string          // distinct words of the wording, sorted
	coded   bool              // answers are codes from a list (radio, dropdown, checkbox, yesno, truefalse)
	choices map[string]string // code -> label (normalised, without spaces)
	typ     string
	valid   string
	calc    string
}

func featuresOf(f *messages.Field) *itemFeatures {
	w := strings.Fields(normWording(f.FieldLabel))
	sort.Strings(w)
	w = uniq(w)
	ft := &itemFeatures{words: w, typ: f.FieldType, valid: normValidation(f.TextValidationTypeOrShowSlider)}
	if cs := effectiveChoices(*f); cs != nil {
		ft.coded = true
		ft.choices = make(map[string]string, len(cs))
		for _, c := range cs {
			ft.choices[c.Code] = squash(c.Label)
		}
	}
	if f.FieldType == "calc" {
		ft.calc = normLogic(f.SelectChoicesOrCalculations)
	}
	if f.FieldType != "text" {
		ft.valid = ""
	}
	return ft
}

// effectiveChoices are the answers a field stores: its choice list, or
// REDCap's fixed codes for yes/no and true/false fields; nil for fields
// without coded answers.
func effectiveChoices(f messages.Field) []Choice {
	switch f.FieldType {
	case "yesno":
		return []Choice{{"1", "Yes"}, {"0", "No"}}
	case "truefalse":
		return []Choice{{"1", "True"}, {"0", "False"}}
	}
	if !hasChoices(f.FieldType) {
		return nil
	}
	cs, err := ParseChoices(f.SelectChoicesOrCalculations)
	if err != nil || len(cs) == 0 {
		return nil
	}
	return cs
}

// squash compares answer labels without case, punctuation and spaces, so
// "Nearly every day" and "Nearly everyday" agree.
func squash(s string) string {
	s = normWording(s)
	return strings.ReplaceAll(s, " ", "")
}

func uniq(sorted []string) []string {
	out := sorted[:0]
	for i, s := range sorted {
		if i == 0 || s != sorted[i-1] {
			out = append(out, s)
		}
	}
	return out
}

// wordingScore compares two sorted word sets: the Dice coefficient, or
// the share of the shorter wording found in the longer one (a library
// that abbreviates "Trouble concentrating on things, such as reading the
// newspaper..."), discounted for wordings of fewer than five words and
// always a little below an identical wording.
func wordingScore(a, b []string) float64 {
	if len(a) == 0 || len(b) == 0 {
		return 0
	}
	inter := 0
	for i, j := 0, 0; i < len(a) && j < len(b); {
		switch {
		case a[i] == b[j]:
			inter++
			i++
			j++
		case a[i] < b[j]:
			i++
		default:
			j++
		}
	}
	dice := 2 * float64(inter) / float64(len(a)+len(b))
	short := min(len(a), len(b))
	// a wording wholly inside another is close, never the same: the item
	// worded exactly so wins a tie
	cont := 0.95 * float64(inter) / float64(short) * min(1, float64(short)/5)
	return max(dice, cont)
}

// answerScore says how well two items' answers agree (0..1), what agreed,
// and, when only the codes differ, the recode from site to library codes.
func answerScore(lib, site *itemFeatures) (float64, []string, map[string]string) {
	switch {
	case lib.coded && site.coded:
		return choiceScore(lib.choices, site.choices)
	case lib.coded != site.coded:
		return 0.1, nil, nil
	}
	var basis []string
	s := 0.4
	if lib.typ == site.typ {
		s = 1
		basis = append(basis, "type")
		switch {
		case lib.typ == "text" && lib.valid != site.valid:
			s = 0.6
		case lib.typ == "text":
			basis = append(basis, "validation")
		case lib.typ == "calc" && lib.calc != site.calc:
			s = 0.7
		}
	} else if (lib.typ == "notes" && site.typ == "text" && site.valid == "") || (site.typ == "notes" && lib.typ == "text" && lib.valid == "") {
		s = 0.9
	}
	return s, basis, nil
}

func choiceScore(lib, site map[string]string) (float64, []string, map[string]string) {
	if len(lib) == len(site) {
		same := true
		for c, l := range lib {
			if site[c] != l {
				same = false
				break
			}
		}
		if same {
			return 1, []string{"codes", "labels"}, nil
		}
	}
	// the same labels under other codes: a recode
	byLabel := make(map[string]string, len(lib))
	for c, l := range lib {
		byLabel[l] = c
	}
	if len(lib) == len(site) && len(byLabel) == len(lib) {
		rec := map[string]string{}
		for c, l := range site {
			lc, ok := byLabel[l]
			if !ok {
				rec = nil
				break
			}
			if lc != c {
				rec[c] = lc
			}
		}
		if rec != nil {
			return 0.9, []string{"labels"}, rec
		}
	}
	// the same codes with other labels, or lists that partly agree
	sameCodes := len(lib) == len(site)
	agree := 0
	for c, l := range lib {
		sl, ok := site[c]
		if !ok {
			sameCodes = false
		}
		if ok && sl == l {
			agree++
		}
	}
	if sameCodes {
		return 0.5 + 0.4*float64(agree)/float64(len(lib)), []string{"codes"}, nil
	}
	labels := map[string]bool{}
	for _, l := range site {
		labels[l] = true
	}
	common := 0
	for l := range byLabel {
		if labels[l] {
			common++
		}
	}
	union := len(byLabel) + len(labels) - common
	if union == 0 {
		return 0, nil, nil
	}
	return 0.45 * float64(common) / float64(union), nil, nil
}

// pairScore is a library item against a site item: the overall score, the
// wording and answer scores apart, what agreed, and a recode.
type pairScore struct {
	score, wording, answers float64
	basis                   []string
	recode                  map[string]string
}

func scorePair(lib, site *itemFeatures) pairScore {
	w := wordingScore(lib.words, site.words)
	if w < minWording {
		return pairScore{wording: w}
	}
	a, basis, rec := answerScore(lib, site)
	ps := pairScore{wording: w, answers: a, recode: rec, score: w * (0.75 + 0.25*a)}
	ps.basis = append([]string{"wording"}, basis...)
	return ps
}

func (ps pairScore) accepted() bool {
	return ps.wording >= minWording && ps.answers >= conflictAns && ps.score >= minScore
}

func (ps pairScore) conflicting() bool {
	return ps.wording >= conflictWord && ps.answers < conflictAns
}
