package protocol

import (
	"github.com/redcap-relay/relay/messages"
)

// FromSnapshot makes a protocol out of a reference project: every form is a
// required instrument with the project's fields, collected at the events the
// project designates it for (each unique event name is a planned event).
// It serves networks whose core library is "the coordinating center's
// template project", and tests that derive deviations from a real project.
func FromSnapshot(name, version string, meta *messages.MetadataSnapshot) *Protocol {
	p := &Protocol{Name: name, Version: version, Source: "snapshot of " + meta.Site}
	p.crfs, _ = parseCRFIDs(mustEmbedded("heal-crf-ids.csv"))
	p.corrections, _ = parseCorrections(mustEmbedded("heal-cde-corrections.csv"))
	x := indexSite(meta)
	byName := map[string]PlannedEvent{}
	for _, e := range x.events {
		pe := PlannedEvent{Name: e.unique, Label: e.label, Match: []string{e.unique}, Arm: e.arm, Position: e.pos}
		if pe.Label == "" {
			pe.Label = e.unique
		}
		byName[e.unique] = pe
		p.Events = append(p.Events, pe)
	}
	for _, form := range x.formOrder {
		in := Instrument{Name: form, Label: x.formLabel[form], CompareLabels: true, Repeating: x.repeatForm[form],
			FieldAliases: map[string][]string{}, Skip: map[string]bool{}}
		if in.Label == "" {
			in.Label = form
		}
		for _, f := range x.forms[form] {
			in.Fields = append(in.Fields, *f)
		}
		for _, e := range x.events {
			if x.mapped[e.unique][form] {
				in.Events = append(in.Events, byName[e.unique])
			}
		}
		p.Instruments = append(p.Instruments, in)
	}
	return p
}

func mustEmbedded(name string) []byte {
	b, err := tablesFS.ReadFile("data/" + name)
	if err != nil {
		panic("protocol: embedded table missing: " + name)
	}
	return b
}

// SiteSnapshot builds the metadata of a longitudinal project (one arm) that
// implements the protocol exactly: a record_id field, every required
// instrument as a form named like it with the protocol's fields, and every
// planned event (unique name "<event>_arm_1", label as planned) with
// the instruments designated as planned. Demo sites and tests start from it
// and change what they want to deviate.
func SiteSnapshot(p *Protocol, site string) *messages.MetadataSnapshot {
	m := &messages.MetadataSnapshot{V: messages.V, Site: site,
		Project: messages.ProjectInfo{ProjectTitle: p.Name + " (" + site + ")", IsLongitudinal: 1}}
	first := ""
	if len(p.Instruments) > 0 {
		first = p.Instruments[0].Name
	}
	m.Fields = append(m.Fields, messages.Field{FieldName: "record_id", FormName: first, FieldType: "text", FieldLabel: "Record ID"})
	m.Arms = []messages.Arm{{ArmNum: 1, Name: "Arm 1"}}
	for i, e := range p.Events {
		// as REDCap 14 exports them: no day offsets
		m.Events = append(m.Events, messages.Event{EventName: e.Label, ArmNum: 1, UniqueEventName: e.Name + "_arm_1", EventID: 100 + i})
	}
	for _, in := range p.Instruments {
		if len(in.Fields) == 0 {
			continue
		}
		m.Instruments = append(m.Instruments, messages.Instrument{InstrumentName: in.Name, InstrumentLabel: in.Label})
		for _, f := range in.Fields {
			f.FormName = in.Name
			m.Fields = append(m.Fields, f)
		}
		for _, e := range in.Events {
			m.FormEventMapping = append(m.FormEventMapping, messages.FormEvent{ArmNum: 1, UniqueEventName: e.Name + "_arm_1", Form: in.Name})
		}
		if in.Repeating {
			m.Project.HasRepeatingInstrumentsOrEvents = 1
			for _, e := range in.Events {
				m.Repeating = append(m.Repeating, messages.RepeatingForm{EventName: e.Name + "_arm_1", FormName: in.Name})
			}
		}
	}
	m.ComputeHash()
	return m
}
