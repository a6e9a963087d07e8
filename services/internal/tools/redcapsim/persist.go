package redcapsim

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"github.com/redcap-relay/relay/messages"
)

// Persistence layout under DataDir:
//
//	tokens.json                      tokens and the super token
//	projects/<id>/snapshot.jsonl     design line, then one line per record and per log entry
//	projects/<id>/changes-<gen>.jsonl  imports and deletes since that snapshot (append only)
//
// A snapshot is written on Close, after design changes and when the change
// file grows past compactBytes; it names the generation of the change file
// that follows it, so a crash between the two steps never replays twice.

const compactBytes = 256 << 20

type appendLog struct {
	f    *os.File
	w    *bufio.Writer
	size int64
}

func (l *appendLog) write(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	n, err := l.w.Write(b)
	l.size += int64(n)
	if err != nil {
		return err
	}
	return l.w.Flush()
}

func (l *appendLog) close() error {
	if l == nil {
		return nil
	}
	err := l.w.Flush()
	return errors.Join(err, l.f.Close())
}

type diskDesign struct {
	ID          int                      `json:"id"`
	Gen         int                      `json:"gen"`
	Title       string                   `json:"title"`
	Fields      []messages.Field         `json:"fields"`
	Instruments []messages.Instrument    `json:"instruments"`
	Arms        []messages.Arm           `json:"arms,omitempty"`
	Events      []messages.Event         `json:"events,omitempty"`
	FEM         []messages.FormEvent     `json:"fem,omitempty"`
	Repeating   []messages.RepeatingForm `json:"repeating,omitempty"`
	DAGs        []messages.DAG           `json:"dags,omitempty"`
	Surveys     bool                     `json:"surveys,omitempty"`
	Autonumber  bool                     `json:"autonumber,omitempty"`
	Purpose     int                      `json:"purpose"`
	Created     time.Time                `json:"created"`
	NextEventID int                      `json:"next_event_id"`
	DAGSeq      map[int]int              `json:"dag_seq,omitempty"`
	Users       []*user                  `json:"users,omitempty"`
	Roles       []*role                  `json:"roles,omitempty"`
	Docs        []*doc                   `json:"docs,omitempty"`
	Folders     []*repoFolder            `json:"repository_folders,omitempty"`
	SurveyForms []survey                 `json:"survey_forms,omitempty"`
	SurveyQueue bool                     `json:"survey_queue,omitempty"`
	SurveyIDs   map[string]string        `json:"survey_identifiers,omitempty"`
	NextDocID   int                      `json:"next_doc_id,omitempty"`
}

type diskRow struct {
	Event string      `json:"e,omitempty"`
	Rep   string      `json:"r,omitempty"` // form name, "" none, "*" whole event
	Inst  int         `json:"i,omitempty"`
	Vals  [][2]string `json:"v,omitempty"`
}

type diskRecord struct {
	ID   string    `json:"rec"`
	DAG  string    `json:"dag,omitempty"`
	Rows []diskRow `json:"rows"`
}

type diskLog struct {
	TS      int64  `json:"ts"`
	User    string `json:"u"`
	Action  string `json:"a"`
	Details string `json:"d,omitempty"`
	Record  string `json:"r,omitempty"`
	Kind    uint8  `json:"k"`
}

type diskLine struct {
	Design *diskDesign `json:"design,omitempty"`
	Record *diskRecord `json:"record,omitempty"`
	Log    *diskLog    `json:"log,omitempty"`
	Op     *diskChange `json:"op,omitempty"`
}

type diskPlanned struct {
	Rec   string      `json:"rec"`
	Event string      `json:"e,omitempty"`
	Rep   string      `json:"r,omitempty"`
	Inst  int         `json:"i,omitempty"`
	New   bool        `json:"new,omitempty"`
	DAG   *string     `json:"dag,omitempty"`
	Vals  [][2]string `json:"v,omitempty"`
}

