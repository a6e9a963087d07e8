package vlmd

import (
	"fmt"
	"html"
	"regexp"
	"strconv"
	"strings"

	"github.com/redcap-relay/relay/messages"
)

// Mapping from a REDCap data dictionary, as HEAL's converter (healdata-utils,
// `vlmd extract --inputtype redcap`) does it: section = form, title = label,
// description = section header + label (HTML stripped, section headers
// carried down within a form), types from the field type and text
// validation, choices as enum + enumLabels, one boolean per checkbox choice,
// descriptive fields dropped. Unlike it, this keeps min/max, required and
// @CHARLIMIT in constraints and the REDCap type, validation, branching logic
// and field note in custom, and maps every field the data holds (sql, file,
// unknown types) with a warning instead of dropping it.

// Warning is a field the mapping could not describe fully.
type Warning struct {
	Field   string
	Message string
}

func (w Warning) String() string { return "field " + w.Field + ": " + w.Message }

// FromREDCap maps a REDCap data dictionary to VLMD fields in export column
// order: each form's fields (checkboxes expanded to field___code), then its
// <form>_complete. forms gives form labels (Export Instruments); a form
// missing from it is labelled by its name.
func FromREDCap(dict []messages.Field, forms []messages.Instrument) ([]Field, []Warning) {
	labels := map[string]string{}
	for _, in := range forms {
		labels[in.InstrumentName] = in.InstrumentLabel
	}
	var out []Field
	var warns []Warning
	section := ""
	for i, f := range dict {
		if i == 0 || f.FormName != dict[i-1].FormName {
			section = ""
		}
		if h := clean(f.SectionHeader); h != "" {
			section = h
		}
		fs, w := mapField(f, section)
		out = append(out, fs...)
		warns = append(warns, w...)
		if i == len(dict)-1 || dict[i+1].FormName != f.FormName {
			out = append(out, FormComplete(f.FormName, labels[f.FormName]))
		}
	}
	return out, warns
}

// FormComplete describes REDCap's <form>_complete status column.
func FormComplete(form, label string) Field {
	if label == "" {
		label = form
	}
	return Field{
		Section: form, Name: form + "_complete", Title: label + " complete?",
		Description: "Form status of " + label + " (REDCap): 0 Incomplete, 1 Unverified, 2 Complete",
		Type:        "integer",
		Constraints: &Constraints{Enum: []string{"0", "1", "2"}},
		EnumLabels:  Pairs{{"0", "Incomplete"}, {"1", "Unverified"}, {"2", "Complete"}},
		Custom:      Pairs{{"redcapFieldType", "form status"}},
	}
}

// mapField maps one dictionary row (none for descriptive fields, one per
// choice for a checkbox).
func mapField(f messages.Field, section string) ([]Field, []Warning) {
	label := clean(f.FieldLabel)
	base := Field{Section: f.FormName, Name: f.FieldName, Title: label, Description: describe(section, label, "")}
	if label == "" {
		base.Title = "No field label for this variable"
	}
	base.Custom = Pairs{{"redcapFieldType", f.FieldType}}
	if v := validation(f); v != "" && f.FieldType == "text" {
		base.Custom.Set("redcapValidation", v)
	}
	if bl := strings.TrimSpace(f.BranchingLogic); bl != "" {
		base.Custom.Set("branchingLogic", bl)
	}
	if n := clean(f.FieldNote); n != "" {
		base.Custom.Set("fieldNote", n)
	}
	if strings.EqualFold(strings.TrimSpace(f.RequiredField), "y") {
		base.Cons().Required = true
	}
	if n, ok := charLimit(f.FieldAnnotation); ok {
		base.Cons().MaxLength = &n
	}
	var warns []Warning
	warn := func(format string, a ...any) {
		warns = append(warns, Warning{Field: f.FieldName, Message: fmt.Sprintf(format, a...)})
	}
	switch f.FieldType {
	case "descriptive":
		return nil, nil
	case "text":
		if msg := mapText(&base, f); msg != "" {
			warn("%s", msg)
		}
	case "notes", "file":
		base.Type = "string"
	case "radio", "dropdown":
		choices, bad := parseChoices(f.SelectChoicesOrCalculations)
		if len(choices) == 0 {
			warn("%s field without choices: mapped as string", f.FieldType)
			base.Type = "string"
			break
		}
		if bad != "" {
			warn("choice %q has no code: left out of the enum", bad)
		}
		base.Type = codeType(choices)
		for _, c := range choices {
			base.Cons().Enum = append(base.Cons().Enum, c.Key)
		}
		base.EnumLabels = choices
	case "checkbox":
		choices, bad := parseChoices(f.SelectChoicesOrCalculations)
		if bad != "" {
			warn("choice %q has no code: no column for it", bad)
		}
		if len(choices) == 0 {
			warn("checkbox without choices: it has no data columns")
		}
		var out []Field
		for _, c := range choices {
			cf := base
			cf.Constraints = nil
			if base.Constraints != nil {
				cons := *base.Constraints
				cons.MaxLength = nil
				cons.Required = false // every choice column holds 0 or 1
				cf.Constraints = &cons
			}
			cf.Custom = append(Pairs{}, base.Custom...)
			cf.Custom.Set("checkboxCode", c.Key)
			cf.Name = f.FieldName + "___" + CheckboxSuffix(c.Key)
			cf.Title = base.Title + ": " + c.Value
			cf.Description = describe(section, label, c.Value)
			boolean(&cf, "Unchecked", "Checked")
			out = append(out, cf)
		}
		return out, warns
	case "yesno":
		boolean(&base, "No", "Yes")
	case "truefalse":
		boolean(&base, "False", "True")
	case "slider":
		mapSlider(&base, f)
	case "calc":
		base.Type = "number"
		if calc := strings.TrimSpace(f.SelectChoicesOrCalculations); calc != "" {
			base.Description += " [Calculation: " + calc + "]"
		}
	case "sql":
		base.Type = "string"
		warn("sql field: its choices come from a database query REDCap does not export; mapped as string without enum")
	default:
		base.Type = "any"
		warn("REDCap field type %q has no VLMD mapping: typed any", f.FieldType)
	}
	base.Finish()
	return []Field{base}, warns
}

