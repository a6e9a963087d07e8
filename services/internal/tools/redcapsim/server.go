// Package redcapsim is a REDCap API simulator: one HTTP endpoint that serves
// many projects, each reached by its own API tokens, answering with REDCap's
// status codes, error texts and body shapes (see docs/redcap-api.md).
//
// Tests and the demo drive it over real HTTP on a loopback port; the Go API
// (CreateProject, AddToken, ImportRows, ...) sets projects up without going
// through HTTP.
package redcapsim

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redcap-relay/relay/messages"
)

// Options configure a Server.
type Options struct {
	// DataDir is "" for memory only; otherwise projects, tokens and data
	// persist there and survive a restart.
	DataDir string
	Logger  *slog.Logger
	// MaxRequestBytes caps a request body (default 64 MiB), like PHP's
	// post_max_size.
	MaxRequestBytes int64
	// Version is the REDCap version reported (default "14.7.3").
	Version string
	// Now is the clock (default time.Now); it stamps the change log that
	// dateRangeBegin/End and content=log read.
	Now func() time.Time
	// PageHitThreshold is REDCap's page_hit_threshold_per_minute: more hits
	// than this from one IP within a minute bans the IP for good (429).
	// 0 turns the limiter off (the default, so that benchmarks are never
	// limited by it); set 600 to behave like a stock REDCap server.
	PageHitThreshold int
}

// Rights are the per-token API rights.
type Rights struct {
	Export, Import, Delete, Logging, Metadata bool
	DesignImport                              bool // metadata, arms, events and form-event mapping import
}

// FullRights grants everything.
func FullRights() Rights {
	return Rights{Export: true, Import: true, Delete: true, Logging: true, Metadata: true, DesignImport: true}
}

// Stats counts what the server did, for benchmarks and tests.
type Stats struct {
	Calls           map[string]int64 // by content, "record:import", "record:delete", ...
	Errors          int64            // answers with a status other than 200
	RecordsExported int64            // distinct records in record exports
	RowsExported    int64
	RecordsImported int64 // distinct records per import call
	RecordsDeleted  int64
}

type token struct {
	project int
	rights  Rights
	dag     string
	user    string
}

// Server is the simulator. It is safe for concurrent use.
type Server struct {
	opts   Options
	log    *slog.Logger
	now    func() time.Time
	mu     sync.RWMutex
	projs  map[int]*project
	tokens map[string]*token
	super  string
	nextID int
	users  int

	statsMu                                                     sync.Mutex
	calls                                                       map[string]int64
	nErrors, recExported, rowsExported, recImported, recDeleted atomic.Int64

	hitsMu sync.Mutex
	hits   map[string][]time.Time
	banned map[string]bool

	lnMu    sync.Mutex
	servers []*http.Server
	closed  bool
}

// New creates a server. With a DataDir it reloads the persisted projects.
func New(opts Options) (*Server, error) {
	if opts.MaxRequestBytes <= 0 {
		opts.MaxRequestBytes = 64 << 20
	}
	if opts.Version == "" {
		opts.Version = "14.7.3"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Server{
		opts:   opts,
		log:    opts.Logger,
		now:    opts.Now,
		projs:  map[int]*project{},
		tokens: map[string]*token{},
		nextID: 1,
		calls:  map[string]int64{},
		hits:   map[string][]time.Time{},
		banned: map[string]bool{},
	}
	if opts.DataDir != "" {
		if err := s.openDataDir(); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Handler serves POST /api/ and /redcap/api/ (and, for convenience, any
// other path ending in /api/ or /api).
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(s.serveHTTP)
}

// Listen serves on addr (for example "127.0.0.1:0") and returns the API URL.
func (s *Server) Listen(addr string) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("redcapsim: listen on %s: %w", addr, err)
	}
	hs := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second}
	s.lnMu.Lock()
	if s.closed {
		s.lnMu.Unlock()
		ln.Close()
		return "", errors.New("redcapsim: server is closed")
	}
	s.servers = append(s.servers, hs)
	s.lnMu.Unlock()
	go func() { _ = hs.Serve(ln) }()
	return "http://" + ln.Addr().String() + "/api/", nil
}

