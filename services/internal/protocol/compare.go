package protocol

import (
	"fmt"
	"sort"
	"strings"

	"github.com/redcap-relay/relay/messages"
)

// compareField lists the differences of a site field from the protocol's.
// Logic in the site's field (branching, formulas) is read through tr,
// which gives the site's renamed variables their library names.
func compareField(pf, sf messages.Field, labels bool, tr func(string) string) []messages.ProtocolFinding {
	var out []messages.ProtocolFinding
	add := func(sev, kind, exp, act, msg string) {
		out = append(out, messages.ProtocolFinding{Severity: sev, Kind: kind, Expected: exp, Actual: act, Message: msg})
	}
	name := sf.FieldName
	pt, st := pf.FieldType, sf.FieldType
	if pt != st {
		tc := typeChange(pf, sf)
		f := messages.ProtocolFinding{Severity: messages.SeverityError, Kind: KindTypeDiffers, Expected: pt, Actual: st,
			Message: fmt.Sprintf("field %s is a %s field; the protocol has %s: %s", name, st, pt, tc.why)}
		if tc.keepsCodes {
			f.Severity = messages.SeverityWarning
		}
		if len(tc.recode) > 0 {
			f.Match = &messages.ProtocolMatch{By: byName, Recode: tc.recode}
		}
		out = append(out, f)
	}
	switch {
	case pt != st && (isBinary(pt) || isBinary(st)):
		// yes/no and true/false store fixed codes: typeChange said it all
	case hasChoices(pt) && hasChoices(st):
		sc, err := ParseChoices(sf.SelectChoicesOrCalculations)
		if err != nil {
			add(messages.SeverityError, KindChoicesMalformed, "", "", fmt.Sprintf("field %s: bad choices syntax: %v", name, err))
			break
		}
		pc, err := ParseChoices(pf.SelectChoicesOrCalculations)
		if err != nil {
			break // reported as a protocol problem at load
		}
		if !sameCodes(pc, sc) {
			f := messages.ProtocolFinding{Severity: messages.SeverityError, Kind: KindChoicesRecoded, Expected: choicesString(pc), Actual: choicesString(sc),
				Message: fmt.Sprintf("field %s codes its answers differently from the protocol: use the protocol's codes", name)}
			if rec := recodeByLabel(pc, sc); rec != nil {
				f.Match = &messages.ProtocolMatch{By: byName, Recode: rec}
				f.Message = fmt.Sprintf("field %s stores the protocol's answers under other codes (%s): use the protocol's codes, or recode them in the transfer policy", name, recodeString(rec))
			}
			out = append(out, f)
		} else if labels && !sameChoiceLabels(pc, sc) {
			add(messages.SeverityWarning, KindChoiceLabels, choicesString(pc), choicesString(sc),
				fmt.Sprintf("field %s uses the protocol's codes with different answer labels", name))
		}
	case pt == "calc" && st == "calc":
		if normLogic(pf.SelectChoicesOrCalculations) != normLogic(tr(sf.SelectChoicesOrCalculations)) {
			add(messages.SeverityWarning, KindCalcDiffers, pf.SelectChoicesOrCalculations, sf.SelectChoicesOrCalculations,
				fmt.Sprintf("calculated field %s uses a different formula", name))
		}
	case pt == "slider" && st == "slider" && labels:
		if normWording(pf.SelectChoicesOrCalculations) != normWording(sf.SelectChoicesOrCalculations) {
			add(messages.SeverityWarning, KindChoiceLabels, pf.SelectChoicesOrCalculations, sf.SelectChoicesOrCalculations,
				fmt.Sprintf("slider %s has different anchor labels", name))
		}
	}
	if pt == "text" && st == "text" {
		pv, sv := normValidation(pf.TextValidationTypeOrShowSlider), normValidation(sf.TextValidationTypeOrShowSlider)
		if pv != sv {
			add(messages.SeverityError, KindValidation, orNone(pv), orNone(sv),
				fmt.Sprintf("field %s is validated as %s; the protocol has %s", name, orNone(sv), orNone(pv)))
		}
	}
	if (pt == "text" && st == "text") || (pt == "slider" && st == "slider") {
		if !sameBound(pf.TextValidationMin, sf.TextValidationMin) || !sameBound(pf.TextValidationMax, sf.TextValidationMax) {
			exp := rangeString(pf.TextValidationMin, pf.TextValidationMax)
			act := rangeString(sf.TextValidationMin, sf.TextValidationMax)
			add(messages.SeverityError, KindRange, exp, act, fmt.Sprintf("field %s accepts %s; the protocol has %s", name, act, exp))
		}
	}
	if isReq(pf.RequiredField) != isReq(sf.RequiredField) {
		add(messages.SeverityWarning, KindRequired, yesNo(isReq(pf.RequiredField)), yesNo(isReq(sf.RequiredField)),
			fmt.Sprintf("field %s required flag differs from the protocol", name))
	}
	if normLogic(pf.BranchingLogic) != normLogic(tr(sf.BranchingLogic)) {
		add(messages.SeverityWarning, KindBranching, pf.BranchingLogic, sf.BranchingLogic,
			fmt.Sprintf("field %s has different branching logic", name))
	}
	if labels && normWording(pf.FieldLabel) != normWording(sf.FieldLabel) {
		add(messages.SeverityWarning, KindLabel, pf.FieldLabel, sf.FieldLabel, fmt.Sprintf("field %s has a different label", name))
	}
	return out
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func isReq(s string) bool { return strings.EqualFold(strings.TrimSpace(s), "y") }

// normValidation maps legacy validation names to today's.
func normValidation(v string) string {
	v = strings.ToLower(strings.TrimSpace(v))
	switch v {
	case "date":
		return "date_ymd"
	case "datetime":
		return "datetime_ymd"
	case "datetime_seconds":
		return "datetime_seconds_ymd"
	case "int":
		return "integer"
	case "float":
		return "number"
	}
	return v
}

func sameBound(a, b string) bool {
	a, b = strings.TrimSpace(a), strings.TrimSpace(b)
	if a == b {
		return true
	}
	var fa, fb float64
	if _, err := fmt.Sscan(a, &fa); err != nil {
		return false
	}
	if _, err := fmt.Sscan(b, &fb); err != nil {
		return false
	}
	return fa == fb
}

func rangeString(min, max string) string {
	if min == "" && max == "" {
		return "any value"
	}
	return "[" + orDots(min) + ", " + orDots(max) + "]"
}

func orDots(s string) string {
	if s == "" {
		return "…"
	}
	return s
}

func sameCodes(a, b []Choice) bool {
	if len(a) != len(b) {
		return false
	}
	set := make(map[string]bool, len(a))
	for _, c := range a {
		set[c.Code] = true
	}
	for _, c := range b {
		if !set[c.Code] {
			return false
		}
	}
	// same set of codes, but a code that now means another answer is a recode
	la := labelsByCode(a)
	codeOf := make(map[string]string, len(la))
	for code, l := range la {
		codeOf[l] = code
	}
	for _, c := range b {
		l := squash(c.Label)
		if code, ok := codeOf[l]; ok && code != c.Code && la[c.Code] != l {
			return false
		}
	}
	return true
}

func labelsByCode(cs []Choice) map[string]string {
	m := make(map[string]string, len(cs))
	for _, c := range cs {
		m[c.Code] = squash(c.Label)
	}
	return m
}

func sameChoiceLabels(a, b []Choice) bool {
	la, lb := labelsByCode(a), labelsByCode(b)
	for k, v := range la {
		if lb[k] != v {
			return false
		}
	}
	return true
}

func choicesString(cs []Choice) string {
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = c.Code + ", " + c.Label
	}
	return strings.Join(parts, " | ")
}

