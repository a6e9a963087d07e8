package protocol

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/redcap-relay/relay/messages"
)

// Report is the per-site verdict; its JSON is the documented report schema
// and the body of relay.protocol.report.<site>.
type Report = messages.ProtocolReport

// Finding kinds.
const (
	KindProtocolEntry     = "protocol_entry_invalid" // the protocol's own entry is broken
	KindInstrumentMissing = "instrument_missing"
	KindInstrumentRenamed = "instrument_renamed"     // found under an alias
	KindSubstituted       = "instrument_substituted" // an allowed substitute is used
	KindMatchedByFields   = "instrument_matched_by_fields"
	KindFieldMissing      = "field_missing"
	KindFieldRenamed      = "field_renamed"
	KindFieldOtherForm    = "field_in_other_form"
	KindFieldExtra        = "field_extra"
	KindTypeDiffers       = "type_differs"
	KindChoicesRecoded    = "choices_recoded"
	KindChoiceLabels      = "choice_labels_differ"
	KindChoicesMalformed  = "choices_malformed"
	KindCalcDiffers       = "calculation_differs"
	KindValidation        = "validation_differs"
	KindRange             = "range_differs"
	KindRequired          = "required_differs"
	KindBranching         = "branching_differs"
	KindLabel             = "label_differs"
	KindEventMissing      = "planned_event_missing"
	KindEventNotMapped    = "event_not_designated"
	KindEventWindow       = "event_window_differs"
	KindNotLongitudinal   = "not_longitudinal"
	KindRepeating         = "repeating_differs"
	KindArmMissing        = "arm_missing"
	KindPHI               = "phi_not_flagged"
)

// instMatch is how one required instrument is implemented at a site.
type instMatch struct {
	in    *Instrument
	def   *Instrument // in itself or the substitute used
	form  string
	by    string // name, alias, fields
	subst string
}

// Check compares one site's metadata (and, when given, its completion rows:
// record ID, redcap_event_name, <form>_complete and optionally item fields)
// with the protocol. It never fails: what cannot be compared is reported.
func Check(p *Protocol, site string, meta *messages.MetadataSnapshot, completion []messages.Row) *Report {
	r := &Report{
		V: messages.V, Site: site, ProtocolName: p.Name, ProtocolVersion: p.Version,
		CheckedAt: time.Now().UTC(), Instruments: []messages.ProtocolInstrument{}, Findings: []messages.ProtocolFinding{},
	}
	if meta == nil || len(meta.Fields) == 0 {
		return Failed(p, site, fmt.Errorf("site %s: no data dictionary to check (the metadata snapshot has no fields)", site))
	}
	r.RunID, r.MetadataHash = meta.RunID, meta.Hash
	x := indexSite(meta)
	r.Longitudinal = x.longitudinal
	r.Arms, r.Events = len(meta.Arms), len(x.events)
	c := &checker{p: p, x: x, r: r, claimed: map[string]bool{}, formUsed: map[string]bool{}, eventMissing: map[string]bool{}}
	matches := c.matchInstruments()
	var scores []float64
	for i := range p.Instruments {
		pi, s, ok := c.checkInstrument(&p.Instruments[i], matches[i])
		r.Instruments = append(r.Instruments, pi)
		if ok {
			scores = append(scores, s)
		}
	}
	c.extraFields(matches)
	c.checkArms()
	c.checkPHI()
	if len(completion) > 0 {
		r.Completion = completionOf(p, x, matches, completion)
	}
	for _, f := range r.Findings {
		switch f.Severity {
		case messages.SeverityError:
			r.Errors++
		case messages.SeverityWarning:
			r.Warnings++
		default:
			r.Infos++
		}
	}
	score := 100.0
	if len(scores) > 0 {
		sum := 0.0
		for _, s := range scores {
			sum += s
		}
		score = math.Round(1000*sum/float64(len(scores))) / 10
	}
	if r.Errors > 0 && score >= 100 {
		score = 99.9 // an error anywhere is never a perfect score
	}
	r.Score = &score
	r.Status = messages.ProtocolConformant
	if r.Errors > 0 {
		r.Status = messages.ProtocolDeviations
	}
	return r
}

// Failed is the report of a site that could not be checked.
func Failed(p *Protocol, site string, err error) *Report {
	return &Report{
		V: messages.V, Site: site, ProtocolName: p.Name, ProtocolVersion: p.Version,
		CheckedAt: time.Now().UTC(), Status: messages.ProtocolError, Error: err.Error(),
		Instruments: []messages.ProtocolInstrument{}, Findings: []messages.ProtocolFinding{},
	}
}

