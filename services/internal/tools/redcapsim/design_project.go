package redcapsim

import (
	"fmt"

	"github.com/redcap-relay/relay/messages"
)

func (s *Server) newProject(spec ProjectSpec) (*project, error) {
	p := &project{
		id:          spec.ID,
		title:       spec.Title,
		fields:      append([]messages.Field(nil), spec.Fields...),
		instruments: append([]messages.Instrument(nil), spec.Instruments...),
		arms:        append([]messages.Arm(nil), spec.Arms...),
		events:      append([]messages.Event(nil), spec.Events...),
		fem:         append([]messages.FormEvent(nil), spec.FormEventMapping...),
		repeating:   append([]messages.RepeatingForm(nil), spec.Repeating...),
		dags:        append([]messages.DAG(nil), spec.DAGs...),
		surveys:     spec.SurveysEnabled || len(spec.Surveys) > 0,
		surveyForms: append([]survey(nil), spec.Surveys...),
		surveyQueue: spec.SurveyQueue,
		autonumber:  spec.Autonumbering,
		purpose:     spec.Purpose,
		created:     s.now(),
	}
	if p.title == "" {
		p.title = "Simulated project"
	}
	if spec.Longitudinal && len(p.events) == 0 {
		p.arms = []messages.Arm{{ArmNum: 1, Name: "Arm 1"}}
		p.events = []messages.Event{{EventName: "Event 1", ArmNum: 1, UniqueEventName: "event_1_arm_1"}}
		for _, f := range p.fields {
			if len(p.fem) == 0 || p.fem[len(p.fem)-1].Form != f.FormName {
				p.fem = append(p.fem, messages.FormEvent{ArmNum: 1, UniqueEventName: "event_1_arm_1", Form: f.FormName})
			}
		}
	}
	fillEventDefaults(p)
	fillDAGDefaults(p)
	if err := p.rebuild(); err != nil {
		return nil, fmt.Errorf("redcapsim: %w", err)
	}
	return p, nil
}

// fillEventDefaults gives events their IDs, unique names and arms.
func fillEventDefaults(p *project) {
	if p.nextEventID == 0 {
		p.nextEventID = 41
	}
	taken := map[string]bool{}
	for _, e := range p.events {
		if e.EventID >= p.nextEventID {
			p.nextEventID = e.EventID + 1
		}
		taken[e.UniqueEventName] = true
	}
	for i := range p.events {
		e := &p.events[i]
		if e.ArmNum == 0 {
			e.ArmNum = 1
		}
		if e.UniqueEventName == "" {
			e.UniqueEventName = uniqueEventName(e.EventName, e.ArmNum, taken)
			taken[e.UniqueEventName] = true
		}
		if e.EventID == 0 {
			e.EventID = p.nextEventID
			p.nextEventID++
		}
	}
	arms := map[int]bool{}
	for _, a := range p.arms {
		arms[a.ArmNum] = true
	}
	for _, e := range p.events {
		if !arms[e.ArmNum] {
			arms[e.ArmNum] = true
			p.arms = append(p.arms, messages.Arm{ArmNum: e.ArmNum, Name: fmt.Sprintf("Arm %d", e.ArmNum)})
		}
	}
	for i := range p.fem {
		if p.fem[i].ArmNum == 0 {
			for _, e := range p.events {
				if e.UniqueEventName == p.fem[i].UniqueEventName {
					p.fem[i].ArmNum = e.ArmNum
				}
			}
		}
	}
}

func fillDAGDefaults(p *project) {
	next := 1
	for _, d := range p.dags {
		if d.ID >= next {
			next = d.ID + 1
		}
	}
	for i := range p.dags {
		d := &p.dags[i]
		if d.Unique == "" {
			d.Unique = uniqueDAGName(d.Name)
		}
		if d.Name == "" {
			d.Name = d.Unique
		}
		if d.ID == 0 {
			d.ID = next
			next++
		}
	}
}
