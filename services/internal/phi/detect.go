package phi

import (
	"slices"
	"sort"
	"strings"

	"github.com/redcap-relay/relay/messages"
)

// Basis is what a detection rests on.
type Basis string

const (
	Flagged    Basis = "flagged"    // Identifier? = y in the dictionary
	Validation Basis = "validation" // email, phone, ssn, mrn, zipcode, postal code
	Name       Basis = "name"       // the field name says it (name, address, dob, phone, ...)
	Age        Basis = "age"        // an age: Safe Harbor groups 90 and over
	Date       Basis = "date"       // date or datetime validation
	FreeText   Basis = "free_text"  // unvalidated text or notes: may hold anything
	File       Basis = "file"       // file upload or signature
)

// Detection is one reason a field looks like an identifier.
type Detection struct {
	Basis Basis
	// Categories are the Safe Harbor categories it comes from (none for
	// the flag and for free text, which may hold any of them).
	Categories []Category
	Detail     string // e.g. "validation ssn", "name part 'phone'"
}

// Strong detections are identifiers by their nature: the transfer policy
// needs an explicit rule for each (field, validation or form). Dates and
// free text may also be covered by the policy's dates / free_text defaults.
func (d Detection) Strong() bool {
	switch d.Basis {
	case Flagged, Validation, Name, Age:
		return true
	}
	return false
}

// AsksFlag says whether a site should flag the field Identifier? because
// of this detection: the field holds an identifier as a whole (not an age,
// which Safe Harbor only groups above 89, and not free text or a file,
// which only may hold one). Dates count, as notes (see the protocol check).
func (d Detection) AsksFlag() bool {
	switch d.Basis {
	case Validation, Name, Date:
		return true
	}
	return false
}

// String is the detail with the categories it comes from, e.g.
// "name part 'phone' [(D) telephone numbers]".
func (d Detection) String() string {
	if len(d.Categories) == 0 {
		return d.Detail
	}
	return d.Detail + " [" + CategoryList(d.Categories) + "]"
}

// CategoryList names categories in plain words, comma-separated.
func CategoryList(cs []Category) string {
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = c.Label()
	}
	return strings.Join(parts, ", ")
}

// CategoriesOf joins the categories of several detections, in rule order.
func CategoriesOf(ds []Detection) []Category {
	have := map[Category]bool{}
	for _, d := range ds {
		for _, c := range d.Categories {
			have[c] = true
		}
	}
	var out []Category
	for _, c := range Categories {
		if have[c] {
			out = append(out, c)
		}
	}
	return out
}

// validations maps REDCap's built-in identifier validations to their
// category; a trailing * is a prefix.
var validations = []struct {
	pattern string
	cat     Category
}{
	{"email", Email}, {"phone*", Phone}, {"ssn", SSN}, {"mrn_*", MRN}, {"vmrn", MRN},
	{"zipcode", Geographic}, {"postalcode_*", Geographic},
}

// MatchValidation reports whether a validation type matches a pattern
// (a trailing * is a prefix), as the policy's validation rules do.
func MatchValidation(pattern, v string) bool {
	if p, ok := strings.CutSuffix(pattern, "*"); ok {
		return strings.HasPrefix(v, p)
	}
	return pattern == v
}

// ValidationOf is the field's text validation ("" for non-text fields and
// sliders, whose column holds the slider flag).
func ValidationOf(f messages.Field) string {
	if f.FieldType != "text" {
		return ""
	}
	return strings.ToLower(strings.TrimSpace(f.TextValidationTypeOrShowSlider))
}

// Coded fields hold a code from a fixed list (or a computed number), so a
// typed name, number or address cannot be in them; places, birth dates
// and ages still can ("home_city" as a dropdown is a place).
func Coded(fieldType string) bool {
	switch fieldType {
	case "radio", "dropdown", "checkbox", "yesno", "truefalse", "slider", "calc", "sql":
		return true
	}
	return false
}

