package redcapsim

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"time"
)

var tokenRE = regexp.MustCompile(`^[A-Za-z0-9]+$`)

// dispatch runs the checks in REDCap's order: returnFormat, token, content,
// rights, then the handler.
func (s *Server) dispatch(w http.ResponseWriter, p params, info *callInfo) {
	rf := p.returnFormat()
	content := p.str("content")
	tok := p.str("token")
	info.content = content

	// Super token calls.
	if (content == "version" && len(tok) == 64) || (content == "project" && p.str("data") != "") {
		s.mu.RLock()
		ok := s.super != "" && tok == s.super && tokenRE.MatchString(tok)
		s.mu.RUnlock()
		if !ok {
			s.count("denied")
			writeError(w, rf, 403, "")
			return
		}
		if content == "version" {
			s.count("version")
			writeBody(w, "csv", s.opts.Version)
			return
		}
		s.count("project:create")
		s.createProjectAPI(w, p, rf)
		return
	}
	if !tokenRE.MatchString(tok) {
		s.count("denied")
		writeError(w, rf, 403, "")
		return
	}
	s.mu.RLock()
	t, ok := s.tokens[tok]
	var proj *project
	if ok {
		proj = s.projs[t.project]
	}
	s.mu.RUnlock()
	if !ok || proj == nil {
		s.count("denied")
		writeError(w, rf, 403, "")
		return
	}
	if !validContent[content] {
		s.count("invalid")
		writeError(w, rf, 400, `The value of the parameter "content" is not valid`)
		return
	}
	action, ok := p.action(content)
	info.action, info.project = action, proj.id
	if !ok {
		writeError(w, rf, 400, `The value of the parameter "action" is not valid`)
		return
	}
	key := content
	if action != "export" {
		key += ":" + action
	}
	s.count(key)
	acc, err := proj.tokenAccess(t, s.now())
	if err != nil {
		s.count("denied")
		writeError(w, rf, err.status, err.msg)
		return
	}
	c := &call{s: s, p: p, rf: rf, tok: t, proj: proj, action: action, acc: acc, host: info.host}
	if err := c.run(w, content); err != nil {
		var ae *apiError
		if errors.As(err, &ae) {
			writeError(w, rf, ae.status, ae.msg)
			return
		}
		s.log.Error("redcapsim: internal error", "project_id", proj.id, "content", content, "err", err)
		writeError(w, rf, 500, "")
	}
}

// call is one authenticated API request.
type call struct {
	s      *Server
	p      params
	rf     string
	tok    *token
	proj   *project
	action string
	acc    *access // the token user's rights when the call started
	host   string  // the request's Host (survey links point there)
}

// dagIndex is the token user's DAG in the project's list (-1 none).
// Callers hold c.proj.mu.
func (c *call) dagIndex() int { return c.proj.dagIndexOf(c.acc.dag) }

// tokenAccess copies the rights of a token's user, refusing users that no
// longer exist (deleted through content=user) or whose rights expired.
func (p *project) tokenAccess(t *token, now time.Time) (*access, *apiError) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	u := p.users[t.user]
	if u == nil {
		return nil, errorf(403, "")
	}
	a := p.accessOf(u)
	if a.expiry != "" && a.expiry < now.Format("2006-01-02") {
		return nil, errorf(403, "You do not have API rights because your privileges have expired for this project as of "+a.expiry+".")
	}
	return a, nil
}

var (
	errNoExport  = errorf(403, "You do not have API Export privileges")
	errNoImport  = errorf(403, "You do not have API Import/Update privileges")
	errNoDelete  = errorf(403, "You do not have Delete Record privileges")
	errNoRename  = errorf(403, "You do not have Rename Record privileges")
	errNoLogging = errorf(403, "You do not have Logging privileges")
	errNoDesign  = errorf(403, "You do not have Project Setup/Design privileges")
	errInDAG     = errorf(403, "You do not have permission to export/import/delete Data Access Groups because you have been assigned to a Data Access Group.")
)

