package policy

import (
	"strings"

	"github.com/redcap-relay/relay/messages"
)

// Category is why a field is treated as a possible identifier.
type Category string

const (
	CatFlagged    Category = "flagged"    // Identifier? = y in the dictionary
	CatValidation Category = "validation" // email, phone, ssn, mrn, zipcode, postal code
	CatName       Category = "name"       // the field name looks like name/address/dob/...
	CatAge        Category = "age"        // an age: Safe Harbor groups 90 and over
	CatDate       Category = "date"       // date or datetime validation
	CatFreeText   Category = "free_text"  // unvalidated text or notes
	CatFile       Category = "file"       // file upload or signature: never transferred
)

// Detection is one reason a field looks like an identifier.
type Detection struct {
	Category Category
	Detail   string // e.g. "validation ssn", "name contains 'phone'"
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

// Identifier validations (REDCap's built-in names). A trailing * is a prefix.
var idValidations = []string{"email", "phone*", "ssn", "mrn_*", "vmrn", "zipcode", "postalcode_*"}

// Name patterns. Substrings are distinctive enough anywhere in a name
// ("ptname", "home_phone"); tokens must be a whole '_'-separated part so that
// "ethnicity" is not a city and "lastly" not a last name.
var (
	nameSubstrings = []string{"name", "address", "street", "birth", "email", "e_mail", "phone", "zip", "ssn", "mrn", "postal", "fax"}
	nameTokens     = []string{"first", "last", "city", "dob", "addr", "surname", "initials", "ip"}
	ageTokens      = []string{"age", "age_yrs", "ageyrs", "age_years"}
)

// A coded field (a choice list) cannot hold a typed name, e-mail or phone
// number, so for these only place and birth words count ("med_name_code"
// is a drug list; "home_city" as a dropdown is still a place).
var (
	coded    = map[string]bool{"radio": true, "dropdown": true, "checkbox": true, "yesno": true, "truefalse": true, "slider": true}
	geoWords = map[string]bool{"address": true, "addr": true, "street": true, "zip": true, "postal": true, "city": true, "birth": true, "dob": true}
)

func matchValidation(pattern, v string) bool {
	if strings.HasSuffix(pattern, "*") {
		return strings.HasPrefix(v, strings.TrimSuffix(pattern, "*"))
	}
	return pattern == v
}

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

// isFreeText: text a person types without a constraint on its shape.
// alpha_only counts: letters-only is exactly how names are often entered.
func isFreeText(f messages.Field) bool {
	switch f.FieldType {
	case "notes":
		return true
	case "text":
		v := validation(f)
		return v == "" || v == "alpha_only"
	}
	return false
}

// Detect lists why a field looks like an identifier; nil means it does not.
func Detect(f messages.Field) []Detection {
	var ds []Detection
	if f.FieldType == "descriptive" {
		return nil
	}
	if f.FieldType == "file" {
		return []Detection{{CatFile, "file upload" + map[bool]string{true: " (signature)", false: ""}[validation(f) == "signature" || f.TextValidationTypeOrShowSlider == "signature"]}}
	}
	if strings.EqualFold(strings.TrimSpace(f.Identifier), "y") {
		ds = append(ds, Detection{CatFlagged, "flagged Identifier?"})
	}
	v := validation(f)
	for _, p := range idValidations {
		if v != "" && matchValidation(p, v) {
			ds = append(ds, Detection{CatValidation, "validation " + v})
			break
		}
	}
	name := strings.ToLower(f.FieldName)
	if m := nameMatch(name); m != "" && (!coded[f.FieldType] || geoWords[m]) {
		ds = append(ds, Detection{CatName, "name contains '" + m + "'"})
	}
	for _, t := range ageTokens {
		if hasToken(name, t) {
			ds = append(ds, Detection{CatAge, "name looks like an age"})
			break
		}
	}
	if dateKindOf(f) != notDate {
		ds = append(ds, Detection{CatDate, "validation " + v})
	}
	if isFreeText(f) {
		if v == "" {
			ds = append(ds, Detection{CatFreeText, "unvalidated " + f.FieldType})
		} else {
			ds = append(ds, Detection{CatFreeText, "validation " + v})
		}
	}
	return ds
}

func nameMatch(name string) string {
	for _, s := range nameSubstrings {
		if strings.Contains(name, s) {
			return s
		}
	}
	for _, t := range nameTokens {
		if hasToken(name, t) {
			return t
		}
	}
	return ""
}

// hasToken: t is a whole part of name split on '_' and digits (multi-part
// tokens such as "age_yrs" match as a run of parts).
func hasToken(name, t string) bool {
	parts := strings.FieldsFunc(name, func(r rune) bool { return r == '_' || (r >= '0' && r <= '9') })
	tp := strings.Split(t, "_")
	for i := 0; i+len(tp) <= len(parts); i++ {
		ok := true
		for j := range tp {
			if parts[i+j] != tp[j] {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
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
	case hasCategory(ds, CatAge) && coded[f.FieldType]:
		return []string{Drop, "keep with a justification (age groups)"}
	case hasCategory(ds, CatAge):
		return []string{CapAge, Drop}
	case hasCategory(ds, CatFreeText) && !hasStrong(ds):
		return []string{Drop}
	}
	return []string{Drop, Hash}
}
