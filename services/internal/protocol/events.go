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
	x := c.x
	if c.eventsUnknown {
		if !c.reported["events-unknown"] {
			c.reported["events-unknown"] = true
			c.add(messages.ProtocolFinding{Severity: messages.SeverityInfo, Kind: KindEventsNotChecked,
				Message: "events were not checked: only the data dictionary was given; give the project's arms, events and instrument designations (or its project XML) to check them"})
		}
		return nil, notCollected
	}
	if !x.longitudinal {
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
		names := uniqueNames(evs)
		designated := func(form string) bool {
			for _, e := range evs {
				if x.mapped[e.unique][form] {
					return true
				}
			}
			return false
		}
		ok := true
		if !designated(m.form) {
			ok = false
			f := base
			f.Severity, f.Kind, f.Event = messages.SeverityError, KindEventNotMapped, pe.Name
			f.Expected, f.Actual = names, "not designated"
			f.Message = fmt.Sprintf("form %s is not designated for planned event %s (%s): %s is not collected at %s; designate it in the event grid",
				m.form, pe.Name, names, m.def.Label, pe.Label)
			c.add(f)
		}
		var parts []string
		for _, part := range m.parts {
			if !designated(part) {
				parts = append(parts, part)
			}
		}
		if len(parts) > 0 {
			ok = false
			f := base
			f.Severity, f.Kind, f.Event, f.Form = messages.SeverityError, KindPartNotMapped, pe.Name, parts[0]
			f.Expected, f.Actual = names, strings.Join(parts, ", ")+" not designated"
			f.Message = fmt.Sprintf("%s is split, and its part %s is not designated for planned event %s (%s): those items are not collected at %s; designate it in the event grid",
				m.def.Name, strings.Join(parts, " and "), pe.Name, names, pe.Label)
			c.add(f)
		}
		for _, lib := range sortedKeys(m.moved) {
			form := m.moved[lib]
			if designated(form) {
				continue
			}
			notCollected[lib] = true
			f := base
			f.Severity, f.Kind, f.Event, f.Field, f.Form = messages.SeverityError, KindItemNotCollected, pe.Name, lib, form
			if sf := m.fm.found[lib].f; sf.FieldName != lib {
				f.SiteField = sf.FieldName
			}
			f.Expected, f.Actual = names, "form "+form+" not designated"
			f.Message = fmt.Sprintf("item %s is in form %s, which is not designated for planned event %s (%s): it is not collected at %s; move it back to %s or designate %s",
				m.fm.found[lib].f.FieldName, form, pe.Name, names, pe.Label, m.form, form)
			c.add(f)
		}
		if ok {
			mapped = append(mapped, pe.Name)
		}
	}
	return mapped, notCollected
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