type checker struct {
	p            *Protocol
	x            *siteIndex
	r            *Report
	claimed      map[string]bool // site fields that implement a protocol field
	formUsed     map[string]bool
	eventMissing map[string]bool
	notLongDone  bool
}

func (c *checker) add(f messages.ProtocolFinding) { c.r.Findings = append(c.r.Findings, f) }

// matchInstruments finds each required instrument's site form: by exact
// name, then by alias (form name or label), then through a substitute (name,
// then alias), and last by the share of its fields found in one form.
func (c *checker) matchInstruments() []*instMatch {
	p, x := c.p, c.x
	out := make([]*instMatch, len(p.Instruments))
	taken := map[string]bool{}
	byNorm := map[string]string{}
	for _, f := range x.formOrder {
		if _, ok := byNorm[norm(f)]; !ok {
			byNorm[norm(f)] = f
		}
	}
	for _, f := range x.formOrder {
		if l := norm(x.formLabel[f]); l != "" {
			if _, ok := byNorm[l]; !ok {
				byNorm[l] = f
			}
		}
	}
	byName := func(def *Instrument) string {
		if _, ok := x.forms[def.Name]; ok && !taken[def.Name] {
			return def.Name
		}
		return ""
	}
	byAlias := func(def *Instrument) string {
		for _, a := range append([]string{def.Name, def.Label}, def.Aliases...) {
			if f, ok := byNorm[norm(a)]; ok && !taken[f] && norm(a) != "" {
				return f
			}
		}
		return ""
	}
	usable := func(in *Instrument) bool { return len(in.Fields) > 0 }
	try := func(pass string, find func(*Instrument) string) {
		for i := range p.Instruments {
			in := &p.Instruments[i]
			if out[i] != nil || !usable(in) {
				continue
			}
			if pass != "substitute" {
				if f := find(in); f != "" {
					taken[f] = true
					out[i] = &instMatch{in: in, def: in, form: f, by: pass}
				}
				continue
			}
			for _, s := range in.Substitutes {
				sd := p.substitute(s)
				if sd == nil || !usable(sd) {
					continue
				}
				f := byName(sd)
				by := "name"
				if f == "" {
					f, by = byAlias(sd), "alias"
				}
				if f != "" {
					taken[f] = true
					out[i] = &instMatch{in: in, def: sd, form: f, by: by, subst: sd.Name}
					break
				}
			}
		}
	}
	try("name", byName)
	try("alias", byAlias)
	try("substitute", nil)
	// Last resort: the form holding most of the instrument's (or a
	// substitute's) fields, at least half of them. Forms may be shared here:
	// sites often put short scales together on one page.
	for i := range p.Instruments {
		in := &p.Instruments[i]
		if out[i] != nil || !usable(in) {
			continue
		}
		defs := []*Instrument{in}
		for _, s := range in.Substitutes {
			if sd := p.substitute(s); sd != nil && usable(sd) {
				defs = append(defs, sd)
			}
		}
		for _, def := range defs {
			counts := map[string]int{}
			n := 0
			for _, f := range def.Fields {
				if f.FieldType == "descriptive" || def.Skip[f.FieldName] {
					continue
				}
				n++
				if sf, _ := x.lookup(f.FieldName, def.FieldAliases[f.FieldName]); sf != nil {
					counts[sf.FormName]++
				}
			}
			best, bestN := "", 0
			for _, f := range x.formOrder {
				if counts[f] > bestN {
					best, bestN = f, counts[f]
				}
			}
			if best != "" && n > 0 && 2*bestN >= n {
				m := &instMatch{in: in, def: def, form: best, by: "fields"}
				if def != in {
					m.subst = def.Name
				}
				out[i] = m
				break
			}
		}
	}
	return out
}

