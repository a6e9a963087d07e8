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
	usesWindows  bool
}

type siteEvent struct {
	unique, stem, label string
	arm                 int
	day, min, max       int
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
		if i == 0 {
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
	for _, e := range meta.Events {
		se := siteEvent{unique: e.UniqueEventName, label: e.EventName, arm: e.ArmNum, day: e.DayOffset, min: e.OffsetMin, max: e.OffsetMax}
		se.stem = armSuffix.ReplaceAllString(e.UniqueEventName, "")
		if e.OffsetMin != 0 || e.OffsetMax != 0 {
			x.usesWindows = true
		}
		x.events = append(x.events, se)
		seen[e.UniqueEventName] = true
	}
	for _, m := range meta.FormEventMapping {
		if !seen[m.UniqueEventName] {
			seen[m.UniqueEventName] = true
			x.events = append(x.events, siteEvent{unique: m.UniqueEventName, arm: m.ArmNum, stem: armSuffix.ReplaceAllString(m.UniqueEventName, "")})
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

// eventsFor returns the site events that stand for a planned event, and how
// they were matched ("name" or "day").
func (x *siteIndex) eventsFor(pe PlannedEvent) ([]siteEvent, string) {
	keys := map[string]bool{norm(pe.Name): true}
	for _, m := range pe.Match {
		keys[norm(m)] = true
	}
	var out []siteEvent
	for _, e := range x.events {
		if keys[norm(e.unique)] || keys[norm(e.stem)] || (e.label != "" && keys[norm(e.label)]) {
			out = append(out, e)
		}
	}
	if len(out) > 0 || !x.usesWindows {
		return out, "name"
	}
	for _, e := range x.events {
		if e.day >= pe.Day-pe.WindowBefore && e.day <= pe.Day+pe.WindowAfter {
			out = append(out, e)
		}
	}
	return out, "day"
}
