package protocol

import (
	"fmt"
	"strings"
	"testing"

	"github.com/redcap-relay/relay/messages"
)

// bigSite is a longitudinal project of n fields over 40 forms and 4 events.
func bigSite(site string, n int) *messages.MetadataSnapshot {
	m := &messages.MetadataSnapshot{V: messages.V, Site: site, Project: messages.ProjectInfo{IsLongitudinal: 1}}
	m.Fields = append(m.Fields, messages.Field{FieldName: "record_id", FormName: "form_00", FieldType: "text", FieldLabel: "Record ID"})
	for i := 1; i < n; i++ {
		form := fmt.Sprintf("form_%02d", i%40)
		f := messages.Field{FieldName: fmt.Sprintf("item_%04d", i), FormName: form, FieldLabel: fmt.Sprintf("Question %d about something", i)}
		switch i % 4 {
		case 0:
			f.FieldType, f.SelectChoicesOrCalculations = "radio", "0, Never | 1, Sometimes | 2, Often | 3, Always"
		case 1:
			f.FieldType, f.TextValidationTypeOrShowSlider, f.TextValidationMin, f.TextValidationMax = "text", "integer", "0", "100"
		case 2:
			f.FieldType, f.SelectChoicesOrCalculations = "checkbox", "1, A | 2, B | 3, C | 4, D | 5, E"
		default:
			f.FieldType, f.BranchingLogic = "yesno", fmt.Sprintf("[item_%04d] = '1'", i-1)
		}
		m.Fields = append(m.Fields, f)
	}
	m.Instruments = InstrumentsOf(m.Fields)
	for _, e := range []string{"baseline_arm_1", "month_3_arm_1", "month_6_arm_1", "month_12_arm_1"} {
		m.Events = append(m.Events, messages.Event{UniqueEventName: e, ArmNum: 1, EventName: e})
		for _, in := range m.Instruments {
			m.FormEventMapping = append(m.FormEventMapping, messages.FormEvent{ArmNum: 1, UniqueEventName: e, Form: in.InstrumentName})
		}
	}
	return m
}

// BenchmarkCheck20Sites2000Fields: one op checks 20 sites, each with a
// 2,000-field dictionary, against a 2,000-field protocol.
func BenchmarkCheck20Sites2000Fields(b *testing.B) {
	ref := bigSite("ref", 2000)
	p := FromSnapshot("big", "1", ref)
	var sites []*messages.MetadataSnapshot
	for s := 0; s < 20; s++ {
		m := bigSite(fmt.Sprintf("site-%02d", s), 2000)
		m.Fields[101+4*s].TextValidationTypeOrShowSlider = "number" // one deviation each (a text field)
		sites = append(sites, m)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, m := range sites {
			r := Check(p, m.Site, m, nil)
			if r.Errors != 1 {
				b.Fatalf("%s: %d errors", m.Site, r.Errors)
			}
		}
	}
}

// benchRenamed: one op checks 20 sites whose dictionaries use other
// variable names for every n-th item, so content matching has to find
// them (and does: each renamed item must be reported renamed).
func benchRenamed(b *testing.B, every int) {
	ref := bigSite("ref", 2000)
	p := FromSnapshot("big", "1", ref)
	var sites []*messages.MetadataSnapshot
	renamed := 0
	for s := 0; s < 20; s++ {
		m := bigSite(fmt.Sprintf("site-%02d", s), 2000)
		renamed = 0
		for i := 1; i < len(m.Fields); i += every {
			old := m.Fields[i].FieldName
			m.Fields[i].FieldName = "site_" + old
			renamed++
			// branching logic that names the old variable follows it, as REDCap does
			for j := range m.Fields {
				m.Fields[j].BranchingLogic = strings.ReplaceAll(m.Fields[j].BranchingLogic, "["+old+"]", "[site_"+old+"]")
			}
		}
		sites = append(sites, m)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		for _, m := range sites {
			r := Check(p, m.Site, m, nil)
			if n := len(findings(r, KindFieldRenamed)); n != renamed {
				b.Fatalf("%s: %d renamed items reported, want %d", m.Site, n, renamed)
			}
		}
	}
}

// BenchmarkCheck20Sites2000FieldsContent: a tenth of every site's items
// under other names.
func BenchmarkCheck20Sites2000FieldsContent(b *testing.B) { benchRenamed(b, 10) }

// BenchmarkCheck20Sites2000FieldsAllRenamed: every item under another
// name, the worst case for content matching.
func BenchmarkCheck20Sites2000FieldsAllRenamed(b *testing.B) { benchRenamed(b, 1) }