// checkInstrument compares one required instrument; ok is false when the
// protocol entry itself is broken (it is then left out of the score).
func (c *checker) checkInstrument(in *Instrument, m *instMatch) (messages.ProtocolInstrument, float64, bool) {
	pi := messages.ProtocolInstrument{Instrument: in.Name, Label: in.Label}
	for _, e := range in.Events {
		pi.EventsPlanned = append(pi.EventsPlanned, e.Name)
	}
	if in.Problem != "" {
		pi.Error = in.Problem
		c.add(messages.ProtocolFinding{Severity: messages.SeverityError, Kind: KindProtocolEntry, Instrument: in.Name,
			Message: fmt.Sprintf("the protocol's entry for %s is broken: %s (fix the protocol file)", in.Name, in.Problem)})
		if len(in.Fields) == 0 {
			pi.Status = messages.InstrumentError
			return pi, 0, false
		}
	}
	pi.FieldsExpected = countExpected(in)
	if m == nil {
		pi.Status = messages.InstrumentMissing
		alts := ""
		if len(in.Substitutes) > 0 {
			alts = " or an allowed substitute (" + strings.Join(in.Substitutes, ", ") + ")"
		}
		c.add(messages.ProtocolFinding{Severity: messages.SeverityError, Kind: KindInstrumentMissing, Instrument: in.Name,
			Message: fmt.Sprintf("required instrument %s (%s) is missing: add it%s", in.Name, in.Label, alts)})
		return pi, 0, true
	}
	def := m.def
	pi.Form, pi.MatchedBy, pi.Substitute = m.form, m.by, m.subst
	pi.FieldsExpected = countExpected(def)
	pi.Status = messages.InstrumentPresent
	c.formUsed[m.form] = true
	for _, f := range c.x.forms[m.form] {
		pi.SiteFields = append(pi.SiteFields, f.FieldName)
	}
	base := messages.ProtocolFinding{Instrument: in.Name, Form: m.form}
	if m.subst != "" {
		pi.Status = messages.InstrumentSubstituted
		f := base
		f.Severity, f.Kind, f.Expected, f.Actual = messages.SeverityInfo, KindSubstituted, in.Name, m.subst
		f.Message = fmt.Sprintf("%s is collected through the allowed substitute %s (form %s)", in.Name, m.subst, m.form)
		c.add(f)
	}
	switch m.by {
	case "alias":
		f := base
		f.Severity, f.Kind, f.Expected, f.Actual = messages.SeverityWarning, KindInstrumentRenamed, def.Name, m.form
		f.Message = fmt.Sprintf("instrument %s is named %s at the site (a known alias); the data map, but consider the standard name", def.Name, m.form)
		c.add(f)
	case "fields":
		f := base
		f.Severity, f.Kind, f.Expected, f.Actual = messages.SeverityWarning, KindMatchedByFields, def.Name, m.form
		f.Message = fmt.Sprintf("no form is named like %s; its items were found in form %s", def.Name, m.form)
		c.add(f)
	}
	instErrors := 0
	for _, pf := range def.Fields {
		if def.Skip[pf.FieldName] {
			// not a real variable (corrections table); claim it if present
			if sf, _ := c.x.lookup(pf.FieldName, nil); sf != nil {
				c.claimed[sf.FieldName] = true
			}
			continue
		}
		if c.checkField(def, m, pf, base) {
			pi.FieldsOK++
		}
	}
	// repeating setup
	siteRep := c.x.repeatForm[m.form]
	if def.Repeating != siteRep {
		f := base
		f.Kind = KindRepeating
		f.Expected, f.Actual = yesNo(def.Repeating), yesNo(siteRep)
		if def.Repeating {
			f.Severity = messages.SeverityError
			f.Message = fmt.Sprintf("form %s must be a repeating instrument", m.form)
			instErrors++
		} else {
			f.Severity = messages.SeverityWarning
			f.Message = fmt.Sprintf("form %s is set up as repeating; the protocol collects it once per event", m.form)
		}
		c.add(f)
	}
	pi.EventsMapped = c.checkEvents(in, m, base)
	fieldTerm := 1.0
	if pi.FieldsExpected > 0 {
		fieldTerm = float64(pi.FieldsOK) / float64(pi.FieldsExpected)
	}
	eventTerm := 1.0
	if len(in.Events) > 0 {
		eventTerm = float64(len(pi.EventsMapped)) / float64(len(in.Events))
	}
	s := 0.8*fieldTerm + 0.2*eventTerm - 0.1*float64(instErrors)
	if s < 0 {
		s = 0
	}
	pi.Score = math.Round(s*1000) / 1000
	return pi, s, true
}

