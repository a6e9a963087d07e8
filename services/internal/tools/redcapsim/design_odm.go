package redcapsim

import (
	"strconv"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/tools/redcapsim/odm"
)

func specFromODM(op *odm.Project) ProjectSpec {
	return ProjectSpec{
		Title: op.Title, Fields: op.Fields, Instruments: op.Instruments, Arms: op.Arms, Events: op.Events,
		FormEventMapping: op.FEM, Repeating: op.Repeating, DAGs: op.DAGs, SurveysEnabled: op.Surveys,
		Surveys: op.SurveyForms, SurveyQueue: op.SurveyQueue,
		Autonumbering: op.Autonumber, Purpose: op.Purpose,
	}
}

// rawRows are the stored values as flat rows (gray statuses absent,
// checkboxes "1" or "0"), for the project XML.
func (p *project) rawRows(recs []*record) []messages.Row {
	var out []messages.Row
	for _, rec := range recs {
		for ri := range rec.rows {
			r := &rec.rows[ri]
			m := messages.Row{p.recordIDField(): rec.id}
			if p.longitudinal {
				m["redcap_event_name"] = p.eventUnique(int(r.ev))
			}
			if r.rep != repNone {
				m["redcap_repeat_instrument"] = p.repName(r.rep)
				if r.rep == repEvent {
					m["redcap_repeat_instrument"] = ""
				}
				m["redcap_repeat_instance"] = strconv.Itoa(int(r.inst))
			}
			if ri == 0 && rec.dag >= 0 {
				m["redcap_data_access_group"] = p.dags[rec.dag].Unique
			}
			for ci := 1; ci < len(p.cols); ci++ {
				if !p.applies(p.cols[ci].form, r) {
					continue
				}
				v := r.cell(ci)
				if p.cols[ci].kind == colFile {
					v = p.docName(v) // the project XML names files (DocName)
				}
				if p.cols[ci].kind == colCheckbox {
					if v == "1" {
						m[p.cols[ci].name] = "1"
					} else {
						m[p.cols[ci].name] = "0"
					}
					continue
				}
				if v != "" {
					m[p.cols[ci].name] = v
				}
			}
			out = append(out, m)
		}
	}
	return out
}

func (p *project) odmProject(version string, recs []*record) *odm.Project {
	op := &odm.Project{
		Title: p.title, RecordIDField: p.recordIDField(), Purpose: p.purpose, Autonumber: p.autonumber,
		Surveys: p.surveys, Version: version, Fields: p.fields, Instruments: p.instruments,
		Repeating: p.repeating, DAGs: p.dags, SurveyForms: p.surveyForms, SurveyQueue: p.surveyQueue,
	}
	if p.longitudinal {
		op.Arms, op.Events, op.FEM = p.arms, p.events, p.fem
	}
	if recs != nil {
		op.Rows = p.rawRows(recs)
	}
	return op
}
