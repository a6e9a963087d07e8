package redcapsim

// The Go API other packages use to set projects up without HTTP: creating
// projects, issuing tokens, importing, exporting and deleting rows with the
// API's own validation and change log.

import (
	"errors"
	"fmt"
	"os"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/tools/redcapsim/odm"
)

// Rights are what AddToken's user may do; they become REDCap user
// privileges (api_export, api_import, record_delete, …), which content=user
// exports and imports.
type Rights struct {
	Export, Import, Delete, Logging bool
	// Metadata lets the token export the design (metadata, instruments,
	// events, …) without API Export: a simulator convenience.
	Metadata     bool
	DesignImport bool // Project Setup/Design: metadata, arms, events and mapping import
	Rename       bool // Rename Record
	UserRights   bool // User Rights: content=user, userRole, …
	DAGs         bool // Data Access Groups: content=dag, exportDataAccessGroups
	// FileRepository and SurveyTools (Survey Distribution Tools) gate
	// content=fileRepository and the survey calls.
	FileRepository, SurveyTools bool
	// FormExport sets the data export level of single instruments (REDCap's
	// forms_export codes: 0 No Access, 1 Full Data Set, 2 De-Identified,
	// 3 Remove Identifier Fields); the others get 1 with Export, else 0.
	FormExport map[string]int
}

// FullRights grants everything.
func FullRights() Rights {
	return Rights{Export: true, Import: true, Delete: true, Logging: true, Metadata: true, DesignImport: true,
		Rename: true, UserRights: true, DAGs: true, FileRepository: true, SurveyTools: true}
}

// Survey is one survey-enabled instrument: its form, title and whether it
// has "Save & Return Later" (return codes).
type Survey = odm.Survey

// ProjectSpec describes a project to create.
type ProjectSpec struct {
	ID               int // 0 = next free
	Title            string
	Fields           []messages.Field
	Arms             []messages.Arm
	Events           []messages.Event
	FormEventMapping []messages.FormEvent
	Repeating        []messages.RepeatingForm
	DAGs             []messages.DAG
	Instruments      []messages.Instrument // optional; else derived from Fields (labels = names)
	Longitudinal     bool                  // implied by Events
	SurveysEnabled   bool
	// Surveys are the survey-enabled instruments (they imply
	// SurveysEnabled); SurveyQueue turns the survey queue on.
	Surveys     []Survey
	SurveyQueue bool
	// Autonumbering turns on record auto-numbering in project info.
	Autonumbering bool
	// Purpose is REDCap's purpose code (0 practice … 4 operational support).
	Purpose int
}

// CreateProject adds a project and returns its ID.
func (s *Server) CreateProject(spec ProjectSpec) (int, error) {
	p, err := s.newProject(spec)
	if err != nil {
		return 0, err
	}
	s.mu.Lock()
	if spec.ID == 0 {
		for s.projs[s.nextID] != nil {
			s.nextID++
		}
		p.id = s.nextID
	} else {
		if s.projs[spec.ID] != nil {
			s.mu.Unlock()
			return 0, fmt.Errorf("redcapsim: project %d already exists; choose another ID or 0 for the next free one", spec.ID)
		}
		p.id = spec.ID
	}
	if p.id >= s.nextID {
		s.nextID = p.id + 1
	}
	s.projs[p.id] = p
	s.mu.Unlock()
	if err := s.persistNewProject(p); err != nil {
		return 0, err
	}
	s.log.Info("redcapsim: project created", "project_id", p.id, "fields", len(p.fields), "events", len(p.events))
	return p.id, nil
}

// AddToken lets token reach project as a new user (api_user_N) with the
// given rights; dag is a unique DAG name ("" = not DAG-restricted).
func (s *Server) AddToken(projectID int, tok string, rights Rights, dag string) error {
	if !tokenRE.MatchString(tok) {
		return errors.New("redcapsim: a token must be letters and digits only (REDCap issues 32 upper-case hex characters)")
	}
	p := s.project(projectID)
	if p == nil {
		return fmt.Errorf("redcapsim: project %d does not exist; create or load it before adding tokens", projectID)
	}
	s.mu.Lock()
	s.users++
	name := fmt.Sprintf("api_user_%d", s.users)
	s.mu.Unlock()
	p.mu.Lock()
	if dag != "" {
		if _, ok := p.dagByName[dag]; !ok {
			p.mu.Unlock()
			return fmt.Errorf("redcapsim: project %d has no data access group %q", projectID, dag)
		}
	}
	p.users[name] = &user{Name: name, DAG: dag, MetadataOnly: rights.Metadata, privileges: privilegesFromRights(rights, p.forms)}
	s.persistAccess(p)
	p.mu.Unlock()
	s.mu.Lock()
	s.tokens[tok] = &token{project: projectID, user: name}
	s.mu.Unlock()
	return s.persistTokens()
}