// IsFreeText: text a person types without a constraint on its shape.
// alpha_only counts: letters-only is exactly how names are often entered.
func IsFreeText(f messages.Field) bool {
	switch f.FieldType {
	case "notes":
		return true
	case "text":
		v := ValidationOf(f)
		return v == "" || v == "alpha_only"
	}
	return false
}

// Detect lists why a field looks like an identifier; nil means it does not.
func Detect(f messages.Field) []Detection {
	if f.FieldType == "descriptive" {
		return nil
	}
	var ds []Detection
	if f.FieldType == "file" {
		d := Detection{Basis: File, Categories: []Category{Photo, Biometric}, Detail: "file upload"}
		if strings.EqualFold(strings.TrimSpace(f.TextValidationTypeOrShowSlider), "signature") {
			d = Detection{Basis: File, Categories: []Category{Names, Biometric}, Detail: "file upload (signature)"}
		}
		ds = append(ds, d)
	}
	if strings.EqualFold(strings.TrimSpace(f.Identifier), "y") {
		ds = append(ds, Detection{Basis: Flagged, Detail: "flagged Identifier?"})
	}
	v := ValidationOf(f)
	for _, x := range validations {
		if v != "" && MatchValidation(x.pattern, v) {
			ds = append(ds, Detection{Basis: Validation, Categories: []Category{x.cat}, Detail: "validation " + v})
			break
		}
	}
	ds = append(ds, byName(f)...)
	if strings.HasPrefix(v, "date") {
		ds = append(ds, Detection{Basis: Date, Categories: []Category{Dates}, Detail: "validation " + v})
	}
	if IsFreeText(f) {
		d := Detection{Basis: FreeText, Detail: "unvalidated " + f.FieldType + " (may hold any identifier)"}
		if v != "" {
			d.Detail = "validation " + v + " (may hold any identifier)"
		}
		ds = append(ds, d)
	}
	return ds
}

// byName runs the lexicon over the field's name.
func byName(f messages.Field) []Detection {
	toks := Tokens(f.FieldName)
	coded := Coded(f.FieldType)
	var out []Detection
	seen := map[Category]bool{}
	for _, i := range candidates(toks) {
		e := lexicon[i]
		if coded && !e.coded {
			continue
		}
		if !e.matches(toks) {
			continue
		}
		var fresh []Category
		for _, c := range e.cats {
			if !seen[c] {
				seen[c] = true
				fresh = append(fresh, c)
			}
		}
		if len(fresh) == 0 {
			continue
		}
		d := Detection{Basis: Name, Categories: fresh, Detail: "name part '" + strings.Join(e.seq, " ") + "'"}
		if len(e.seq) > 1 {
			d.Detail = "name parts '" + strings.Join(e.seq, " ") + "'"
		}
		if e.age {
			d.Basis, d.Detail = Age, "name looks like an age"
		}
		out = append(out, d)
	}
	return out
}

// candidates are the lexicon entries whose first word is one of the
// tokens, in lexicon order.
func candidates(toks []string) []int {
	var out []int
	for _, t := range toks {
		out = append(out, byFirst[t]...)
	}
	sort.Ints(out)
	return slices.Compact(out)
}

func (e entry) matches(toks []string) bool {
	n := len(e.seq)
	for i := 0; i+n <= len(toks); i++ {
		if !equal(toks[i:i+n], e.seq) {
			continue
		}
		if i > 0 && in(toks[i-1], e.notBefore) {
			continue
		}
		if i+n < len(toks) && in(toks[i+n], e.notAfter) {
			continue
		}
		others := append(append([]string(nil), toks[:i]...), toks[i+n:]...)
		if e.with == nil && !e.alone {
			return true
		}
		for _, o := range others {
			if in(o, e.with) {
				return true
			}
		}
		if e.alone && onlyQualifiers(others) {
			return true
		}
	}
	return false
}

func onlyQualifiers(ts []string) bool {
	for _, t := range ts {
		if !isDigits(t) && !in(t, qualifiers) {
			return false
		}
	}
	return true
}

func equal(a, b []string) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
