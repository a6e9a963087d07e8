package policy

import (
	"fmt"
	"sort"
	"strings"

	"github.com/redcap-relay/relay/messages"
)

// DestinationError lists every field the destination cannot take.
type DestinationError struct {
	Policy     string
	Site       string
	Mismatches []string
}

func (e *DestinationError) Error() string {
	return fmt.Sprintf("policy %s for site %s: the destination's data dictionary cannot take %d field(s):\n  - %s",
		e.Policy, e.Site, len(e.Mismatches), strings.Join(e.Mismatches, "\n  - "))
}

// CheckDestination checks that every field the policy writes exists in the
// destination's data dictionary with a type, validation and choices that
// can hold what the rule produces. It lists every mismatch.
func (c *Compiled) CheckDestination(dest []messages.Field) error {
	var ms []string
	add := func(format string, a ...any) { ms = append(ms, fmt.Sprintf(format, a...)) }
	if len(dest) == 0 {
		return &DestinationError{Policy: c.policy.base(), Site: c.opts.Site, Mismatches: []string{"the destination's data dictionary is empty"}}
	}
	byName := map[string]*messages.Field{}
	forms := map[string]bool{}
	for i := range dest {
		byName[dest[i].FieldName] = &dest[i]
		forms[dest[i].FormName] = true
	}
	if dest[0].FieldName != c.idDest {
		add("record ID: the destination's record-ID field is %s but the policy writes the ID to %s (add rename: {%s: %s})", dest[0].FieldName, c.idDest, c.idField, dest[0].FieldName)
	} else if v := validation(dest[0]); v != "" {
		add("record ID %s: the destination validates it as %s, but IDs look like \"%s-...\"", c.idDest, v, c.opts.Namespace)
	}
	for _, fp := range c.plans {
		d, ok := byName[fp.dest]
		if !ok {
			hint := ""
			if fp.dest == fp.name {
				hint = " (add it at the destination, or rename it to an existing field)"
			}
			add("field %s → %s: not in the destination's data dictionary%s", fp.name, fp.dest, hint)
			continue
		}
		if msg := compatible(fp, *d); msg != "" {
			add("field %s → %s: %s", fp.name, fp.dest, msg)
		}
	}
	for _, fp := range c.files {
		d, ok := byName[fp.Dest]
		switch {
		case !ok:
			add("file field %s → %s: not in the destination's data dictionary", fp.Field, fp.Dest)
		case d.FieldType != "file":
			add("file field %s → %s: the destination field is %s, not a file-upload field", fp.Field, fp.Dest, describe(*d))
		case validation(*d) == "signature":
			add("file field %s → %s: the destination field is a signature field, which REDCap does not let the API fill: make it a plain file-upload field", fp.Field, fp.Dest)
		}
	}
	for _, col := range sortedKeys(c.completeDest) {
		form := strings.TrimSuffix(c.completeDest[col], "_complete")
		if !forms[form] {
			add("%s → %s: the destination has no form %s (rename the column to a destination form's _complete)", col, c.completeDest[col], form)
		}
	}
	if len(ms) > 0 {
		sort.Strings(ms)
		return &DestinationError{Policy: c.policy.base(), Site: c.opts.Site, Mismatches: ms}
	}
	return nil
}

var choiceTypes = map[string]bool{"radio": true, "dropdown": true, "yesno": true, "truefalse": true, "sql": true}

// compatible says why dest cannot hold what fp writes ("" when it can).
func compatible(fp *fieldPlan, dest messages.Field) string {
	src := fp.field
	sv, dv := validation(src), validation(dest)
	switch dest.FieldType {
	case "descriptive", "file", "calc":
		return fmt.Sprintf("the destination field is a %s field: it cannot be imported", dest.FieldType)
	}
	codes := func() []string {
		var out []string
		for _, c := range choiceCodes(src) {
			if r, ok := fp.recode[c]; ok {
				c = r
			}
			out = append(out, c)
		}
		return out
	}
	missingCodes := func() string {
		have := map[string]bool{}
		for _, c := range choiceCodes(dest) {
			have[c] = true
		}
		var miss []string
		for _, c := range codes() {
			if !have[c] {
				miss = append(miss, c)
			}
		}
		if len(miss) > 0 {
			return fmt.Sprintf("codes %s are not choices at the destination (add recode.%s)", strings.Join(miss, ", "), src.FieldName)
		}
		return ""
	}
	if src.FieldType == "checkbox" {
		if dest.FieldType != "checkbox" {
			return fmt.Sprintf("a checkbox goes into a %s field", dest.FieldType)
		}
		return missingCodes()
	}
	if dest.FieldType == "checkbox" {
		return fmt.Sprintf("a %s field goes into a checkbox", src.FieldType)
	}
	if choiceTypes[src.FieldType] && fp.action == Keep {
		if choiceTypes[dest.FieldType] {
			if dest.FieldType == "sql" || src.FieldType == "sql" {
				return ""
			}
			return missingCodes()
		}
		if dest.FieldType == "text" && dv == "" {
			return ""
		}
		return fmt.Sprintf("a %s field goes into %s", src.FieldType, describe(dest))
	}
	if choiceTypes[dest.FieldType] {
		if fp.action == Keep && (src.FieldType == "slider" || src.FieldType == "calc" || (src.FieldType == "text" && (sv == "integer" || strings.HasPrefix(sv, "number")))) {
			return "" // numbers into coded choices: REDCap validates each value at import
		}
		return fmt.Sprintf("%s (rule %s) goes into a %s field", describe(src), fp.action, dest.FieldType)
	}
	// dest is text, notes or slider.
	if dest.FieldType == "slider" {
		if fp.action == Keep && (src.FieldType == "slider" || sv == "integer" || src.FieldType == "calc") {
			return ""
		}
		return fmt.Sprintf("%s (rule %s) goes into a slider", describe(src), fp.action)
	}
	if dest.FieldType == "notes" {
		return ""
	}
	// dest is text: what does the rule produce?
	out := producedValidation(fp)
	if dv == "" || out == dv {
		return ""
	}
	switch {
	case out == "integer" && strings.HasPrefix(dv, "number"):
		return ""
	case strings.HasPrefix(out, "date_") && strings.HasPrefix(dv, "date_"),
		strings.HasPrefix(out, "datetime_seconds") && strings.HasPrefix(dv, "datetime_seconds"),
		strings.HasPrefix(out, "datetime_") && !strings.HasPrefix(out, "datetime_seconds") && strings.HasPrefix(dv, "datetime_") && !strings.HasPrefix(dv, "datetime_seconds"):
		return "" // same stored format, shown differently
	case strings.HasPrefix(out, "number") && strings.HasPrefix(dv, "number") && !strings.Contains(out, "comma") && !strings.Contains(dv, "comma"):
		return ""
	}
	what := out
	if what == "" {
		what = "free text"
	}
	return fmt.Sprintf("rule %s writes %s, but the destination validates it as %s", fp.action, what, dv)
}

// producedValidation is the validation the rule's output satisfies.
func producedValidation(fp *fieldPlan) string {
	sv := validation(fp.field)
	switch fp.action {
	case Year:
		return "integer"
	case Zip3, Hash:
		return ""
	case CapAge:
		if sv == "" {
			return "integer"
		}
		return sv
	}
	switch fp.field.FieldType {
	case "slider", "calc":
		return "number"
	case "notes":
		return ""
	}
	return sv
}
