package demo

import (
	"math/rand/v2"
	"strconv"

	"github.com/redcap-relay/relay/messages"
)

// Design is a longitudinal project design: dictionary, events in order, the
// forms collected at each event, and one repeating instrument.
type Design struct {
	Fields     []messages.Field
	Events     []messages.Event
	FEM        []messages.FormEvent
	RepeatForm string
}

// eventRetention is the share of participants seen at each event in turn:
// follow-up drops off as in a real trial.
var eventRetention = []int{100, 85, 70, 55, 45}

// Generate makes n synthetic participants for a design.
func Generate(d Design, n int, seed uint64) Project {
	s := synth{r: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	p := Project{Fields: d.Fields, Events: d.Events, FEM: d.FEM, repeatForm: d.RepeatForm}
	p.Arms = []messages.Arm{{ArmNum: 1, Name: "Arm 1"}}
	if d.RepeatForm != "" {
		for _, e := range d.Events {
			p.Repeating = append(p.Repeating, messages.RepeatingForm{EventName: e.UniqueEventName, FormName: d.RepeatForm})
		}
	}
	idField := d.Fields[0].FieldName
	formsAt := map[string][]string{}
	for _, fe := range d.FEM {
		formsAt[fe.UniqueEventName] = append(formsAt[fe.UniqueEventName], fe.Form)
	}
	for i := 1; i <= n; i++ {
		id := strconv.Itoa(i)
		p.RecordIDs = append(p.RecordIDs, id)
		for ei, ev := range d.Events {
			keep := eventRetention[min(ei, len(eventRetention)-1)]
			if s.intn(100) >= keep {
				break
			}
			row := messages.Row{idField: id, "redcap_event_name": ev.UniqueEventName}
			for _, form := range formsAt[ev.UniqueEventName] {
				if form == d.RepeatForm {
					continue
				}
				// A few forms are never opened: REDCap shows them gray.
				if ei > 0 && s.intn(100) < 4 {
					continue
				}
				s.formRow(row, d.Fields, form)
			}
			p.Rows = append(p.Rows, row)
			if d.RepeatForm == "" || !contains(formsAt[ev.UniqueEventName], d.RepeatForm) {
				continue
			}
			for inst := 1; inst <= 1+s.intn(3); inst++ {
				rr := messages.Row{idField: id, "redcap_event_name": ev.UniqueEventName,
					"redcap_repeat_instrument": d.RepeatForm, "redcap_repeat_instance": strconv.Itoa(inst)}
				s.formRow(rr, d.Fields, d.RepeatForm)
				p.Rows = append(p.Rows, rr)
			}
		}
	}
	return p
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}
