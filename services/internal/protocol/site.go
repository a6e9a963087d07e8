package protocol

import (
	"regexp"
	"strings"

	"github.com/redcap-relay/relay/messages"
)

// siteIndex is a site's metadata indexed for lookups, built once per check
// so that a 2,000-field dictionary costs a few map inserts.
type siteIndex struct {
	meta      *messages.MetadataSnapshot
	byName    map[string]*messages.Field
	byLower   map[string]*messages.Field
	forms     map[string][]*messages.Field
	formOrder []string
	formLabel map[string]string
	recordID  string

	longitudinal bool
	events       []siteEvent
	mapped       map[string]map[string]bool // unique event -> form -> designated
	repeatForm   map[string]bool            // form repeats (in any event)
}

// siteEvent is one event of the project. REDCap 14's event export has no
// day offsets, so events are known by name, label, arm and place only.
type siteEvent struct {
	unique, stem, label string
	arm, pos            int // pos: 1-based place within its arm
}

var armSuffix = regexp.MustCompile(`_arm_\d+[a-z]?$`)

func indexSite(meta *messages.MetadataSnapshot) *siteIndex {
	x := &siteIndex{
		meta:   meta,
		byName: make(map[string]*messages.Field, len(meta.Fields)), byLower: make(map[string]*messages.Field, len(meta.Fields)),
		forms: map[string][]*messages.Field{}, formLabel: map[string]string{},
		mapped: map[string]map[string]bool{}, repeatForm: map[string]bool{},
	}
	for i := range meta.Fields {
		f := &meta.Fields[i]
		if i == 0 && f.FieldType == "text" {
			// REDCap's record ID is the project's first field, always a
			// text field; an instrument's dictionary alone (an instrument
			// zip) has none
			x.recordID = f.FieldName
		}
		x.byName[f.FieldName] = f
		x.byLower[strings.ToLower(f.FieldName)] = f
		if _, ok := x.forms[f.FormName]; !ok {
			x.formOrder = append(x.formOrder, f.FormName)
		}
		x.forms[f.FormName] = append(x.forms[f.FormName], f)
	}
	for _, in := range meta.Instruments {
		// an instrument without fields cannot collect anything: it only
		// lends its label
		x.formLabel[in.InstrumentName] = in.InstrumentLabel
	}
	x.longitudinal = meta.Project.IsLongitudinal == 1 || len(meta.Events) > 0 || len(meta.FormEventMapping) > 0
	seen := map[string]bool{}
	perArm := map[int]int{}
	for _, e := range meta.Events {
		perArm[e.ArmNum]++
		se := siteEvent{unique: e.UniqueEventName, label: e.EventName, arm: e.ArmNum, pos: perArm[e.ArmNum]}
		se.stem = armSuffix.ReplaceAllString(e.UniqueEventName, "")
		x.events = append(x.events, se)
		seen[e.UniqueEventName] = true
	}
	for _, m := range meta.FormEventMapping {
		if !seen[m.UniqueEventName] {
			seen[m.UniqueEventName] = true
			perArm[m.ArmNum]++
			x.events = append(x.events, siteEvent{unique: m.UniqueEventName, arm: m.ArmNum, pos: perArm[m.ArmNum],
				stem: armSuffix.ReplaceAllString(m.UniqueEventName, "")})
		}
		if x.mapped[m.UniqueEventName] == nil {
			x.mapped[m.UniqueEventName] = map[string]bool{}
		}
		x.mapped[m.UniqueEventName][m.Form] = true
	}
	for _, r := range meta.Repeating {
		if r.FormName != "" {
			x.repeatForm[r.FormName] = true
		}
	}
	return x
}

// norm reduces a name to lower-case letters and digits, so "PHQ-2",
// "phq_2" and "PHQ 2" compare equal; a trailing ".redcap" (a CDE file
// name) is dropped.
func norm(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	s = strings.TrimSuffix(s, ".redcap")
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') {
			b.WriteByte(c)
		}
	}
	return b.String()
}

// lookup finds the site's field for a protocol field: by its own name, then
// case-insensitively, then through the accepted aliases.
func (x *siteIndex) lookup(name string, aliases []string) (*messages.Field, bool) {
	if f, ok := x.byName[name]; ok {
		return f, false
	}
	if f, ok := x.byLower[strings.ToLower(name)]; ok {
		return f, false
	}
	for _, a := range aliases {
		if f, ok := x.byName[a]; ok {
			return f, true
		}
		if f, ok := x.byLower[strings.ToLower(a)]; ok {
			return f, true
		}
	}
	return nil, false
}

// eventsFor returns the site events that stand for a planned event, and
// how: "name" (its unique name, with or without the arm suffix, or a name
// the protocol's match list accepts) or "label" (another unique name with
// the planned label, in the planned arm and place when the protocol says:
// a renamed event, which the check reports).
func (x *siteIndex) eventsFor(pe PlannedEvent) ([]siteEvent, string) {
	keys := map[string]bool{norm(pe.Name): true}
	for _, m := range pe.Match {
		keys[norm(m)] = true
	}
	var out []siteEvent
	for _, e := range x.events {
		if keys[norm(e.unique)] || keys[norm(e.stem)] {
			out = append(out, e)
		}
	}
	if len(out) > 0 {
		return out, "name"
	}
	labels := map[string]bool{norm(pe.Label): true}
	for _, m := range pe.Match {
		labels[norm(m)] = true
	}
	for _, e := range x.events {
		if e.label != "" && labels[norm(e.label)] && (pe.Arm == 0 || e.arm == pe.Arm) {
			out = append(out, e)
		}
	}
	if pe.Position > 0 && len(out) > 1 {
		var same []siteEvent
		for _, e := range out {
			if e.pos == pe.Position {
				same = append(same, e)
			}
		}
		if len(same) > 0 {
			out = same
		}
	}
	if len(out) > 0 {
		return out, "label"
	}
	return nil, ""
}