func countExpected(in *Instrument) int {
	n := 0
	for _, f := range in.Fields {
		if !in.Skip[f.FieldName] {
			n++
		}
	}
	return n
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// checkField compares one protocol field; it reports whether the field is
// present without an error-level difference.
func (c *checker) checkField(def *Instrument, m *instMatch, pf messages.Field, base messages.ProtocolFinding) bool {
	sf, renamed := c.x.lookup(pf.FieldName, def.FieldAliases[pf.FieldName])
	base.Field = pf.FieldName
	if sf == nil {
		f := base
		f.Kind = KindFieldMissing
		if pf.FieldType == "descriptive" {
			f.Severity = messages.SeverityInfo
			f.Message = fmt.Sprintf("descriptive text %s is not in form %s", pf.FieldName, m.form)
			c.add(f)
			return true
		}
		f.Severity = messages.SeverityError
		f.Expected = pf.FieldType
		f.Message = fmt.Sprintf("field %s (%s) is missing from form %s: add it with this variable name", pf.FieldName, pf.FieldType, m.form)
		c.add(f)
		return false
	}
	c.claimed[sf.FieldName] = true
	if sf.FieldName != pf.FieldName {
		base.SiteField = sf.FieldName
	}
	if renamed {
		f := base
		f.Severity, f.Kind, f.Expected, f.Actual = messages.SeverityWarning, KindFieldRenamed, pf.FieldName, sf.FieldName
		f.Message = fmt.Sprintf("field %s is named %s at the site (a known variant of the name)", pf.FieldName, sf.FieldName)
		c.add(f)
	}
	if sf.FormName != m.form {
		f := base
		f.Severity, f.Kind, f.Expected, f.Actual = messages.SeverityWarning, KindFieldOtherForm, m.form, sf.FormName
		f.Message = fmt.Sprintf("field %s is in form %s, not in %s with the rest of %s", sf.FieldName, sf.FormName, m.form, def.Name)
		c.add(f)
	}
	errs := 0
	for _, f := range compareField(pf, *sf, def.CompareLabels) {
		g := base
		g.Severity, g.Kind, g.Expected, g.Actual, g.Message = f.Severity, f.Kind, f.Expected, f.Actual, f.Message
		if g.Severity == messages.SeverityError {
			errs++
		}
		c.add(g)
	}
	return errs == 0
}

// compareField lists the differences of a site field from the protocol's.
func compareField(pf, sf messages.Field, labels bool) []messages.ProtocolFinding {
	var out []messages.ProtocolFinding
	add := func(sev, kind, exp, act, msg string) {
		out = append(out, messages.ProtocolFinding{Severity: sev, Kind: kind, Expected: exp, Actual: act, Message: msg})
	}
	name := sf.FieldName
	pt, st := pf.FieldType, sf.FieldType
	if pt != st {
		sev := messages.SeverityError
		msg := fmt.Sprintf("field %s is a %s field; the protocol has %s", name, st, pt)
		if (pt == "radio" && st == "dropdown") || (pt == "dropdown" && st == "radio") {
			sev = messages.SeverityWarning
			msg += " (same codes, different display)"
		}
		add(sev, KindTypeDiffers, pt, st, msg)
	}
	switch {
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
			add(messages.SeverityError, KindChoicesRecoded, choicesString(pc), choicesString(sc),
				fmt.Sprintf("field %s codes its answers differently from the protocol: use the protocol's codes", name))
		} else if labels && !sameChoiceLabels(pc, sc) {
			add(messages.SeverityWarning, KindChoiceLabels, choicesString(pc), choicesString(sc),
				fmt.Sprintf("field %s uses the protocol's codes with different answer labels", name))
		}
	case pt == "calc" && st == "calc":
		if normLogic(pf.SelectChoicesOrCalculations) != normLogic(sf.SelectChoicesOrCalculations) {
			add(messages.SeverityWarning, KindCalcDiffers, pf.SelectChoicesOrCalculations, sf.SelectChoicesOrCalculations,
				fmt.Sprintf("calculated field %s uses a different formula", name))
		}
	case pt == "slider" && st == "slider" && labels:
		if normLabel(pf.SelectChoicesOrCalculations) != normLabel(sf.SelectChoicesOrCalculations) {
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
	if normLogic(pf.BranchingLogic) != normLogic(sf.BranchingLogic) {
		add(messages.SeverityWarning, KindBranching, pf.BranchingLogic, sf.BranchingLogic,
			fmt.Sprintf("field %s has different branching logic", name))
	}
	if labels && normLabel(pf.FieldLabel) != normLabel(sf.FieldLabel) {
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
	for _, c := range b {
		for code, l := range la {
			if code != c.Code && l == normLabel(c.Label) && la[c.Code] != l {
				return false
			}
		}
	}
	return true
}

func labelsByCode(cs []Choice) map[string]string {
	m := make(map[string]string, len(cs))
	for _, c := range cs {
		m[c.Code] = normLabel(c.Label)
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

// normLabel compares labels without HTML tags, case, spacing and trailing
// punctuation.
func normLabel(s string) string {
	var b strings.Builder
	in := false
	for _, r := range s {
		switch {
		case r == '<':
			in = true
		case r == '>':
			in = false
			b.WriteByte(' ')
		case !in:
			b.WriteRune(r)
		}
	}
	out := strings.ToLower(strings.Join(strings.Fields(b.String()), " "))
	return strings.TrimRight(out, " .:?")
}

// normLogic compares branching logic and formulas without spacing, quote
// style and case of and/or.
func normLogic(s string) string {
	s = strings.ToLower(s)
	s = strings.ReplaceAll(s, "\"", "'")
	return strings.Join(strings.Fields(s), "")
}

// checkEvents returns the planned events (names) at which the instrument's
// form is designated at the site, reporting the others.
func (c *checker) checkEvents(in *Instrument, m *instMatch, base messages.ProtocolFinding) []string {
	if len(in.Events) == 0 {
		return nil
	}
	x := c.x
	if !x.longitudinal {
		// a classic project has one implicit event: the first planned one
		if len(in.Events) > 1 && !c.notLongDone {
			c.notLongDone = true
			c.add(messages.ProtocolFinding{Severity: messages.SeverityError, Kind: KindNotLongitudinal,
				Expected: "longitudinal", Actual: "classic",
				Message: "the project is not longitudinal, so instruments cannot be collected at the planned follow-up events: enable longitudinal data collection and define the events"})
		}
		return []string{in.Events[0].Name}
	}
	var mapped []string
	for _, pe := range in.Events {
		evs, by := x.eventsFor(pe)
		if len(evs) == 0 {
			if !c.eventMissing[pe.Name] {
				c.eventMissing[pe.Name] = true
				c.add(messages.ProtocolFinding{Severity: messages.SeverityError, Kind: KindEventMissing, Event: pe.Name,
					Expected: pe.Label, Message: fmt.Sprintf("planned event %s (%s) has no matching event in the project: define it", pe.Name, eventWindow(pe))})
			}
			continue
		}
		ok := false
		var names []string
		for _, e := range evs {
			names = append(names, e.unique)
			if x.mapped[e.unique][m.form] {
				ok = true
			}
			if by == "name" && x.usesWindows && (e.day < pe.Day-pe.WindowBefore || e.day > pe.Day+pe.WindowAfter) && !c.eventMissing["window:"+e.unique] {
				c.eventMissing["window:"+e.unique] = true
				c.add(messages.ProtocolFinding{Severity: messages.SeverityWarning, Kind: KindEventWindow, Event: e.unique,
					Expected: eventWindow(pe), Actual: fmt.Sprintf("day %d", e.day),
					Message: fmt.Sprintf("event %s is scheduled on day %d, outside the planned window of %s", e.unique, e.day, pe.Name)})
			}
		}
		if ok {
			mapped = append(mapped, pe.Name)
			continue
		}
		f := base
		f.Severity, f.Kind, f.Event = messages.SeverityError, KindEventNotMapped, pe.Name
		f.Expected, f.Actual = strings.Join(names, ", "), "not designated"
		f.Message = fmt.Sprintf("form %s is not designated for planned event %s (%s): designate it in the event grid", m.form, pe.Name, strings.Join(names, ", "))
		c.add(f)
	}
	return mapped
}

func eventWindow(pe PlannedEvent) string {
	return fmt.Sprintf("day %d, window -%d/+%d days", pe.Day, pe.WindowBefore, pe.WindowAfter)
}

// extraFields notes site fields in matched forms that implement no protocol
// field (sites may add items; they are listed so nobody is surprised).
func (c *checker) extraFields(ms []*instMatch) {
	done := map[string]bool{}
	for _, m := range ms {
		if m == nil || done[m.form] {
			continue
		}
		done[m.form] = true
		for _, f := range c.x.forms[m.form] {
			if c.claimed[f.FieldName] || f.FieldName == c.x.recordID {
				continue
			}
			c.add(messages.ProtocolFinding{Severity: messages.SeverityInfo, Kind: KindFieldExtra, Instrument: m.in.Name, Form: m.form,
				Field: f.FieldName, Actual: f.FieldType, Message: fmt.Sprintf("form %s has field %s that the protocol does not define", m.form, f.FieldName)})
		}
	}
}

func (c *checker) checkArms() {
	if len(c.p.Arms) == 0 {
		return
	}
	have := map[string]bool{}
	for _, a := range c.x.meta.Arms {
		have[norm(a.Name)] = true
	}
	for _, a := range c.p.Arms {
		if !have[norm(a)] {
			c.add(messages.ProtocolFinding{Severity: messages.SeverityError, Kind: KindArmMissing, Expected: a,
				Message: fmt.Sprintf("arm %q of the protocol is not defined in the project", a)})
		}
	}
}
