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
	KindInstrumentSplit   = "instrument_split" // its items are in several forms
	KindFieldMissing      = "field_missing"
	KindFieldRenamed      = "field_renamed"   // a known variant of the name, or found by content
	KindFieldAmbiguous    = "field_ambiguous" // several site fields fit one item equally
	KindFieldConflict     = "field_conflict"  // the wording fits, the answers do not
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
	KindEventRenamed      = "event_renamed" // same arm, label and place, another unique name
	KindEventNotMapped    = "event_not_designated"
	KindPartNotMapped     = "part_not_designated" // a part of a split instrument
	KindItemNotCollected  = "item_not_collected"  // a moved item's form is not designated
	KindEventsNotChecked  = "events_not_checked"  // a dictionary alone: no events to check
	KindNotLongitudinal   = "not_longitudinal"
	KindRepeating         = "repeating_differs"
	KindArmMissing        = "arm_missing"
	KindPHI               = "phi_not_flagged"
)

// Options change what a check can know about the site.
type Options struct {
	// EventsUnknown: the site's arms, events and designations were not
	// given (a dictionary file checked offline). Events are then not
	// checked, which the report says in a note.
	EventsUnknown bool
}

// Check compares one site's metadata (and, when given, its completion rows:
// record ID, redcap_event_name, <form>_complete and optionally item fields)
// with the protocol. It never fails: what cannot be compared is reported.
func Check(p *Protocol, site string, meta *messages.MetadataSnapshot, completion []messages.Row) *Report {
	return CheckWith(p, site, meta, completion, Options{})
}

// CheckWith is Check with options.
func CheckWith(p *Protocol, site string, meta *messages.MetadataSnapshot, completion []messages.Row, o Options) *Report {
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
	c := newChecker(p, x, r)
	c.eventsUnknown = o.EventsUnknown && !x.longitudinal
	matches := c.matchInstruments()
	c.renames = renamesOf(matches)
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
		r.Completion = completionOf(x, matches, completion)
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
	p             *Protocol
	x             *siteIndex
	r             *Report
	claimed       map[string]bool // site fields that implement a protocol field
	reported      map[string]bool // event findings already made (once per planned event)
	defs          map[*Instrument]*defMatch
	idx           *contentIndex
	renames       map[string]string // site field -> library name, for reading the site's logic
	notLongDone   bool
	eventsUnknown bool
}

func newChecker(p *Protocol, x *siteIndex, r *Report) *checker {
	return &checker{p: p, x: x, r: r, claimed: map[string]bool{}, reported: map[string]bool{}, defs: map[*Instrument]*defMatch{}}
}

// renamesOf lists the site fields the matches found under other names.
func renamesOf(ms []*instMatch) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		if m == nil {
			continue
		}
		for lib, sm := range m.fm.found {
			if sm.f.FieldName != lib {
				out[sm.f.FieldName] = lib
			}
		}
	}
	return out
}

func (c *checker) add(f messages.ProtocolFinding) { c.r.Findings = append(c.r.Findings, f) }

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
	pi.Form, pi.MatchedBy, pi.Substitute, pi.Parts = m.form, m.by, m.subst, m.parts
	pi.FieldsExpected = countExpected(def)
	pi.Status = messages.InstrumentPresent
	for _, form := range m.forms() {
		for _, f := range c.x.forms[form] {
			pi.SiteFields = append(pi.SiteFields, f.FieldName)
		}
	}
	base := messages.ProtocolFinding{Instrument: in.Name, Form: m.form}
	c.instrumentNotes(in, m, base)
	ok := map[string]bool{}
	missing := 0
	for _, pf := range def.Fields {
		if def.Skip[pf.FieldName] {
			// not a real variable (corrections table); claim it if present
			if sf, _ := c.x.lookup(pf.FieldName, nil); sf != nil {
				c.claimed[sf.FieldName] = true
			}
			continue
		}
		switch c.checkField(m, pf, base) {
		case fieldOK:
			ok[pf.FieldName] = true
		case fieldMissing:
			missing++
		}
	}
	instErrors := c.checkRepeating(m, base)
	mapped, notCollected := c.checkEvents(in, m, base)
	pi.EventsMapped = mapped
	for f := range notCollected {
		delete(ok, f)
	}
	pi.FieldsOK = len(ok)
	switch {
	case missing > 0:
		pi.Status = messages.InstrumentIncomplete
	case m.subst != "":
		pi.Status = messages.InstrumentSubstituted
	}
	fieldTerm := 1.0
	if pi.FieldsExpected > 0 {
		fieldTerm = float64(pi.FieldsOK) / float64(pi.FieldsExpected)
	}
	eventTerm := 1.0
	if len(in.Events) > 0 && !c.eventsUnknown {
		eventTerm = float64(len(pi.EventsMapped)) / float64(len(in.Events))
	}
	s := 0.8*fieldTerm + 0.2*eventTerm - 0.1*float64(instErrors)
	if s < 0 {
		s = 0
	}
	pi.Score = math.Round(s*1000) / 1000
	return pi, s, true
}

