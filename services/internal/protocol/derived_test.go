package protocol

import (
	"reflect"
	"sort"
	"strings"

	"github.com/redcap-relay/relay/messages"
)

// Deviations a coordinating center meets most, derived in code from the
// real fixture projects (TestRealDictionaryDeviations runs them one by one
// and all together, each must give exactly its findings): a variable
// renamed (found by content), renamed and recoded, an item moved to a form
// collected at other events, an instrument split in two with one part
// undesignated at an event, an event renamed, and type changes that keep
// (warning) or change (error) the stored codes.
func init() {
	deviations = append(deviations,
		deviation{"item renamed (found by its content)", renameItem(false)},
		deviation{"item renamed and recoded", renameItem(true)},
		deviation{"item moved to a form collected at other events", moveItem},
		deviation{"instrument split, one part undesignated at an event", splitInstrument},
		deviation{"event renamed (same arm, place and label)", renameEvent},
		deviation{"yes/no to radio with the same codes", binaryToRadio},
		deviation{"radio to checkbox", radioToCheckbox},
	)
}

// instOf is the protocol instrument a site form implements (its name, or
// an alias the alias deviation gave it).
func instOf(p *Protocol, form string) *Instrument {
	for i := range p.Instruments {
		in := &p.Instruments[i]
		if in.Name == form {
			return in
		}
		for _, a := range in.Aliases {
			if a == form {
				return in
			}
		}
	}
	return nil
}

// untouched: the site field is still exactly the protocol's field.
func untouched(p *Protocol, f messages.Field) bool {
	in := instOf(p, f.FormName)
	if in == nil || in.Name != f.FormName {
		return false
	}
	for _, pf := range in.Fields {
		if pf.FieldName == f.FieldName {
			return reflect.DeepEqual(pf, f)
		}
	}
	return false
}

func identifierLike(f messages.Field) bool { r, _, _ := IdentifierReason(f); return r != "" }

func answerField(m *messages.MetadataSnapshot, f messages.Field) bool {
	return f.FieldName != m.Fields[0].FieldName && f.FieldType != "descriptive"
}

// formItems are the indexes of a form's answer fields.
func formItems(m *messages.MetadataSnapshot, form string) []int {
	var out []int
	for i, f := range m.Fields {
		if f.FormName == form && answerField(m, f) {
			out = append(out, i)
		}
	}
	return out
}

// designated lists the events a form is designated at, in mapping order.
func designated(m *messages.MetadataSnapshot, form string) []string {
	var out []string
	for _, fe := range m.FormEventMapping {
		if fe.Form == form {
			out = append(out, fe.UniqueEventName)
		}
	}
	return out
}