type diskChange struct {
	Kind      string        `json:"kind"` // import, delete
	TS        int64         `json:"ts"`
	User      string        `json:"u"`
	Overwrite bool          `json:"ow,omitempty"`
	Silent    bool          `json:"silent,omitempty"` // no change-log entry
	Rows      []diskPlanned `json:"rows,omitempty"`
	IDs       []string      `json:"ids,omitempty"`
	Log       []diskLog     `json:"log,omitempty"`     // entries the change logged (kinds that do not log on replay)
	Docs      []*doc        `json:"docs,omitempty"`    // kind doc: docs added (DocIDs: removed)
	Folders   []*repoFolder `json:"folders,omitempty"` // kind folders: every File Repository folder
	DocIDs    []int         `json:"doc_ids,omitempty"`
	Users     []*user       `json:"users,omitempty"` // kind access: every user and role
	Roles     []*role       `json:"roles,omitempty"`
	Arm       int           `json:"arm,omitempty"`
	// a narrower delete: its event, instrument and instance
	Event      string `json:"event,omitempty"`
	Instrument string `json:"instrument,omitempty"`
	Instance   int    `json:"instance,omitempty"`
}

type diskTokens struct {
	Super  string      `json:"super,omitempty"`
	Users  int         `json:"users"`
	Tokens []diskToken `json:"tokens"`
}

type diskToken struct {
	Token   string `json:"token"`
	Project int    `json:"project"`
	User    string `json:"user"`
	// Rights and DAG are how data folders written before users existed
	// kept a token's rights; such a token's user is created from them.
	Rights *Rights `json:"rights,omitempty"`
	DAG    string  `json:"dag,omitempty"`
}

func (s *Server) projectDir(id int) string {
	return filepath.Join(s.opts.DataDir, "projects", strconv.Itoa(id))
}

// openDataDir loads every persisted project and the tokens.
func (s *Server) openDataDir() error {
	dir := s.opts.DataDir
	if err := os.MkdirAll(filepath.Join(dir, "projects"), 0o755); err != nil {
		return fmt.Errorf("redcapsim: data dir %s: %w", dir, err)
	}
	entries, err := os.ReadDir(filepath.Join(dir, "projects"))
	if err != nil {
		return fmt.Errorf("redcapsim: data dir %s: %w", dir, err)
	}
	for _, e := range entries {
		id, err := strconv.Atoi(e.Name())
		if err != nil || !e.IsDir() {
			continue
		}
		p, err := s.loadProjectDir(id)
		if err != nil {
			return fmt.Errorf("redcapsim: data dir %s: project %d: %w", dir, id, err)
		}
		s.projs[id] = p
		if id >= s.nextID {
			s.nextID = id + 1
		}
	}
	b, err := os.ReadFile(filepath.Join(dir, "tokens.json"))
	if err == nil {
		var dt diskTokens
		if err := json.Unmarshal(b, &dt); err != nil {
			return fmt.Errorf("redcapsim: data dir %s: tokens.json is damaged (%v); fix or delete it", dir, err)
		}
		s.super, s.users = dt.Super, dt.Users
		for _, t := range dt.Tokens {
			s.tokens[t.Token] = &token{project: t.Project, user: t.User}
			if p := s.projs[t.Project]; p != nil && p.users[t.User] == nil && t.Rights != nil {
				p.users[t.User] = &user{Name: t.User, DAG: t.DAG, MetadataOnly: t.Rights.Metadata, privileges: privilegesFromRights(*t.Rights, p.forms)}
			}
		}
	} else if !os.IsNotExist(err) {
		return fmt.Errorf("redcapsim: data dir %s: %w", dir, err)
	}
	return nil
}