// needBoth is REDCap's refusal when a call needs API Export or Import plus
// a feature right.
func needBoth(api, feature string) *apiError {
	return errorf(403, "Insufficient user privileges: You must have '"+api+"' privileges and '"+feature+"' privileges in the project.")
}

// route is one content/action: the rights check, then the handler.
type route struct {
	check  func(c *call) error
	handle func(c *call, w http.ResponseWriter) error
}

func want(priv string, err *apiError) func(*call) error {
	return func(c *call) error {
		if !c.acc.can(priv) {
			return err
		}
		return nil
	}
}

func wantBoth(api, priv, feature string) func(*call) error {
	apiName := map[string]string{"api_export": "API Export", "api_import": "API Import/Update"}[api]
	return func(c *call) error {
		if !c.acc.can(api) || !c.acc.can(priv) {
			return needBoth(apiName, feature)
		}
		return nil
	}
}

// metaExport: the design exports need API Export (or the simulator's
// metadata-only right).
func metaExport(c *call) error {
	if !c.acc.can("api_export") && !c.acc.meta {
		return errNoExport
	}
	return nil
}

func anyone(*call) error { return nil }

func roleImportRights(c *call) error {
	if !c.acc.can("api_import") || !c.acc.can("user_rights") {
		return errorf(403, "Insufficient user privileges: You must have 'API Import/Update' privileges and 'User Rights' privileges in the project in order to import/update user roles via the API Import User Roles method.")
	}
	return nil
}

func userDAGImport(c *call) error {
	if c.acc.dag != "" {
		return errorf(403, "You do not have permission to import User-DAG Assignment because you have been assigned to a Data Access Group.")
	}
	return wantBoth("api_import", "data_access_groups", "Data Access Groups")(c)
}

// logRights: Export Logging needs the Logging right and API Export.
func logRights(c *call) error {
	if !c.acc.can("logging") {
		return errNoLogging
	}
	if !c.acc.can("api_export") {
		return errNoExport
	}
	return nil
}

func notInDAG(next func(*call) error) func(*call) error {
	return func(c *call) error {
		if c.acc.dag != "" {
			return errInDAG
		}
		return next(c)
	}
}

var routes map[string]route