// instrumentNotes reports how the instrument was found: through a
// substitute, an alias, its items, or split over several forms.
func (c *checker) instrumentNotes(in *Instrument, m *instMatch, base messages.ProtocolFinding) {
	def := m.def
	if m.subst != "" {
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
	case "fields", "content":
		how := "by their variable names"
		if m.by == "content" {
			how = "by their wording and answers"
		}
		f := base
		f.Severity, f.Kind, f.Expected, f.Actual = messages.SeverityWarning, KindMatchedByFields, def.Name, m.form
		f.Message = fmt.Sprintf("no form is named like %s; its items were found in form %s (%s)", def.Name, m.form, how)
		c.add(f)
	}
	if len(m.parts) > 0 {
		f := base
		f.Severity, f.Kind, f.Expected, f.Actual = messages.SeverityWarning, KindInstrumentSplit, def.Name, strings.Join(m.forms(), ", ")
		f.Message = fmt.Sprintf("%s is split over forms %s: the data map; every part is checked against the planned events", def.Name, strings.Join(m.forms(), " and "))
		c.add(f)
	}
}

func (c *checker) checkRepeating(m *instMatch, base messages.ProtocolFinding) int {
	siteRep := c.x.repeatForm[m.form]
	if m.def.Repeating == siteRep {
		return 0
	}
	f := base
	f.Kind = KindRepeating
	f.Expected, f.Actual = yesNo(m.def.Repeating), yesNo(siteRep)
	if m.def.Repeating {
		f.Severity = messages.SeverityError
		f.Message = fmt.Sprintf("form %s must be a repeating instrument", m.form)
		c.add(f)
		return 1
	}
	f.Severity = messages.SeverityWarning
	f.Message = fmt.Sprintf("form %s is set up as repeating; the protocol collects it once per event", m.form)
	c.add(f)
	return 0
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

type fieldState int

const (
	fieldOK fieldState = iota
	fieldDiffers
	fieldMissing
)

// checkField compares one protocol field with the site field found for it.
func (c *checker) checkField(m *instMatch, pf messages.Field, base messages.ProtocolFinding) fieldState {
	def := m.def
	base.Field = pf.FieldName
	if is, ok := m.fm.issues[pf.FieldName]; ok {
		c.reportIssue(def, pf, is, base)
		return fieldDiffers
	}
	sm, found := m.fm.found[pf.FieldName]
	if !found {
		f := base
		f.Kind, f.Wording = KindFieldMissing, pf.FieldLabel
		if pf.FieldType == "descriptive" {
			f.Severity = messages.SeverityInfo
			f.Message = fmt.Sprintf("descriptive text %s is not in form %s", pf.FieldName, m.form)
			c.add(f)
			return fieldOK
		}
		f.Severity = messages.SeverityError
		f.Expected = pf.FieldType
		f.Message = fmt.Sprintf("field %s (%s, %q) is missing from form %s: add it with this variable name", pf.FieldName, pf.FieldType, shortText(pf.FieldLabel), m.form)
		c.add(f)
		return fieldMissing
	}
	sf := sm.f
	c.claimed[sf.FieldName] = true
	if sf.FieldName != pf.FieldName {
		base.SiteField = sf.FieldName
	}
	switch sm.by {
	case byNameVariant:
		f := base
		f.Severity, f.Kind, f.Expected, f.Actual = messages.SeverityWarning, KindFieldRenamed, pf.FieldName, sf.FieldName
		f.Match = &messages.ProtocolMatch{By: byNameVariant, Score: 1}
		f.Message = fmt.Sprintf("field %s is named %s at the site (a known variant of the name)", pf.FieldName, sf.FieldName)
		c.add(f)
	case byContent:
		f := base
		f.Severity, f.Kind, f.Expected, f.Actual, f.Wording = messages.SeverityWarning, KindFieldRenamed, pf.FieldName, sf.FieldName, pf.FieldLabel
		f.Match = &messages.ProtocolMatch{By: byContent, Score: round2(sm.ps.score), Basis: sm.ps.basis, Recode: sm.ps.recode}
		f.Message = fmt.Sprintf("field %s is named %s at the site (found by its %s, score %.2f): rename it, or map it with the transfer policy's rename (relay check --suggest-policy)",
			pf.FieldName, sf.FieldName, strings.Join(sm.ps.basis, ", "), sm.ps.score)
		c.add(f)
	}
	if _, moved := m.moved[pf.FieldName]; moved {
		f := base
		f.Severity, f.Kind, f.Expected, f.Actual = messages.SeverityWarning, KindFieldOtherForm, m.form, sf.FormName
		f.Message = fmt.Sprintf("field %s is in form %s, not in %s with the rest of %s", sf.FieldName, sf.FormName, m.form, def.Name)
		c.add(f)
	}
	errs := 0
	for _, f := range compareField(pf, *sf, def.CompareLabels, func(l string) string { return translateLogic(l, c.renames) }) {
		g := base
		g.Severity, g.Kind, g.Expected, g.Actual, g.Message, g.Match = f.Severity, f.Kind, f.Expected, f.Actual, f.Message, f.Match
		if g.Severity == messages.SeverityError {
			errs++
		}
		c.add(g)
	}
	if errs > 0 {
		return fieldDiffers
	}
	return fieldOK
}

// reportIssue reports an item whose site field is ambiguous or conflicts,
// naming every candidate.
func (c *checker) reportIssue(def *Instrument, pf messages.Field, is itemIssue, base messages.ProtocolFinding) {
	var names []string
	for _, sf := range is.cands {
		c.claimed[sf.FieldName] = true
		names = append(names, sf.FieldName)
	}
	f := base
	f.Severity, f.Kind, f.Expected, f.Actual, f.Wording = messages.SeverityError, is.kind, pf.FieldName, strings.Join(names, ", "), pf.FieldLabel
	f.Match = &messages.ProtocolMatch{By: byContent, Score: round2(is.ps.score), Basis: is.ps.basis, Candidates: names}
	switch {
	case is.kind == KindFieldConflict:
		sf := is.cands[0]
		f.Match.Score = round2(is.ps.wording)
		f.Expected, f.Actual = answersOf(pf), answersOf(*sf)
		f.Message = fmt.Sprintf("field %s has the wording of %s (%.2f) but other answers (%s; the protocol has %s): it is not matched; rename it to %s and use the protocol's answers, or add %s",
			strings.Join(names, " and "), pf.FieldName, is.ps.wording, answersOf(*sf), answersOf(pf), pf.FieldName, pf.FieldName)
	case len(is.others) > 0:
		f.Message = fmt.Sprintf("site field %s fits %s and %s equally (score %.2f): nothing is matched; rename the site field to the item it is",
			strings.Join(names, " and "), pf.FieldName, strings.Join(is.others, " and "), is.ps.score)
	default:
		f.Message = fmt.Sprintf("%s fits site fields %s equally (score %.2f): nothing is matched; rename the one that is %s and remove or relabel the other",
			pf.FieldName, strings.Join(names, " and "), is.ps.score, pf.FieldName)
	}
	c.add(f)
}

func answersOf(f messages.Field) string {
	if cs := effectiveChoices(f); cs != nil {
		return f.FieldType + " " + choicesString(cs)
	}
	if v := normValidation(f.TextValidationTypeOrShowSlider); v != "" && f.FieldType == "text" {
		return "text validated " + v
	}
	return f.FieldType
}

func round2(f float64) float64 { return math.Round(f*100) / 100 }

func shortText(s string) string {
	s = normSpace(tagRe.ReplaceAllString(s, " "))
	if r := []rune(s); len(r) > 60 {
		return string(r[:57]) + "..."
	}
	return s
}

func normSpace(s string) string { return strings.Join(strings.Fields(s), " ") }

// extraFields notes site fields in matched forms that implement no protocol
// field (sites may add items; they are listed so nobody is surprised).
func (c *checker) extraFields(ms []*instMatch) {
	for _, m := range ms {
		if m == nil {
			continue
		}
		for _, sf := range m.fm.claims() {
			c.claimed[sf.FieldName] = true
		}
	}
	done := map[string]bool{}
	for _, m := range ms {
		if m == nil {
			continue
		}
		for _, form := range m.forms() {
			if done[form] {
				continue
			}
			done[form] = true
			for _, f := range c.x.forms[form] {
				if c.claimed[f.FieldName] || f.FieldName == c.x.recordID {
					continue
				}
				c.add(messages.ProtocolFinding{Severity: messages.SeverityInfo, Kind: KindFieldExtra, Instrument: m.in.Name, Form: form,
					Field: f.FieldName, Actual: f.FieldType, Message: fmt.Sprintf("form %s has field %s that the protocol does not define", form, f.FieldName)})
			}
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