func describe(section, label, choice string) string {
	d := label
	if section != "" {
		d = section + ": " + label
	}
	if choice != "" {
		d += " [" + choice + "]"
	}
	if d = strings.TrimSpace(d); d == "" {
		return "No field label for this variable"
	}
	return d
}

// boolean is HEAL's converter's yesno/truefalse/checkbox mapping: a boolean
// stored as 0/1 with labels.
func boolean(f *Field, no, yes string) {
	f.Type = "boolean"
	f.Cons().Enum = []string{"0", "1"}
	f.EnumLabels = Pairs{{"0", no}, {"1", yes}}
	f.Finish()
}

// textTypes maps REDCap text validations (as stored in raw exports: dates
// always Y-M-D) to a VLMD type, format and pattern.
var textTypes = map[string]struct{ typ, format, pattern string }{
	"":                         {"string", "", ""},
	"date_ymd":                 {"date", "%Y-%m-%d", ""},
	"date_mdy":                 {"date", "%Y-%m-%d", ""},
	"date_dmy":                 {"date", "%Y-%m-%d", ""},
	"datetime_ymd":             {"datetime", "%Y-%m-%d %H:%M", ""},
	"datetime_mdy":             {"datetime", "%Y-%m-%d %H:%M", ""},
	"datetime_dmy":             {"datetime", "%Y-%m-%d %H:%M", ""},
	"datetime_seconds_ymd":     {"datetime", "%Y-%m-%d %H:%M:%S", ""},
	"datetime_seconds_mdy":     {"datetime", "%Y-%m-%d %H:%M:%S", ""},
	"datetime_seconds_dmy":     {"datetime", "%Y-%m-%d %H:%M:%S", ""},
	"time":                     {"time", "%H:%M", ""},
	"time_hh_mm_ss":            {"time", "%H:%M:%S", ""},
	"time_mm_ss":               {"time", "%M:%S", ""},
	"integer":                  {"integer", "", ""},
	"number":                   {"number", "", ""},
	"email":                    {"string", "email", ""},
	"alpha_only":               {"string", "", `^[a-zA-Z]+$`},
	"phone":                    {"string", "", `^\([0-9]{3}\) [0-9]{3}-[0-9]{4}$`},
	"phone_australia":          {"string", "", `^[0-9 ()+-]+$`},
	"phone_uk":                 {"string", "", `^[0-9 ()+-]+$`},
	"ssn":                      {"string", "", `^[0-9]{3}-[0-9]{2}-[0-9]{4}$`},
	"zipcode":                  {"string", "", `^[0-9]{5}(-[0-9]{4})?$`},
	"postalcode_australia":     {"string", "", `^[0-9]{4}$`},
	"postalcode_canada":        {"string", "", `^[A-Za-z][0-9][A-Za-z] ?[0-9][A-Za-z][0-9]$`},
	"postalcode_french":        {"string", "", `^[0-9]{5}$`},
	"postalcode_germany":       {"string", "", `^[0-9]{5}$`},
	"mrn_10d":                  {"string", "", `^[0-9]{10}$`},
	"vmrn":                     {"string", "", `^[0-9]{10}$`},
	"mrn_generic":              {"string", "", ""},
	"number_comma_decimal":     {"number", "", ""},
	"number_1dp":               {"number", "", ""},
	"number_2dp":               {"number", "", ""},
	"number_3dp":               {"number", "", ""},
	"number_4dp":               {"number", "", ""},
	"number_1dp_comma_decimal": {"number", "", ""},
	"number_2dp_comma_decimal": {"number", "", ""},
	"number_3dp_comma_decimal": {"number", "", ""},
	"number_4dp_comma_decimal": {"number", "", ""},
}