// Close stops the listeners and, with a DataDir, writes a snapshot of every
// project so that the next New starts from it.
func (s *Server) Close() error {
	s.lnMu.Lock()
	if s.closed {
		s.lnMu.Unlock()
		return nil
	}
	s.closed = true
	servers := s.servers
	s.lnMu.Unlock()
	var errs []error
	for _, hs := range servers {
		if err := hs.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if s.opts.DataDir != "" {
		errs = append(errs, s.snapshotAll())
	}
	return errors.Join(errs...)
}

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
		surveys:     spec.SurveysEnabled,
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

var tokenRE = regexp.MustCompile(`^[A-Za-z0-9]+$`)

// AddToken lets token reach project with the given rights; dag is a unique
// DAG name ("" = not DAG-restricted).
func (s *Server) AddToken(projectID int, tok string, rights Rights, dag string) error {
	if !tokenRE.MatchString(tok) {
		return errors.New("redcapsim: a token must be letters and digits only (REDCap issues 32 upper-case hex characters)")
	}
	p := s.project(projectID)
	if p == nil {
		return fmt.Errorf("redcapsim: project %d does not exist; create or load it before adding tokens", projectID)
	}
	if dag != "" {
		p.mu.RLock()
		_, ok := p.dagByName[dag]
		p.mu.RUnlock()
		if !ok {
			return fmt.Errorf("redcapsim: project %d has no data access group %q", projectID, dag)
		}
	}
	s.mu.Lock()
	s.users++
	s.tokens[tok] = &token{project: projectID, rights: rights, dag: dag, user: fmt.Sprintf("api_user_%d", s.users)}
	s.mu.Unlock()
	return s.persistTokens()
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

// Stats returns a copy of the counters.
func (s *Server) Stats() Stats {
	s.statsMu.Lock()
	calls := make(map[string]int64, len(s.calls))
	for k, v := range s.calls {
		calls[k] = v
	}
	s.statsMu.Unlock()
	return Stats{
		Calls:           calls,
		Errors:          s.nErrors.Load(),
		RecordsExported: s.recExported.Load(),
		RowsExported:    s.rowsExported.Load(),
		RecordsImported: s.recImported.Load(),
		RecordsDeleted:  s.recDeleted.Load(),
	}
}

func (s *Server) count(key string) {
	s.statsMu.Lock()
	s.calls[key]++
	s.statsMu.Unlock()
}

func (s *Server) project(id int) *project {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.projs[id]
}

// statusWriter records the status for the error counter.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = 200
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *Server) serveHTTP(rw http.ResponseWriter, r *http.Request) {
	w := &statusWriter{ResponseWriter: rw}
	defer func() {
		if w.status != 200 && w.status != 0 {
			s.nErrors.Add(1)
		}
	}()
	path := strings.TrimSuffix(r.URL.Path, "/")
	if !strings.HasSuffix(path, "/api") {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintf(w, "<!DOCTYPE html>\n<html><head><title>404 Not Found</title></head><body><h1>Not Found</h1><p>The requested URL was not found on this server.</p></body></html>\n")
		return
	}
	if s.opts.PageHitThreshold > 0 {
		if ip, banned := s.rateLimit(r); banned {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.WriteHeader(http.StatusTooManyRequests)
			fmt.Fprintf(w, "Your IP address (%s) has been banned due to suspected abuse.", ip)
			return
		}
	}
	if r.Method != http.MethodPost {
		writeError(w, "xml", http.StatusNotImplemented, "")
		return
	}
	if r.ContentLength > s.opts.MaxRequestBytes {
		s.tooLarge(w, r)
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, s.opts.MaxRequestBytes)
	form, err := s.parseForm(r)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			s.tooLarge(w, r)
			return
		}
		writeError(w, "xml", http.StatusBadRequest, "The request body could not be read as a form: send application/x-www-form-urlencoded or multipart/form-data.")
		return
	}
	s.dispatch(w, params{v: form})
}

func (s *Server) tooLarge(w http.ResponseWriter, r *http.Request) {
	rf := params{v: r.URL.Query()}.returnFormat()
	writeError(w, rf, http.StatusRequestEntityTooLarge, fmt.Sprintf(
		"The request is too large: the server accepts at most %d bytes per API request (post_max_size). Send fewer records per call.", s.opts.MaxRequestBytes))
}

func (s *Server) parseForm(r *http.Request) (url.Values, error) {
	ct := r.Header.Get("Content-Type")
	if strings.HasPrefix(ct, "multipart/form-data") {
		if err := r.ParseMultipartForm(s.opts.MaxRequestBytes); err != nil {
			return nil, err
		}
		v := url.Values{}
		for k, vs := range r.MultipartForm.Value {
			v[k] = append(v[k], vs...)
		}
		// A data file part counts as the data parameter.
		for k, fhs := range r.MultipartForm.File {
			for _, fh := range fhs {
				f, err := fh.Open()
				if err != nil {
					return nil, err
				}
				b, err := io.ReadAll(f)
				f.Close()
				if err != nil {
					return nil, err
				}
				v[k] = append(v[k], string(b))
			}
		}
		return v, nil
	}
	if err := r.ParseForm(); err != nil {
		return nil, err
	}
	return r.PostForm, nil
}