// UserForToken names the project and user a token belongs to.
func (s *Server) UserForToken(tok string) (projectID int, username string, ok bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	t, ok := s.tokens[tok]
	if !ok {
		return 0, "", false
	}
	return t.project, t.user, true
}

// AllowDAGSwitch lets a user switch (content=dag&action=switch) to the
// given DAGs (unique names; "" is "no assignment"), as REDCap's DAG
// Switcher page does.
func (s *Server) AllowDAGSwitch(projectID int, username string, dags ...string) error {
	p := s.project(projectID)
	if p == nil {
		return fmt.Errorf("redcapsim: project %d does not exist", projectID)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	u := p.users[username]
	if u == nil {
		return fmt.Errorf("redcapsim: project %d has no user %q", projectID, username)
	}
	for _, d := range dags {
		if _, ok := p.dagByName[d]; d != "" && !ok {
			return fmt.Errorf("redcapsim: project %d has no data access group %q", projectID, d)
		}
	}
	u.SwitchDAGs = append([]string(nil), dags...)
	s.persistAccess(p)
	return nil
}

// RevokeToken removes a token; later calls with it get 403.
func (s *Server) RevokeToken(tok string) {
	s.mu.Lock()
	delete(s.tokens, tok)
	s.mu.Unlock()
	_ = s.persistTokens()
}

// SetSuperToken sets the 64-character super API token (project creation).
func (s *Server) SetSuperToken(tok string) {
	s.mu.Lock()
	s.super = tok
	s.mu.Unlock()
	_ = s.persistTokens()
}

// ProjectIDForToken reports which project a token reaches.
func (s *Server) ProjectIDForToken(tok string) (int, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	t, ok := s.tokens[tok]
	if !ok {
		return 0, false
	}
	return t.project, true
}

// dropProject removes a project and its data folder (a creation that
// failed half way).
func (s *Server) dropProject(id int) {
	s.mu.Lock()
	p := s.projs[id]
	delete(s.projs, id)
	s.mu.Unlock()
	if p == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	_ = p.logFile.close()
	p.logFile = nil
	if p.dataDir != "" {
		_ = os.RemoveAll(p.dataDir)
	}
}

// RecordIDFieldForToken names the record-ID field of the project a token
// reaches (the faults middleware uses it to recognise record-ID lists).
func (s *Server) RecordIDFieldForToken(tok string) (string, bool) {
	pid, ok := s.ProjectIDForToken(tok)
	if !ok {
		return "", false
	}
	p := s.project(pid)
	if p == nil {
		return "", false
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.recordIDField(), true
}

// SetValuesSilently changes a record's values the way an import would
// (same validation, all or nothing) but writes no change-log entry, so
// dateRangeBegin exports and content=log do not see it: a site record
// changed without its change-log entry. Rows are flat raw rows; the
// record-ID field may be left out (record fills it in).
func (s *Server) SetValuesSilently(projectID int, record string, rows []messages.Row) error {
	p := s.project(projectID)
	if p == nil {
		return fmt.Errorf("redcapsim: project %d does not exist", projectID)
	}
	if record == "" {
		return fmt.Errorf("redcapsim: project %d: SetValuesSilently needs a record ID", projectID)
	}
	p.mu.RLock()
	idField := p.recordIDField()
	p.mu.RUnlock()
	in := make([]inRow, len(rows))
	for i, r := range rows {
		row := make(inRow, len(r)+1)
		for k, v := range r {
			row[k] = v
		}
		if id, ok := row[idField]; ok && id != record {
			return fmt.Errorf("redcapsim: project %d: row %d belongs to record %q, not %q", projectID, i+1, id, record)
		}
		row[idField] = record
		in[i] = row
	}
	_, err := s.importInto(p, in, importOpts{dateFormat: "YMD", user: "site_admin", silent: true})
	var ve *validationError
	if errors.As(err, &ve) {
		return fmt.Errorf("redcapsim: project %d: silent change rejected: %s", projectID, ve.redacted())
	}
	if err != nil {
		return fmt.Errorf("redcapsim: project %d: silent change rejected: %w", projectID, err)
	}
	return nil
}

// ImportRows imports flat rows with the API's validation and change log,
// without a token. overwrite chooses overwriteBehavior=overwrite.
func (s *Server) ImportRows(projectID int, rows []messages.Row, overwrite bool) error {
	p := s.project(projectID)
	if p == nil {
		return fmt.Errorf("redcapsim: project %d does not exist", projectID)
	}
	in := make([]inRow, len(rows))
	for i, r := range rows {
		in[i] = inRow(r)
	}
	_, err := s.importInto(p, in, importOpts{overwrite: overwrite, dateFormat: "YMD", user: "site_admin"})
	var ve *validationError
	if errors.As(err, &ve) {
		return fmt.Errorf("redcapsim: project %d: import rejected: %s", projectID, ve.redacted())
	}
	if err != nil {
		return fmt.Errorf("redcapsim: project %d: import rejected: %w", projectID, err)
	}
	return nil
}

// ExportRows returns the flat raw rows of every record and field, exactly
// as content=record&format=json&type=flat would.
func (s *Server) ExportRows(projectID int) ([]messages.Row, error) {
	p := s.project(projectID)
	if p == nil {
		return nil, fmt.Errorf("redcapsim: project %d does not exist", projectID)
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	cols, _ := p.selectColumns(nil, nil)
	cols = p.surveyColumns(cols, false)
	spec := &exportSpec{cols: cols, withID: true, withEvent: p.longitudinal, withRepeat: p.hasRepeat, records: p.sortedRecords()}
	hdr := p.header(spec)
	var out []messages.Row
	var cells []string
	for _, rec := range spec.records {
		for ri := range rec.rows {
			cells = p.flatCells(spec, rec, &rec.rows[ri], cells)
			r := make(messages.Row, len(hdr))
			for i, h := range hdr {
				r[h] = cells[i]
			}
			out = append(out, r)
		}
	}
	return out, nil
}

// DeleteRecord deletes one record (test helper; no token).
func (s *Server) DeleteRecord(projectID int, rec string) error {
	p := s.project(projectID)
	if p == nil {
		return fmt.Errorf("redcapsim: project %d does not exist", projectID)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.records[rec] == nil {
		return fmt.Errorf("redcapsim: project %d: record %q does not exist", projectID, rec)
	}
	s.deleteLocked(p, []string{rec}, deleteSel{ev: -1, form: -1}, "site_admin")
	return nil
}

// SetSurveyResponse records a survey response, as a participant finishing
// (or starting) the survey would: the instrument's <form>_timestamp becomes
// completed ("YYYY-MM-DD HH:MM:SS") or "[not completed]", with a change-log
// entry ("Update survey response"). event is "" in classic projects;
// instance is 0 for non-repeating instruments. The record must exist.
func (s *Server) SetSurveyResponse(projectID int, record, event, form string, instance int, completed string) error {
	p := s.project(projectID)
	if p == nil {
		return fmt.Errorf("redcapsim: project %d does not exist", projectID)
	}
	ts, err := surveyTimestampValue(completed)
	if err != nil {
		return fmt.Errorf("redcapsim: project %d: %w", projectID, err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	rec := p.records[record]
	if rec == nil {
		return fmt.Errorf("redcapsim: project %d: record %q does not exist", projectID, record)
	}
	fi, ok := p.formByName[form]
	if !ok || p.surveyOf[fi] == nil {
		return fmt.Errorf("redcapsim: project %d: %q is not a survey-enabled instrument", projectID, form)
	}
	ev, ok := p.evIndex(event)
	if !ok || !p.designated[ev][fi] {
		return fmt.Errorf("redcapsim: project %d: instrument %q is not in event %q", projectID, form, event)
	}
	pr := plannedRow{rec: record, ev: ev, rep: repNone, dag: -1, vals: []colVal{{p.colByName[form+"_timestamp"], ts}}}
	switch {
	case p.repForm[ev][fi]:
		pr.rep, pr.inst = fi, max(instance, 1)
	case p.repEv[ev]:
		pr.rep, pr.inst = repEvent, max(instance, 1)
	}
	wo := writeOpts{overwrite: true, user: "[survey respondent]", ts: s.now().Unix(), silent: true}
	l := logEntry{ts: wo.ts, user: wo.user, action: "Update survey response " + record, record: record, details: form + "_timestamp = '" + ts + "'", kind: logData}
	p.applyPlan([]plannedRow{pr}, wo)
	p.log = append(p.log, l)
	s.persistImport(p, []plannedRow{pr}, wo, l)
	return nil
}

// SetSurveyIdentifier sets a record's participant identifier, which
// exports with exportSurveyFields=true show as redcap_survey_identifier
// ("" clears it).
func (s *Server) SetSurveyIdentifier(projectID int, record, identifier string) error {
	p := s.project(projectID)
	if p == nil {
		return fmt.Errorf("redcapsim: project %d does not exist", projectID)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.records[record] == nil {
		return fmt.Errorf("redcapsim: project %d: record %q does not exist", projectID, record)
	}
	if identifier == "" {
		delete(p.surveyIdents, record)
	} else {
		p.surveyIdents[record] = identifier
	}
	s.persistSurveyIdent(p, record, identifier)
	return nil
}
