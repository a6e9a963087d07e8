package redcapsim

import "github.com/redcap-relay/relay/messages"

// redesign applies a metadata or design change to a copy of the project,
// checks it, remaps the stored rows and swaps it in. Callers hold p.mu.
func (s *Server) redesign(p *project, change func(q *project)) error {
	q := &project{
		id: p.id, title: p.title,
		fields:      append([]messages.Field(nil), p.fields...),
		instruments: append([]messages.Instrument(nil), p.instruments...),
		arms:        append([]messages.Arm(nil), p.arms...),
		events:      append([]messages.Event(nil), p.events...),
		fem:         append([]messages.FormEvent(nil), p.fem...),
		repeating:   append([]messages.RepeatingForm(nil), p.repeating...),
		dags:        append([]messages.DAG(nil), p.dags...),
		surveys:     p.surveys, autonumber: p.autonumber, purpose: p.purpose,
		surveyForms: append([]survey(nil), p.surveyForms...), surveyQueue: p.surveyQueue,
		nextEventID: p.nextEventID, records: map[string]*record{}, dagSeq: p.dagSeq,
	}
	change(q)
	fillEventDefaults(q)
	fillDAGDefaults(q)
	q.longitudinal = len(q.events) > 0
	if err := q.rebuild(); err != nil {
		return errorf(400, "The design change was not applied: "+err.Error())
	}
	// Remap rows by column, form and event names.
	colMap := make([]int, len(p.cols))
	for i, c := range p.cols {
		colMap[i] = -1
		if j, ok := q.colByName[c.name]; ok {
			colMap[i] = j
		}
	}
	evMap := make([]int, p.numEvents())
	for i := range evMap {
		evMap[i] = -1
		if !p.longitudinal {
			evMap[i] = 0 // classic data moves into the first event
			continue
		}
		if j, ok := q.eventByName[p.events[i].UniqueEventName]; ok {
			evMap[i] = j
		}
	}
	formMap := make([]int, len(p.forms))
	for i, f := range p.forms {
		formMap[i] = -1
		if j, ok := q.formByName[f.name]; ok {
			formMap[i] = j
		}
	}
	dagMap := make([]int, len(p.dags))
	for i, d := range p.dags {
		dagMap[i] = -1
		if j, ok := q.dagByName[d.Unique]; ok {
			dagMap[i] = j
		}
	}
	ncols := len(q.cols)
	for id, rec := range p.records {
		nr := &record{id: id, dag: -1}
		if rec.dag >= 0 {
			nr.dag = dagMap[rec.dag]
		}
		for _, r := range rec.rows {
			ev := evMap[r.ev]
			if ev < 0 {
				continue
			}
			rep := int(r.rep)
			if rep >= 0 {
				rep = formMap[rep]
				if rep < 0 || !q.repForm[ev][rep] {
					continue
				}
			} else if rep == repEvent && !q.repEv[ev] {
				continue
			}
			old := r.cells(len(p.cols))
			vals := make([]string, ncols)
			for i, v := range old {
				if colMap[i] >= 0 {
					vals[colMap[i]] = v
				}
			}
			nrow := row{ev: int16(ev), rep: int16(rep), inst: r.inst}
			nrow.data, nrow.offs = packRow(vals)
			nr.rows = append(nr.rows, nrow)
		}
		if len(nr.rows) > 0 {
			nr.sortRows()
			q.records[id] = nr
		}
	}
	// Swap the new design in, keeping the lock, log and persistence state.
	p.fields, p.instruments, p.arms, p.events, p.fem, p.repeating, p.dags = q.fields, q.instruments, q.arms, q.events, q.fem, q.repeating, q.dags
	p.longitudinal, p.nextEventID = q.longitudinal, q.nextEventID
	p.finfo, p.fieldByName, p.forms, p.formByName, p.cols, p.colByName = q.finfo, q.fieldByName, q.forms, q.formByName, q.cols, q.colByName
	p.eventByName, p.designated, p.repForm, p.repEv, p.hasRepeat = q.eventByName, q.designated, q.repForm, q.repEv, q.hasRepeat
	p.dagByName, p.armFirstEv = q.dagByName, q.armFirstEv
	p.surveyForms = filter(q.surveyForms, func(sv survey) bool { return q.isForm(sv.Form) })
	p.surveyOf, p.surveyQueue = q.surveyOf, q.surveyQueue
	p.resetRecords(q.records)
	// Users of a deleted DAG are no longer assigned to it.
	for _, u := range p.users {
		if u.DAG != "" && p.dagIndexOf(u.DAG) < 0 {
			u.DAG = ""
		}
	}
	p.log = append(p.log, logEntry{ts: s.now().Unix(), user: "api", action: "Manage/Design", details: "Design change (API)", kind: logManage})
	return s.snapshotLocked(p)
}
