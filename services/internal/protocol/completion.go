package protocol

import (
	"math"
	"strings"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/phi"
)

// StatusFields lists what to export from a site to measure completion: the
// record ID field and <form>_complete of every site form that implements a
// protocol instrument (each part of a split one). No item values, so no PHI.
func StatusFields(p *Protocol, meta *messages.MetadataSnapshot) []string {
	if meta == nil || len(meta.Fields) == 0 {
		return nil
	}
	x := indexSite(meta)
	c := newChecker(p, x, &Report{})
	out := []string{x.recordID}
	seen := map[string]bool{}
	for _, m := range c.matchInstruments() {
		if m == nil {
			continue
		}
		for _, form := range m.forms() {
			if !seen[form] {
				seen[form] = true
				out = append(out, form+"_complete")
			}
		}
	}
	return out
}

// ItemFields lists the site's names of the protocol items (for item
// missingness), leaving out anything that looks like an identifier.
func ItemFields(p *Protocol, meta *messages.MetadataSnapshot) []string {
	if meta == nil || len(meta.Fields) == 0 {
		return nil
	}
	x := indexSite(meta)
	c := newChecker(p, x, &Report{})
	var out []string
	for _, m := range c.matchInstruments() {
		if m == nil {
			continue
		}
		for _, pf := range m.def.Fields {
			sm, ok := m.fm.found[pf.FieldName]
			if !ok || !isItem(*sm.f) || strings.EqualFold(sm.f.Identifier, "y") {
				continue
			}
			if len(phi.Detect(*sm.f)) > 0 { // any sign of an identifier, ages and free text too
				continue
			}
			out = append(out, sm.f.FieldName)
		}
	}
	return out
}

// isItem: an answer a participant gives, always shown (branching would
// make blanks legitimate).
func isItem(f messages.Field) bool {
	switch f.FieldType {
	case "descriptive", "calc", "file", "signature":
		return false
	}
	return strings.TrimSpace(f.BranchingLogic) == ""
}

const (
	stBlank = iota
	stIncomplete
	stUnverified
	stComplete
)

func statusOf(v string) int {
	switch strings.TrimSpace(v) {
	case "0":
		return stIncomplete
	case "1":
		return stUnverified
	case "2":
		return stComplete
	}
	return stBlank
}

type recEvent struct{ rec, event string }

func completionOf(x *siteIndex, ms []*instMatch, rows []messages.Row) []messages.ProtocolCompletion {
	var out []messages.ProtocolCompletion
	// event order: the site's, then any seen only in rows
	order := []string{}
	known := map[string]bool{}
	for _, e := range x.events {
		order = append(order, e.unique)
		known[e.unique] = true
	}
	for _, r := range rows {
		if e := r["redcap_event_name"]; !known[e] {
			known[e] = true
			order = append(order, e)
		}
	}
	for _, m := range ms {
		if m == nil {
			continue
		}
		planned := map[string]string{}
		for _, pe := range m.in.Events {
			evs, _ := x.eventsFor(pe)
			for _, e := range evs {
				planned[e.unique] = pe.Name
			}
		}
		if !x.longitudinal && len(m.in.Events) > 0 {
			planned[""] = m.in.Events[0].Name
		}
		for _, form := range m.forms() {
			var items []*messages.Field
			for _, pf := range m.def.Fields {
				if sm, ok := m.fm.found[pf.FieldName]; ok && sm.f.FormName == form && isItem(*sm.f) {
					items = append(items, sm.f)
				}
			}
			out = append(out, formCompletion(x, m.in.Name, form, items, planned, order, rows)...)
		}
	}
	return out
}

// formCompletion counts one site form's status and its items' answers per
// event.
func formCompletion(x *siteIndex, inst, form string, items []*messages.Field, planned map[string]string, order []string, rows []messages.Row) []messages.ProtocolCompletion {
	var out []messages.ProtocolCompletion
	statusField := form + "_complete"
	best := map[recEvent]int{}
	recs := map[string]map[string]bool{} // event -> records
	type miss struct{ missing, saved int }
	itemMiss := map[string]map[string]*miss{} // event -> field -> counts
	for _, r := range rows {
		rec := r[x.recordID]
		if rec == "" {
			continue
		}
		ev := r["redcap_event_name"]
		if recs[ev] == nil {
			recs[ev] = map[string]bool{}
		}
		recs[ev][rec] = true
		if ri := r["redcap_repeat_instrument"]; ri != "" && ri != form {
			continue
		}
		v, ok := r[statusField]
		if !ok {
			continue
		}
		st := statusOf(v)
		k := recEvent{rec, ev}
		if st > best[k] {
			best[k] = st
		}
		if st == stBlank {
			continue
		}
		for _, sf := range items {
			empty, present := itemEmpty(r, *sf)
			if !present {
				continue
			}
			if itemMiss[ev] == nil {
				itemMiss[ev] = map[string]*miss{}
			}
			c := itemMiss[ev][sf.FieldName]
			if c == nil {
				c = &miss{}
				itemMiss[ev][sf.FieldName] = c
			}
			c.saved++
			if empty {
				c.missing++
			}
		}
	}
	for _, ev := range order {
		designated := !x.longitudinal || x.mapped[ev][form]
		if !designated && planned[ev] == "" {
			continue
		}
		pc := messages.ProtocolCompletion{Instrument: inst, Form: form, Event: ev, Planned: planned[ev]}
		for rec := range recs[ev] {
			pc.Records++
			switch best[recEvent{rec, ev}] {
			case stComplete:
				pc.Complete++
			case stUnverified:
				pc.Unverified++
			case stIncomplete:
				pc.Incomplete++
			default:
				pc.Blank++
			}
		}
		if pc.Records > 0 {
			pc.Rate = math.Round(1000*float64(pc.Complete)/float64(pc.Records)) / 1000
		}
		for _, sf := range items {
			if c := itemMiss[ev][sf.FieldName]; c != nil {
				pc.Items = append(pc.Items, messages.ProtocolItemMissing{Field: sf.FieldName, Missing: c.missing, Saved: c.saved,
					Rate: math.Round(1000*float64(c.missing)/float64(c.saved)) / 1000})
			}
		}
		out = append(out, pc)
	}
	return out
}

// itemEmpty says whether an item is unanswered in a row, and whether the row
// carries the item at all. A checkbox is answered when any option is 1.
func itemEmpty(r messages.Row, f messages.Field) (empty, present bool) {
	if f.FieldType == "checkbox" {
		prefix := f.FieldName + "___"
		for k, v := range r {
			if strings.HasPrefix(k, prefix) {
				present = true
				if strings.TrimSpace(v) == "1" {
					return false, true
				}
			}
		}
		return true, present
	}
	v, ok := r[f.FieldName]
	if !ok {
		return false, false
	}
	return strings.TrimSpace(v) == "", true
}
