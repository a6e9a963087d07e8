package redcapsim

import (
	"strconv"
	"time"
)

// renameLocked renames record old to new (with arm > 0, only its rows in
// that arm move; the rest stay under the old name). It logs the rename as
// REDCap does and persists it. Callers hold p.mu (write) and have checked
// that old exists and that new may take the rows.
func (s *Server) renameLocked(p *project, old, new string, arm int, user string) {
	ts := s.now().Unix()
	rec := p.records[old]
	var moved, kept []row
	for _, r := range rec.rows {
		if arm > 0 && p.events[r.ev].ArmNum != arm {
			kept = append(kept, r)
		} else {
			moved = append(moved, r)
		}
	}
	target := p.records[new]
	if target == nil {
		target = &record{id: new, dag: rec.dag}
		p.addRecord(target)
	}
	target.rows = append(target.rows, moved...)
	target.sortRows()
	if len(kept) == 0 {
		p.removeRecord(old)
		if id, ok := p.surveyIdents[old]; ok {
			delete(p.surveyIdents, old)
			p.surveyIdents[new] = id
		}
	} else {
		rec.rows = kept
	}
	p.settleOrder()
	p.noteDAGName(new)
	details := "old_record = '" + old + "',\nnew_record = '" + new + "'"
	if arm > 0 {
		details += ",\narm=" + strconv.Itoa(arm)
	}
	p.log = append(p.log, logEntry{ts: ts, user: user, action: "Rename Record (API) " + new, record: new, details: details, kind: logRename})
	s.persistRename(p, old, new, arm, user, ts)
}

// renameProblem says why old cannot be renamed to new ("" = it can).
// Callers hold p.mu.
func (p *project) renameProblem(old, new string, arm, dag int) string {
	rec := p.records[old]
	if rec == nil || (dag >= 0 && rec.dag != dag) {
		return "Current Record does not exists."
	}
	target := p.records[new]
	if target == nil {
		return ""
	}
	if arm == 0 {
		return "The record name '" + new + "' already exists in the project. Choose a new record name that is not in use."
	}
	for _, r := range target.rows {
		if p.events[r.ev].ArmNum == arm {
			return "The record name '" + new + "' already exists in arm " + strconv.Itoa(arm) + ". Choose a new record name that is not in use."
		}
	}
	return ""
}

// replayRename applies a persisted rename without logging it again.
func (s *Server) replayRename(p *project, op *diskChange) {
	if len(op.IDs) != 2 || p.records[op.IDs[0]] == nil {
		return
	}
	saved, now := p.dataDir, s.now
	p.dataDir = ""
	s.now = func() time.Time { return time.Unix(op.TS, 0) }
	s.renameLocked(p, op.IDs[0], op.IDs[1], op.Arm, op.User)
	s.now, p.dataDir = now, saved
}
