package protocol

import (
	"fmt"
	"sort"
	"strings"

	"github.com/redcap-relay/relay/messages"
)

// checkEvents checks that the instrument is collected at its planned
// events: its main form, every part of a split instrument, and the form of
// every item the site moved elsewhere. It returns the planned events
// (names) where all of them are designated, and the library items that
// are not collected at some planned event.
func (c *checker) checkEvents(in *Instrument, m *instMatch, base messages.ProtocolFinding) ([]string, map[string]bool) {
	notCollected := map[string]bool{}
	if len(in.Events) == 0 {
		return nil, notCollected
	}
	if c.eventsUnknown {
		if !c.reported["events-unknown"] {
			c.reported["events-unknown"] = true
			c.add(messages.ProtocolFinding{Severity: messages.SeverityInfo, Kind: KindEventsNotChecked,
				Message: "events were not checked: only the data dictionary was given; give the project's arms, events and instrument designations (or its project XML) to check them"})
		}
		return nil, notCollected
	}
	if !c.x.longitudinal {
		// a classic project has one implicit event: the first planned one
		if len(in.Events) > 1 && !c.notLongDone {
			c.notLongDone = true
			c.add(messages.ProtocolFinding{Severity: messages.SeverityError, Kind: KindNotLongitudinal,
				Expected: "longitudinal", Actual: "classic",
				Message: "the project is not longitudinal, so instruments cannot be collected at the planned follow-up events: enable longitudinal data collection and define the events"})
		}
		return []string{in.Events[0].Name}, notCollected
	}
	var mapped []string
	for _, pe := range in.Events {
		evs := c.siteEventsFor(pe)
		if len(evs) == 0 {
			continue
		}
		at := plannedAt{pe: pe, evs: evs, names: uniqueNames(evs)}
		ok := c.mainCollected(m, at, base)
		if !c.partsCollected(m, at, base) {
			ok = false
		}
		c.movedCollected(m, at, base, notCollected)
		if ok {
			mapped = append(mapped, pe.Name)
		}
	}
	return mapped, notCollected
}

// plannedAt is a planned event and the site events that stand for it.
type plannedAt struct {
	pe    PlannedEvent
	evs   []siteEvent
	names string
}

func (c *checker) designated(at plannedAt, form string) bool {
	for _, e := range at.evs {
		if c.x.mapped[e.unique][form] {
			return true
		}
	}
	return false
}

func (c *checker) mainCollected(m *instMatch, at plannedAt, base messages.ProtocolFinding) bool {
	if c.designated(at, m.form) {
		return true
	}
	f := base
	f.Severity, f.Kind, f.Event = messages.SeverityError, KindEventNotMapped, at.pe.Name
	f.Expected, f.Actual = at.names, "not designated"
	f.Message = fmt.Sprintf("form %s is not designated for planned event %s (%s): %s is not collected at %s; designate it in the event grid",
		m.form, at.pe.Name, at.names, m.def.Label, at.pe.Label)
	c.add(f)
	return false
}

// partsCollected: every part of a split instrument is designated too.
func (c *checker) partsCollected(m *instMatch, at plannedAt, base messages.ProtocolFinding) bool {
	var parts []string
	for _, part := range m.parts {
		if !c.designated(at, part) {
			parts = append(parts, part)
		}
	}
	if len(parts) == 0 {
		return true
	}
	f := base
	f.Severity, f.Kind, f.Event, f.Form = messages.SeverityError, KindPartNotMapped, at.pe.Name, parts[0]
	f.Expected, f.Actual = at.names, strings.Join(parts, ", ")+" not designated"
	f.Message = fmt.Sprintf("%s is split, and its part %s is not designated for planned event %s (%s): those items are not collected at %s; designate it in the event grid",
		m.def.Name, strings.Join(parts, " and "), at.pe.Name, at.names, at.pe.Label)
	c.add(f)
	return false
}

// movedCollected: an item moved to another form is collected only where
// that form is designated.
func (c *checker) movedCollected(m *instMatch, at plannedAt, base messages.ProtocolFinding, notCollected map[string]bool) {
	for _, lib := range sortedKeys(m.moved) {
		form := m.moved[lib]
		if c.designated(at, form) {
			continue
		}
		notCollected[lib] = true
		sf := m.fm.found[lib].f
		f := base
		f.Severity, f.Kind, f.Event, f.Field, f.Form = messages.SeverityError, KindItemNotCollected, at.pe.Name, lib, form
		if sf.FieldName != lib {
			f.SiteField = sf.FieldName
		}
		f.Expected, f.Actual = at.names, "form "+form+" not designated"
		f.Message = fmt.Sprintf("item %s is in form %s, which is not designated for planned event %s (%s): it is not collected at %s; move it back to %s or designate %s",
			sf.FieldName, form, at.pe.Name, at.names, at.pe.Label, m.form, form)
		c.add(f)
	}
}

// siteEventsFor finds a planned event at the site and reports, once per
// planned event, when it is missing or was found renamed.
func (c *checker) siteEventsFor(pe PlannedEvent) []siteEvent {
	evs, by := c.x.eventsFor(pe)
	key := "event:" + pe.Name
	if c.reported[key] {
		return evs
	}
	c.reported[key] = true
	switch {
	case len(evs) == 0:
		c.add(messages.ProtocolFinding{Severity: messages.SeverityError, Kind: KindEventMissing, Event: pe.Name,
			Expected: pe.Label, Message: fmt.Sprintf("planned event %s (%s) has no matching event in the project: define it", pe.Name, plannedText(pe))})
	case by == "label":
		where := "the same label"
		if pe.Arm > 0 {
			where = "the same label, arm and place"
		}
		c.add(messages.ProtocolFinding{Severity: messages.SeverityWarning, Kind: KindEventRenamed, Event: pe.Name,
			Expected: pe.Name, Actual: uniqueNames(evs),
			Message: fmt.Sprintf("planned event %s (%s) is named %s at the site (%s): its data map; consider the protocol's name",
				pe.Name, pe.Label, uniqueNames(evs), where)})
	}
	return evs
}

func plannedText(pe PlannedEvent) string {
	if pe.Day == 0 && pe.WindowBefore == 0 && pe.WindowAfter == 0 {
		return pe.Label
	}
	return fmt.Sprintf("%s, day %d, window -%d/+%d days", pe.Label, pe.Day, pe.WindowBefore, pe.WindowAfter)
}

func uniqueNames(evs []siteEvent) string {
	names := make([]string, len(evs))
	for i, e := range evs {
		names[i] = e.unique
	}
	return strings.Join(names, ", ")
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