func init() {
	design := want("design", errNoDesign)
	routes = map[string]route{
		"version:export":                {anyone, func(c *call, w http.ResponseWriter) error { writeBody(w, "csv", c.s.opts.Version); return nil }},
		"record:export":                 {want("api_export", errNoExport), (*call).exportRecords},
		"record:import":                 {want("api_import", errNoImport), (*call).importRecords},
		"record:delete":                 {want("record_delete", errNoDelete), (*call).deleteRecords},
		"record:rename":                 {want("record_rename", errNoRename), (*call).renameRecord},
		"metadata:export":               {metaExport, (*call).exportMetadata},
		"metadata:import":               {design, (*call).importMetadata},
		"instrument:export":             {metaExport, (*call).exportInstruments},
		"event:export":                  {metaExport, func(c *call, w http.ResponseWriter) error { return c.exportDesign(w, "event") }},
		"arm:export":                    {metaExport, func(c *call, w http.ResponseWriter) error { return c.exportDesign(w, "arm") }},
		"formEventMapping:export":       {metaExport, func(c *call, w http.ResponseWriter) error { return c.exportDesign(w, "formEventMapping") }},
		"event:import":                  {design, func(c *call, w http.ResponseWriter) error { return c.importDesign(w, "event") }},
		"arm:import":                    {design, func(c *call, w http.ResponseWriter) error { return c.importDesign(w, "arm") }},
		"formEventMapping:import":       {design, func(c *call, w http.ResponseWriter) error { return c.importDesign(w, "formEventMapping") }},
		"event:delete":                  {design, func(c *call, w http.ResponseWriter) error { return c.importDesign(w, "event") }},
		"arm:delete":                    {design, func(c *call, w http.ResponseWriter) error { return c.importDesign(w, "arm") }},
		"repeatingFormsEvents:export":   {metaExport, (*call).exportRepeating},
		"repeatingFormsEvents:import":   {design, (*call).importRepeating},
		"dag:export":                    {notInDAG(wantBoth("api_export", "data_access_groups", "Data Access Groups")), (*call).exportDAGs},
		"dag:import":                    {notInDAG(wantBoth("api_import", "data_access_groups", "Data Access Groups")), (*call).importDAGs},
		"dag:delete":                    {notInDAG(wantBoth("api_import", "data_access_groups", "Data Access Groups")), (*call).importDAGs},
		"dag:switch":                    {anyone, (*call).switchDAG},
		"project:export":                {anyone, (*call).exportProjectInfo},
		"project:import":                {design, (*call).importProjectInfo},
		"exportFieldNames:export":       {metaExport, (*call).exportFieldNames},
		"generateNextRecordName:export": {anyone, (*call).generateNextRecordName},
		"project_xml:export":            {want("api_export", errNoExport), (*call).exportProjectXML},
		"file:export":                   {want("api_export", errNoExport), (*call).exportFile},
		"file:import":                   {want("api_import", errNoImport), (*call).importFile},
		"file:delete":                   {want("api_import", errNoImport), (*call).deleteFile},
		"surveyLink:export":             {surveyRights, (*call).surveyLink},
		"surveyAccessCode:export":       {surveyRights, (*call).surveyAccessCode},
		"surveyReturnCode:export":       {surveyRights, (*call).surveyReturnCode},
		"surveyQueueLink:export":        {surveyRights, (*call).surveyQueueLink},
		"participantList:export":        {surveyRights, (*call).participantList},
		"user:export":                   {userRights("api_export"), (*call).exportUsers},
		"user:import":                   {userRights("api_import"), (*call).importUsers},
		"user:delete":                   {userRights("api_import"), (*call).deleteUsers},
		"userRole:export":               {userRights("api_export"), (*call).exportRoles},
		"userRole:import":               {roleImportRights, (*call).importRoles},
		"userRole:delete":               {roleImportRights, (*call).deleteRoles},
		"userRoleMapping:export":        {userRights("api_export"), (*call).exportRoleMapping},
		"userRoleMapping:import":        {roleImportRights, (*call).importRoleMapping},
		"userDagMapping:export":         {notInDAG(wantBoth("api_export", "data_access_groups", "Data Access Groups")), (*call).exportDAGMapping},
		"userDagMapping:import":         {userDAGImport, (*call).importDAGMapping},
		"pdf:export":                    {want("api_export", errNoExport), (*call).exportPDF},
		"fileRepository:createFolder":   {repoRights("api_import"), (*call).repoCreateFolder},
		"fileRepository:list":           {repoRights("api_export"), (*call).repoList},
		"fileRepository:import":         {repoRights("api_import"), (*call).repoImport},
		"fileRepository:export":         {repoRights("api_export"), (*call).repoExport},
		"fileRepository:delete":         {repoRights("api_import"), (*call).repoDelete},
		"log:export":                    {logRights, (*call).exportLog},
	}
}

func (c *call) run(w http.ResponseWriter, content string) error {
	rt, ok := routes[content+":"+c.action]
	if !ok {
		return errorf(400, fmt.Sprintf("The simulator does not implement content=%s with action=%s.", content, c.action))
	}
	if err := rt.check(c); err != nil {
		return err
	}
	return rt.handle(c, w)
}

func (c *call) generateNextRecordName(w http.ResponseWriter) error {
	c.proj.mu.RLock()
	name := c.proj.nextRecordName(c.dagIndex())
	c.proj.mu.RUnlock()
	writeBody(w, "csv", name)
	return nil
}