func inList(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// cleanForm: every field of the form is untouched, and it is designated
// at exactly its planned events.
func cleanForm(p *Protocol, m *messages.MetadataSnapshot, form string) bool {
	in := instOf(p, form)
	if in == nil {
		return false
	}
	var planned []string
	for _, e := range in.Events {
		planned = append(planned, e.Name)
	}
	have := designated(m, form)
	sort.Strings(planned)
	sort.Strings(have)
	if !reflect.DeepEqual(planned, have) {
		return false
	}
	n := 0
	for _, f := range m.Fields {
		if f.FormName == form {
			if !untouched(p, f) {
				return false
			}
			n++
		}
	}
	return n > 0
}

func renameRefs(m *messages.MetadataSnapshot, old, name string) {
	for i := range m.Fields {
		for _, p := range []*string{&m.Fields[i].BranchingLogic, &m.Fields[i].SelectChoicesOrCalculations} {
			for _, suffix := range []string{"]", "(", ":"} {
				*p = strings.ReplaceAll(*p, "["+old+suffix, "["+name+suffix)
			}
		}
	}
}

// renameItem gives a site variable another name, keeping its wording
// (unique in the project, so content matching can tell), and with recode
// also swaps two of its codes.
func renameItem(recode bool) func(p *Protocol, m *messages.MetadataSnapshot) ([]string, string) {
	return func(p *Protocol, m *messages.MetadataSnapshot) ([]string, string) {
		seen := map[string]int{}
		for _, f := range m.Fields {
			seen[normWording(f.FieldLabel)]++
		}
		for i := len(m.Fields) - 1; i > 0; i-- {
			f := m.Fields[i]
			w := normWording(f.FieldLabel)
			if !answerField(m, f) || w == "" || seen[w] > 1 || !untouched(p, f) || identifierLike(f) {
				continue
			}
			if recode && !isRecodable(f) {
				continue
			}
			name := "site_" + f.FieldName
			m.Fields[i].FieldName = name
			renameRefs(m, f.FieldName, name)
			want := []string{"warning|field_renamed|" + f.FormName + "|" + f.FieldName + "|"}
			if recode {
				cs, _ := ParseChoices(f.SelectChoicesOrCalculations)
				if squash(cs[0].Label) == squash(cs[1].Label) {
					continue
				}
				cs[0].Code, cs[1].Code = cs[1].Code, cs[0].Code
				m.Fields[i].SelectChoicesOrCalculations = choicesString(cs)
				want = append(want, "error|choices_recoded|"+f.FormName+"|"+f.FieldName+"|")
			}
			return want, ""
		}
		return nil, ""
	}
}

// moveItem moves the last item of a form into another instrument's form
// that is not designated at some of the first form's events.
func moveItem(p *Protocol, m *messages.MetadataSnapshot) ([]string, string) {
	forms := formsOf(m.Fields)
	for _, a := range forms {
		evA := designated(m, a)
		if len(evA) == 0 || !cleanForm(p, m, a) {
			continue
		}
		items := formItems(m, a)
		if len(items) < 2 {
			continue
		}
		for _, b := range forms {
			evB := designated(m, b)
			if b == a || instOf(p, b) == nil {
				continue
			}
			var missing []string
			for _, e := range evA {
				if !inList(evB, e) {
					missing = append(missing, e)
				}
			}
			if len(missing) == 0 {
				continue
			}
			i := items[len(items)-1]
			f := m.Fields[i]
			f.FormName = b
			rest := append(append([]messages.Field(nil), m.Fields[:i]...), m.Fields[i+1:]...)
			at := 0
			for j, g := range rest {
				if g.FormName == b {
					at = j + 1
				}
			}
			m.Fields = append(append(append([]messages.Field(nil), rest[:at]...), f), rest[at:]...)
			want := []string{"warning|field_in_other_form|" + a + "|" + f.FieldName + "|"}
			for _, e := range missing {
				want = append(want, "error|item_not_collected|"+a+"|"+f.FieldName+"|"+e)
			}
			return want, ""
		}
	}
	return nil, ""
}

// splitInstrument moves the second half of a form's items into a new form
// designated at every event of the first but its last.
func splitInstrument(p *Protocol, m *messages.MetadataSnapshot) ([]string, string) {
	for _, a := range formsOf(m.Fields) {
		evA := designated(m, a)
		if len(evA) == 0 || !cleanForm(p, m, a) {
			continue
		}
		items := formItems(m, a)
		if len(items) < 2 {
			continue
		}
		part := a + "_b"
		for _, i := range items[len(items)/2:] {
			m.Fields[i].FormName = part
		}
		// the part's fields follow the first half, as REDCap keeps a form's fields together
		var first, second, others []messages.Field
		for _, f := range m.Fields {
			switch f.FormName {
			case a:
				first = append(first, f)
			case part:
				second = append(second, f)
			}
		}
		placed := false
		for _, f := range m.Fields {
			switch {
			case f.FormName == a || f.FormName == part:
				if !placed {
					others = append(others, first...)
					others = append(others, second...)
					placed = true
				}
			default:
				others = append(others, f)
			}
		}
		m.Fields = others
		var ins []messages.Instrument
		for _, in := range m.Instruments {
			ins = append(ins, in)
			if in.InstrumentName == a {
				ins = append(ins, messages.Instrument{InstrumentName: part, InstrumentLabel: in.InstrumentLabel + " (part 2)"})
			}
		}
		m.Instruments = ins
		last := evA[len(evA)-1]
		for _, fe := range m.FormEventMapping {
			if fe.Form == a && fe.UniqueEventName != last {
				m.FormEventMapping = append(m.FormEventMapping, messages.FormEvent{ArmNum: fe.ArmNum, UniqueEventName: fe.UniqueEventName, Form: part})
			}
		}
		return []string{"warning|instrument_split|" + a + "||", "error|part_not_designated|" + a + "||" + last}, ""
	}
	return nil, ""
}

// renameEvent gives an event a new unique name, keeping its arm, place and
// label.
func renameEvent(p *Protocol, m *messages.MetadataSnapshot) ([]string, string) {
	for i := len(m.Events) - 1; i >= 0; i-- {
		e := m.Events[i]
		if len(designatedAt(m, e.UniqueEventName)) == 0 || e.EventName == "" {
			continue
		}
		stem := armSuffix.ReplaceAllString(e.UniqueEventName, "")
		name := stem + "_new" + strings.TrimPrefix(e.UniqueEventName, stem)
		m.Events[i].UniqueEventName = name
		for j := range m.FormEventMapping {
			if m.FormEventMapping[j].UniqueEventName == e.UniqueEventName {
				m.FormEventMapping[j].UniqueEventName = name
			}
		}
		return []string{"warning|event_renamed|||" + e.UniqueEventName}, ""
	}
	return nil, ""
}

func designatedAt(m *messages.MetadataSnapshot, event string) []string {
	var out []string
	for _, fe := range m.FormEventMapping {
		if fe.UniqueEventName == event {
			out = append(out, fe.Form)
		}
	}
	return out
}

// binaryToRadio turns a yes/no (or true/false) field into a radio that
// stores the same codes: a warning.
func binaryToRadio(p *Protocol, m *messages.MetadataSnapshot) ([]string, string) {
	for i, f := range m.Fields {
		if !isBinary(f.FieldType) || !untouched(p, f) {
			continue
		}
		m.Fields[i].SelectChoicesOrCalculations = choicesString(effectiveChoices(f))
		m.Fields[i].FieldType = "radio"
		return []string{"warning|type_differs|" + f.FormName + "|" + f.FieldName + "|"}, ""
	}
	return nil, ""
}

// radioToCheckbox: one column becomes one 0/1 column per answer: an error.
func radioToCheckbox(p *Protocol, m *messages.MetadataSnapshot) ([]string, string) {
	for i, f := range m.Fields {
		if f.FieldType != "radio" || !untouched(p, f) || !isRecodable(f) {
			continue
		}
		m.Fields[i].FieldType = "checkbox"
		return []string{"error|type_differs|" + f.FormName + "|" + f.FieldName + "|"}, ""
	}
	return nil, ""
}