// normLogic compares branching logic and formulas without spacing, quote
// style and case of and/or.
func normLogic(s string) string {
	s = strings.ToLower(s)
	s = strings.ReplaceAll(s, "\"", "'")
	return strings.Join(strings.Fields(s), "")
}

// Severity follows the data: a type change that keeps what REDCap stores
// (the same codes in one column) is a warning, one that changes it is an
// error. The README's rule table is this function.
type change struct {
	keepsCodes bool
	why        string
	recode     map[string]string // site code -> protocol code, when labels match
}

func typeChange(pf, sf messages.Field) change {
	pt, st := pf.FieldType, sf.FieldType
	switch {
	case single(pt) && single(st) && !isBinary(pt) && !isBinary(st):
		return change{keepsCodes: true, why: "the same codes in one column, only the display differs"}
	case (isBinary(pt) || single(pt)) && (isBinary(st) || single(st)):
		pc, sc := effectiveChoices(pf), effectiveChoices(sf)
		if pc == nil || sc == nil {
			return change{why: "the answers cannot be compared"}
		}
		if sameCodeSet(pc, sc) {
			return change{keepsCodes: true, why: "it stores the same codes (" + choicesString(sc) + ")"}
		}
		c := change{why: "it stores other codes (" + choicesString(sc) + " where the protocol has " + choicesString(pc) + ")"}
		c.recode = recodeByLabel(pc, sc)
		return c
	case (pt == "checkbox") != (st == "checkbox") && hasChoices(pt) && hasChoices(st):
		return change{why: "a checkbox stores one 0/1 column per answer, a single choice one column"}
	case (pt == "text" && st == "notes" && normValidation(pf.TextValidationTypeOrShowSlider) == "") ||
		(st == "text" && pt == "notes" && normValidation(sf.TextValidationTypeOrShowSlider) == ""):
		return change{keepsCodes: true, why: "both store free text"}
	}
	return change{why: "it stores different values"}
}