// mapText sets a text field's type, format, pattern and range; it returns a
// warning for a validation it does not know.
func mapText(f *Field, src messages.Field) string {
	v := validation(src)
	t, ok := textTypes[v]
	msg := ""
	if !ok {
		t = textTypes[""]
		msg = fmt.Sprintf("text validation %q has no VLMD mapping: typed string without a pattern", v)
	}
	f.Type, f.Format = t.typ, t.format
	if t.pattern != "" {
		f.Cons().Pattern = t.pattern
	}
	if strings.Contains(v, "comma_decimal") {
		f.Custom.Set("decimalChar", ",")
	}
	setRange(f, src.TextValidationMin, src.TextValidationMax)
	return msg
}

// setRange puts whole-number bounds of numeric fields into constraints and
// every other bound (decimals, dates, "today") into custom.
func setRange(f *Field, lo, hi string) {
	numeric := f.Type == "integer" || f.Type == "number"
	put := func(v string, set func(int64), key string) {
		if v = strings.TrimSpace(v); v == "" {
			return
		}
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && numeric {
			set(n)
			return
		}
		f.Custom.Set(key, v)
	}
	put(lo, func(n int64) { f.Cons().Minimum = &n }, "minimum")
	put(hi, func(n int64) { f.Cons().Maximum = &n }, "maximum")
}

// mapSlider: an integer 0-100 (or REDCap's own range) with the slider's
// anchor labels at its bottom, middle and top.
func mapSlider(f *Field, src messages.Field) {
	f.Type = "integer"
	lo, hi := int64(0), int64(100)
	if n, err := strconv.ParseInt(strings.TrimSpace(src.TextValidationMin), 10, 64); err == nil {
		lo = n
	}
	if n, err := strconv.ParseInt(strings.TrimSpace(src.TextValidationMax), 10, 64); err == nil {
		hi = n
	}
	f.Cons().Minimum, f.Cons().Maximum = &lo, &hi
	anchors := strings.Split(src.SelectChoicesOrCalculations, "|")
	at := []int64{lo, (lo + hi) / 2, hi}
	if len(anchors) == 2 {
		at = []int64{lo, hi}
	}
	for i, a := range anchors {
		if a = clean(a); a != "" && i < len(at) {
			f.EnumLabels.Set(strconv.FormatInt(at[i], 10), a)
		}
	}
}

// parseChoices reads "1, Yes | 0, No"; bad is the first choice without a
// code.
func parseChoices(s string) (Pairs, string) {
	var out Pairs
	bad := ""
	for _, part := range strings.Split(s, "|") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		code, label, ok := strings.Cut(part, ",")
		code = strings.TrimSpace(code)
		if !ok || code == "" {
			if bad == "" {
				bad = part
			}
			continue
		}
		out = append(out, Pair{code, clean(label)})
	}
	return out, bad
}

// codeType is integer when every code is, number when every code is
// numeric, else string (HEAL's converter looks at the codes the same way).
func codeType(cs Pairs) string {
	typ := "integer"
	for _, c := range cs {
		if _, err := strconv.ParseInt(c.Key, 10, 64); err == nil {
			continue
		}
		if _, err := strconv.ParseFloat(c.Key, 64); err == nil {
			typ = "number"
			continue
		}
		return "string"
	}
	return typ
}

// CheckboxSuffix is REDCap's export column suffix for a checkbox code:
// lower case, every character but letters and digits becomes '_'.
func CheckboxSuffix(code string) string {
	b := []byte(strings.ToLower(code))
	for i, ch := range b {
		if !(ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9') {
			b[i] = '_'
		}
	}
	return string(b)
}

func validation(f messages.Field) string {
	return strings.ToLower(strings.TrimSpace(f.TextValidationTypeOrShowSlider))
}

var (
	tagRe       = regexp.MustCompile(`<[^>]*>`)
	spaceRe     = regexp.MustCompile(`\s+`)
	charLimitRe = regexp.MustCompile(`@CHARLIMIT\s*=\s*["']?\s*([0-9]+)`)
)

// clean strips HTML tags and entities and collapses white space.
func clean(s string) string {
	s = tagRe.ReplaceAllString(s, " ")
	s = html.UnescapeString(s)
	return strings.TrimSpace(spaceRe.ReplaceAllString(s, " "))
}

// charLimit reads REDCap's @CHARLIMIT action tag: the field's max length.
func charLimit(annotation string) (int, bool) {
	m := charLimitRe.FindStringSubmatch(annotation)
	if m == nil {
		return 0, false
	}
	n, err := strconv.Atoi(m[1])
	return n, err == nil
}
