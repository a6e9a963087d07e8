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
		pe := PlannedEvent{Name: e.unique, Label: e.label, Day: e.day, WindowBefore: e.min, WindowAfter: e.max, Match: []string{e.unique}}
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