func (s *Server) loadProjectDir(id int) (*project, error) {
	pdir := s.projectDir(id)
	f, err := os.Open(filepath.Join(pdir, "snapshot.jsonl"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<30)
	var p *project
	for sc.Scan() {
		var l diskLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			return nil, fmt.Errorf("snapshot.jsonl is damaged: %w", err)
		}
		switch {
		case l.Design != nil:
			d := l.Design
			p = &project{id: d.ID, title: d.Title, fields: d.Fields, instruments: d.Instruments, arms: d.Arms,
				events: d.Events, fem: d.FEM, repeating: d.Repeating, dags: d.DAGs, surveys: d.Surveys,
				autonumber: d.Autonumber, purpose: d.Purpose, created: d.Created, nextEventID: d.NextEventID,
				dagSeq: d.DAGSeq, gen: d.Gen, roles: d.Roles, nextDocID: d.NextDocID,
				surveyForms: d.SurveyForms, surveyQueue: d.SurveyQueue, surveyIdents: d.SurveyIDs, folders: d.Folders}
			if err := p.rebuild(); err != nil {
				return nil, err
			}
			p.setUsers(d.Users)
			for _, doc := range d.Docs {
				p.docs[doc.ID] = doc
			}
		case l.Record != nil && p != nil:
			if err := p.restoreRecord(l.Record); err != nil {
				return nil, err
			}
		case l.Log != nil && p != nil:
			g := l.Log
			p.log = append(p.log, logEntry{ts: g.TS, user: g.User, action: g.Action, details: g.Details, record: g.Record, kind: g.Kind})
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if p != nil {
		p.settleOrder()
	}
	if p == nil {
		return nil, errors.New("snapshot.jsonl has no design line")
	}
	// Replay the changes made after the snapshot.
	cpath := filepath.Join(pdir, fmt.Sprintf("changes-%d.jsonl", p.gen))
	if cf, err := os.Open(cpath); err == nil {
		csc := bufio.NewScanner(cf)
		csc.Buffer(make([]byte, 1<<20), 1<<30)
		for csc.Scan() {
			var l diskLine
			if err := json.Unmarshal(csc.Bytes(), &l); err != nil || l.Op == nil {
				break // a torn last line: stop at the last complete change
			}
			p.replay(l.Op, s)
		}
		cf.Close()
	}
	p.dataDir = pdir
	if err := s.openChanges(p); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *project) restoreRecord(d *diskRecord) error {
	rec := &record{id: d.ID, dag: -1}
	if d.DAG != "" {
		if i, ok := p.dagByName[d.DAG]; ok {
			rec.dag = i
		}
	}
	for _, dr := range d.Rows {
		ev, ok1 := p.evIndex(dr.Event)
		rep, ok2 := p.repIndex(dr.Rep)
		if !ok1 || !ok2 {
			continue
		}
		vals := make([]string, len(p.cols))
		for _, kv := range dr.Vals {
			if c, ok := p.colByName[kv[0]]; ok {
				vals[c] = kv[1]
			}
		}
		r := row{ev: int16(ev), rep: int16(rep), inst: int32(dr.Inst)}
		r.data, r.offs = packRow(vals)
		rec.rows = append(rec.rows, r)
	}
	rec.sortRows()
	if old := p.records[d.ID]; old != nil {
		p.removeRecord(d.ID)
	}
	p.addRecord(rec)
	return nil
}

func (p *project) replay(op *diskChange, s *Server) {
	switch op.Kind {
	case "import":
		plan := make([]plannedRow, 0, len(op.Rows))
		for _, dr := range op.Rows {
			ev, ok1 := p.evIndex(dr.Event)
			rep, ok2 := p.repIndex(dr.Rep)
			if !ok1 || !ok2 {
				continue
			}
			pr := plannedRow{rec: dr.Rec, ev: ev, rep: rep, inst: dr.Inst, newInst: dr.New, dag: -1}
			if dr.DAG != nil {
				pr.dagSet = true
				if i, ok := p.dagByName[*dr.DAG]; ok {
					pr.dag = i
				}
			}
			for _, kv := range dr.Vals {
				if c, ok := p.colByName[kv[0]]; ok {
					pr.vals = append(pr.vals, colVal{c, kv[1]})
				}
			}
			plan = append(plan, pr)
		}
		p.applyPlan(plan, writeOpts{overwrite: op.Overwrite, user: op.User, ts: op.TS, silent: op.Silent})
		p.replayLog(op.Log)
	case "doc":
		for _, d := range op.Docs {
			p.docs[d.ID] = d
			p.nextDocID = max(p.nextDocID, d.ID)
		}
		for _, id := range op.DocIDs {
			delete(p.docs, id)
		}
	case "folders":
		p.folders = op.Folders
	case "survey_ident":
		if len(op.IDs) == 2 {
			if op.IDs[1] == "" {
				delete(p.surveyIdents, op.IDs[0])
			} else {
				p.surveyIdents[op.IDs[0]] = op.IDs[1]
			}
		}
	case "rename":
		s.replayRename(p, op)
	case "access":
		p.setUsers(op.Users)
		p.roles = op.Roles
		p.replayLog(op.Log)
	case "delete":
		s.replayDelete(p, op)
	}
}

func (s *Server) openChanges(p *project) error {
	if p.dataDir == "" {
		return nil
	}
	path := filepath.Join(p.dataDir, fmt.Sprintf("changes-%d.jsonl", p.gen))
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("redcapsim: project %d: open change log: %w", p.id, err)
	}
	st, _ := f.Stat()
	var size int64
	if st != nil {
		size = st.Size()
	}
	p.logFile = &appendLog{f: f, w: bufio.NewWriterSize(f, 64<<10), size: size}
	return nil
}

func (s *Server) persistNewProject(p *project) error {
	if s.opts.DataDir == "" {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dataDir = s.projectDir(p.id)
	return s.snapshotLocked(p)
}

func (s *Server) persistImport(p *project, plan []plannedRow, wo writeOpts, logged ...logEntry) {
	if p.dataDir == "" || p.logFile == nil {
		return
	}
	op := &diskChange{Kind: "import", TS: wo.ts, User: wo.user, Overwrite: wo.overwrite, Silent: wo.silent, Rows: make([]diskPlanned, len(plan)), Log: diskLogs(logged)}
	for i, pr := range plan {
		dp := diskPlanned{Rec: pr.rec, Event: p.eventUnique(pr.ev), Rep: p.repName(int16(pr.rep)), Inst: pr.inst, New: pr.newInst}
		if pr.dagSet {
			d := ""
			if pr.dag >= 0 {
				d = p.dags[pr.dag].Unique
			}
			dp.DAG = &d
		}
		dp.Vals = make([][2]string, len(pr.vals))
		for j, cv := range pr.vals {
			dp.Vals[j] = [2]string{p.cols[cv.col].name, cv.val}
		}
		op.Rows[i] = dp
	}
	s.appendChange(p, op)
}

// persistAccess records every user and role (they are few), with the log
// entries the change made. Callers hold p.mu (write).
func (s *Server) persistAccess(p *project, logged ...logEntry) {
	if p.dataDir == "" || p.logFile == nil {
		return
	}
	s.appendChange(p, &diskChange{Kind: "access", TS: s.now().Unix(), Users: p.userList(), Roles: p.roles, Log: diskLogs(logged)})
}

func diskLogs(ls []logEntry) []diskLog {
	var out []diskLog
	for _, l := range ls {
		out = append(out, diskLog{TS: l.ts, User: l.user, Action: l.action, Details: l.details, Record: l.record, Kind: l.kind})
	}
	return out
}

func (p *project) replayLog(ls []diskLog) {
	for _, g := range ls {
		p.log = append(p.log, logEntry{ts: g.TS, user: g.User, action: g.Action, details: g.Details, record: g.Record, kind: g.Kind})
	}
}

func (s *Server) persistFolders(p *project) {
	if p.dataDir == "" || p.logFile == nil {
		return
	}
	s.appendChange(p, &diskChange{Kind: "folders", TS: s.now().Unix(), Folders: p.folders})
}

func (s *Server) persistSurveyIdent(p *project, record, ident string) {
	if p.dataDir == "" || p.logFile == nil {
		return
	}
	s.appendChange(p, &diskChange{Kind: "survey_ident", TS: s.now().Unix(), IDs: []string{record, ident}})
}

func (s *Server) persistRename(p *project, old, new string, arm int, user string, ts int64) {
	if p.dataDir == "" || p.logFile == nil {
		return
	}
	s.appendChange(p, &diskChange{Kind: "rename", TS: ts, User: user, IDs: []string{old, new}, Arm: arm})
}

// persistDocs records docs added and removed. Callers hold p.mu (write).
func (s *Server) persistDocs(p *project, added []*doc, removed []int) {
	if p.dataDir == "" || p.logFile == nil || (len(added) == 0 && len(removed) == 0) {
		return
	}
	s.appendChange(p, &diskChange{Kind: "doc", TS: s.now().Unix(), Docs: added, DocIDs: removed})
}

func (s *Server) persistDelete(p *project, ids []string, sel deleteSel, user string, ts int64) {
	if p.dataDir == "" || p.logFile == nil {
		return
	}
	op := &diskChange{Kind: "delete", TS: ts, User: user, IDs: ids, Arm: sel.arm, Instance: sel.inst}
	if sel.ev >= 0 {
		op.Event = p.eventUnique(sel.ev)
	}
	if sel.form >= 0 {
		op.Instrument = p.forms[sel.form].name
	}
	s.appendChange(p, op)
}

func (s *Server) appendChange(p *project, op *diskChange) {
	if err := p.logFile.write(diskLine{Op: op}); err != nil {
		p.persistErr = err
		s.log.Error("redcapsim: change log write failed; data will be lost on restart", "project_id", p.id, "err", err)
		return
	}
	if p.logFile.size > compactBytes {
		if err := s.snapshotLocked(p); err != nil {
			s.log.Error("redcapsim: snapshot failed", "project_id", p.id, "err", err)
		}
	}
}

// snapshotLocked writes the whole project and starts a new change file.
// Callers hold p.mu (or own p exclusively).
func (s *Server) snapshotLocked(p *project) error {
	if p.dataDir == "" {
		return nil
	}
	if err := os.MkdirAll(p.dataDir, 0o755); err != nil {
		return fmt.Errorf("redcapsim: project %d: %w", p.id, err)
	}
	tmp := filepath.Join(p.dataDir, "snapshot.jsonl.tmp")
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("redcapsim: project %d: snapshot: %w", p.id, err)
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	enc := json.NewEncoder(bw)
	gen := p.gen + 1
	d := &diskDesign{ID: p.id, Gen: gen, Title: p.title, Fields: p.fields, Instruments: p.instruments, Arms: p.arms,
		Events: p.events, FEM: p.fem, Repeating: p.repeating, DAGs: p.dags, Surveys: p.surveys, Autonumber: p.autonumber,
		Purpose: p.purpose, Created: p.created, NextEventID: p.nextEventID, DAGSeq: p.dagSeq,
		Users: p.userList(), Roles: p.roles, Docs: p.docList(), NextDocID: p.nextDocID,
		SurveyForms: p.surveyForms, SurveyQueue: p.surveyQueue, SurveyIDs: p.surveyIdents, Folders: p.folders}
	werr := enc.Encode(diskLine{Design: d})
	for _, rec := range p.sortedRecords() {
		dr := &diskRecord{ID: rec.id}
		if rec.dag >= 0 {
			dr.DAG = p.dags[rec.dag].Unique
		}
		for ri := range rec.rows {
			r := &rec.rows[ri]
			row := diskRow{Event: p.eventUnique(int(r.ev)), Rep: p.repName(r.rep), Inst: int(r.inst)}
			for ci := range p.cols {
				if v := r.cell(ci); v != "" {
					row.Vals = append(row.Vals, [2]string{p.cols[ci].name, v})
				}
			}
			dr.Rows = append(dr.Rows, row)
		}
		if err := enc.Encode(diskLine{Record: dr}); err != nil && werr == nil {
			werr = err
		}
	}
	for i := range p.log {
		l := &p.log[i]
		if err := enc.Encode(diskLine{Log: &diskLog{TS: l.ts, User: l.user, Action: l.action, Details: l.details, Record: l.record, Kind: l.kind}}); err != nil && werr == nil {
			werr = err
		}
	}
	werr = errors.Join(werr, bw.Flush(), f.Sync(), f.Close())
	if werr != nil {
		os.Remove(tmp)
		return fmt.Errorf("redcapsim: project %d: snapshot: %w", p.id, werr)
	}
	if err := os.Rename(tmp, filepath.Join(p.dataDir, "snapshot.jsonl")); err != nil {
		return fmt.Errorf("redcapsim: project %d: snapshot: %w", p.id, err)
	}
	old := p.gen
	_ = p.logFile.close()
	p.logFile = nil
	p.gen = gen
	_ = os.Remove(filepath.Join(p.dataDir, fmt.Sprintf("changes-%d.jsonl", old)))
	return s.openChanges(p)
}

func (s *Server) snapshotAll() error {
	s.mu.RLock()
	ps := make([]*project, 0, len(s.projs))
	for _, p := range s.projs {
		ps = append(ps, p)
	}
	s.mu.RUnlock()
	sort.Slice(ps, func(i, j int) bool { return ps[i].id < ps[j].id })
	var errs []error
	for _, p := range ps {
		p.mu.Lock()
		errs = append(errs, s.snapshotLocked(p))
		errs = append(errs, p.logFile.close())
		p.logFile = nil
		p.mu.Unlock()
	}
	errs = append(errs, s.persistTokens())
	return errors.Join(errs...)
}

func (s *Server) persistTokens() error {
	if s.opts.DataDir == "" {
		return nil
	}
	s.mu.RLock()
	dt := diskTokens{Super: s.super, Users: s.users}
	for k, t := range s.tokens {
		dt.Tokens = append(dt.Tokens, diskToken{Token: k, Project: t.project, User: t.user})
	}
	s.mu.RUnlock()
	sort.Slice(dt.Tokens, func(i, j int) bool { return dt.Tokens[i].User < dt.Tokens[j].User })
	b, err := json.MarshalIndent(dt, "", " ")
	if err != nil {
		return err
	}
	path := filepath.Join(s.opts.DataDir, "tokens.json")
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("redcapsim: save tokens: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("redcapsim: save tokens: %w", err)
	}
	return nil
}