func (s *Server) rateLimit(r *http.Request) (string, bool) {
	ip, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		ip = r.RemoteAddr
	}
	now := s.now()
	s.hitsMu.Lock()
	defer s.hitsMu.Unlock()
	if s.banned[ip] {
		return ip, true
	}
	h := s.hits[ip]
	cut := 0
	for cut < len(h) && now.Sub(h[cut]) >= time.Minute {
		cut++
	}
	h = append(h[cut:], now)
	s.hits[ip] = h
	if len(h) > s.opts.PageHitThreshold {
		s.banned[ip] = true
		delete(s.hits, ip)
		s.log.Warn("redcapsim: IP banned for too many requests", "ip", ip, "threshold", s.opts.PageHitThreshold)
		return ip, true
	}
	return ip, false
}

// dispatch runs the checks in REDCap's order: returnFormat, token, content,
// rights, then the handler.
func (s *Server) dispatch(w http.ResponseWriter, p params) {
	rf := p.returnFormat()
	content := p.str("content")
	tok := p.str("token")

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
	if !ok {
		writeError(w, rf, 400, `The value of the parameter "action" is not valid`)
		return
	}
	key := content
	if action != "export" {
		key += ":" + action
	}
	s.count(key)
	c := &call{s: s, p: p, rf: rf, tok: t, proj: proj, action: action}
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
}

func (c *call) dagIndex() int {
	if c.tok.dag == "" {
		return -1
	}
	if i, ok := c.proj.dagByName[c.tok.dag]; ok {
		return i
	}
	return -1
}

var (
	errNoExport  = errorf(403, "You do not have API Export privileges")
	errNoImport  = errorf(403, "You do not have API Import/Update privileges")
	errNoDelete  = errorf(403, "You do not have Delete Record privileges")
	errNoLogging = errorf(403, "You do not have Logging privileges")
	errNoDesign  = errorf(403, "You do not have Project Setup/Design privileges")
)

func (c *call) run(w http.ResponseWriter, content string) error {
	r := c.tok.rights
	meta := r.Export || r.Metadata
	switch content {
	case "version":
		writeBody(w, "csv", c.s.opts.Version)
		return nil
	case "record":
		switch c.action {
		case "delete":
			if !r.Delete {
				return errNoDelete
			}
			return c.deleteRecords(w)
		case "import":
			if !r.Import {
				return errNoImport
			}
			return c.importRecords(w)
		case "export":
			if !r.Export {
				return errNoExport
			}
			return c.exportRecords(w)
		}
		return errorf(400, fmt.Sprintf("The simulator does not implement action=%s for content=record.", c.action))
	case "metadata":
		if c.action == "import" {
			if !r.DesignImport {
				return errNoDesign
			}
			return c.importMetadata(w)
		}
		if !meta {
			return errNoExport
		}
		return c.exportMetadata(w)
	case "instrument":
		if !meta {
			return errNoExport
		}
		return c.exportInstruments(w)
	case "event", "arm", "formEventMapping":
		if c.action == "import" || c.action == "delete" {
			if !r.DesignImport {
				return errNoDesign
			}
			return c.importDesign(w, content)
		}
		if !meta {
			return errNoExport
		}
		return c.exportDesign(w, content)
	case "repeatingFormsEvents":
		if c.action == "import" {
			if !r.DesignImport {
				return errNoDesign
			}
			return c.importRepeating(w)
		}
		if !meta {
			return errNoExport
		}
		return c.exportRepeating(w)
	case "dag":
		if c.tok.dag != "" {
			return errorf(403, "You do not have permission to export or import Data Access Groups because you are assigned to a Data Access Group.")
		}
		if c.action == "import" || c.action == "delete" {
			if !r.DesignImport {
				return errNoDesign
			}
			return c.importDAGs(w)
		}
		if !meta {
			return errNoExport
		}
		return c.exportDAGs(w)
	case "project":
		if c.action == "import" {
			if !r.DesignImport {
				return errNoDesign
			}
			return c.importProjectInfo(w)
		}
		return c.exportProjectInfo(w)
	case "exportFieldNames":
		if !meta {
			return errNoExport
		}
		return c.exportFieldNames(w)
	case "generateNextRecordName":
		c.proj.mu.RLock()
		name := c.proj.nextRecordName(c.dagIndex())
		c.proj.mu.RUnlock()
		writeBody(w, "csv", name)
		return nil
	case "project_xml":
		if !r.Export {
			return errNoExport
		}
		return c.exportProjectXML(w)
	case "log":
		if !r.Logging {
			return errNoLogging
		}
		return c.exportLog(w)
	}
	return errorf(400, fmt.Sprintf("The simulator does not implement content=%s.", content))
}
