package policy

import (
	"strings"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/phi"
)

// Category is why a field is treated as a possible identifier: the basis
// of the shared detector's (services/internal/phi) detection.
type Category = phi.Basis

const (
	CatFlagged    = phi.Flagged    // Identifier? = y in the dictionary
	CatValidation = phi.Validation // email, phone, ssn, mrn, zipcode, postal code
	CatName       = phi.Name       // the field name looks like name/address/dob/phone/...
	CatAge        = phi.Age        // an age: Safe Harbor groups 90 and over
	CatDate       = phi.Date       // date or datetime validation
	CatFreeText   = phi.FreeText   // unvalidated text or notes
	CatFile       = phi.File       // file upload or signature: never transferred
)

// Detection is one reason a field looks like an identifier.
type Detection struct {
	Category Category
	// Detail says what was seen and the HIPAA Safe Harbor categories it
	// comes from, e.g. "name part 'phone' [(D) telephone numbers]".
	Detail string
	HIPAA  []phi.Category
}

func (d Detection) String() string { return d.Detail }

// strong categories need an explicit rule (field, validation or form);
// dates and free text may also be covered by the dates/free_text defaults.
func (d Detection) strong() bool {
	switch d.Category {
	case CatFlagged, CatValidation, CatName, CatAge:
		return true
	}
	return false
}

// Detect lists why a field looks like an identifier; nil means it does
// not. It is the shared detector's answer, the same the protocol check
// uses for its "not flagged Identifier?" findings.
func Detect(f messages.Field) []Detection {
	var out []Detection
	for _, d := range phi.Detect(f) {
		out = append(out, Detection{Category: d.Basis, Detail: d.String(), HIPAA: d.Categories})
	}
	return out
}

// coded fields hold codes from a list (see phi.Coded).
func coded(fieldType string) bool { return phi.Coded(fieldType) }

func matchValidation(pattern, v string) bool { return phi.MatchValidation(pattern, v) }

// validation is the field's text validation ("" for non-text fields and
// sliders, whose column holds the slider flag).
func validation(f messages.Field) string {
	if f.FieldType != "text" {
		return ""
	}
	return strings.TrimSpace(f.TextValidationTypeOrShowSlider)
}

// dateKind says which date format REDCap exports for a field.
type dateKind int

const (
	notDate dateKind = iota
	kindDate
	kindDatetime        // YYYY-MM-DD HH:MM
	kindDatetimeSeconds // YYYY-MM-DD HH:MM:SS
)

func dateKindOf(f messages.Field) dateKind {
	v := validation(f)
	switch {
	case strings.HasPrefix(v, "datetime_seconds"):
		return kindDatetimeSeconds
	case strings.HasPrefix(v, "datetime"):
		return kindDatetime
	case strings.HasPrefix(v, "date"):
		return kindDate
	}
	return notDate
}

func hasCategory(ds []Detection, c Category) bool {
	for _, d := range ds {
		if d.Category == c {
			return true
		}
	}
	return false
}

func hasStrong(ds []Detection) bool {
	for _, d := range ds {
		if d.strong() {
			return true
		}
	}
	return false
}

// suggest names the rules that fit a detected field, best first.
func suggest(f messages.Field, ds []Detection) []string {
	v := validation(f)
	switch {
	case hasCategory(ds, CatDate):
		return []string{Shift, Year, Drop}
	case v == "zipcode" || (strings.Contains(strings.ToLower(f.FieldName), "zip") && f.FieldType == "text" && (v == "" || v == "integer")):
		return []string{Zip3, Drop}
	case hasCategory(ds, CatAge) && coded(f.FieldType):
		return []string{Drop, "keep with a justification (age groups)"}
	case hasCategory(ds, CatAge):
		return []string{CapAge, Drop}
	case hasCategory(ds, CatFreeText) && !hasStrong(ds):
		return []string{Drop}
	}
	return []string{Drop, Hash}
}