// single: one coded answer in one column.
func single(t string) bool { return t == "radio" || t == "dropdown" }

// isBinary: REDCap's fixed 1/0 fields.
func isBinary(t string) bool { return t == "yesno" || t == "truefalse" }

// sameCodeSet: the same codes meaning the same answers. Labels may differ
// in wording (a yes/no field's "Yes" and a radio's "Yes, often" are the
// same code 1) but a code must not mean another answer of the other list.
func sameCodeSet(a, b []Choice) bool {
	if len(a) != len(b) {
		return false
	}
	return sameCodes(a, b)
}

// recodeByLabel maps the site's codes to the protocol's where both lists
// have the same answer labels under different codes; nil otherwise.
func recodeByLabel(pc, sc []Choice) map[string]string {
	if len(pc) != len(sc) {
		return nil
	}
	byLabel := map[string]string{}
	for _, c := range pc {
		byLabel[squash(c.Label)] = c.Code
	}
	if len(byLabel) != len(pc) {
		return nil
	}
	rec := map[string]string{}
	for _, c := range sc {
		code, ok := byLabel[squash(c.Label)]
		if !ok {
			return nil
		}
		if code != c.Code {
			rec[c.Code] = code
		}
	}
	if len(rec) == 0 {
		return nil
	}
	return rec
}

func recodeString(rec map[string]string) string {
	keys := make([]string, 0, len(rec))
	for k := range rec {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = k + " → " + rec[k]
	}
	return strings.Join(parts, ", ")
}

// translateLogic replaces the variable names in REDCap logic ([name],
// [name(code)], [name:value], [event][name]) that renames maps.
func translateLogic(s string, renames map[string]string) string {
	if len(renames) == 0 || !strings.Contains(s, "[") {
		return s
	}
	var b strings.Builder
	for {
		i := strings.IndexByte(s, '[')
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i+1])
		s = s[i+1:]
		j := 0
		for j < len(s) && (s[j] == '_' || (s[j] >= 'a' && s[j] <= 'z') || (s[j] >= '0' && s[j] <= '9') || (s[j] >= 'A' && s[j] <= 'Z')) {
			j++
		}
		if to, ok := renames[s[:j]]; ok && j < len(s) && strings.IndexByte("]():", s[j]) >= 0 {
			b.WriteString(to)
		} else {
			b.WriteString(s[:j])
		}
		s = s[j:]
	}
}
