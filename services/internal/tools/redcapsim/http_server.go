// Package redcapsim is a REDCap API simulator: one HTTP endpoint that serves
// many projects, each reached by its own API tokens, answering with REDCap's
// status codes, error texts and body shapes (REDCap's API behaviour as
// documented in the README's simulator section and in this package's README).
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
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
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
	// TimeZone is the server's zone (default UTC, whatever the machine's):
	// log times are written and dateRangeBegin/beginTime read in it, as a
	// real REDCap server uses its PHP time zone.
	TimeZone *time.Location
	// MaxFileMB is REDCap's file upload limit in MB (default 32): larger
	// uploads (content=file, fileRepository) are refused.
	MaxFileMB int64
	// PageHitThreshold is REDCap's page_hit_threshold_per_minute: more hits
	// than this from one IP within a minute bans the IP for good (429).
	// 0 turns the limiter off (the default, so that benchmarks are never
	// limited by it); set 600 to behave like a stock REDCap server.
	PageHitThreshold int
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

// token is an API token: a user of one project. What it may do is that
// user's (model_users.go).
type token struct {
	project int
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
	if opts.MaxFileMB <= 0 {
		opts.MaxFileMB = 32
	}
	if opts.Version == "" {
		opts.Version = "14.7.3"
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.TimeZone == nil {
		opts.TimeZone = time.UTC
	}
	clock, zone := opts.Now, opts.TimeZone
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Server{
		opts:   opts,
		log:    opts.Logger,
		now:    func() time.Time { return clock().In(zone) },
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
	bytes  int64
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
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// callInfo is what the per-call log line says: never the token, never a
// value.
type callInfo struct {
	content, action string
	project         int
	host            string
}

func (s *Server) serveHTTP(rw http.ResponseWriter, r *http.Request) {
	w := &statusWriter{ResponseWriter: rw}
	info := &callInfo{host: r.Host}
	start := time.Now()
	defer func() {
		if w.status != 200 && w.status != 0 {
			s.nErrors.Add(1)
		}
		if s.log.Enabled(r.Context(), slog.LevelDebug) {
			s.log.Debug("redcapsim: call", "method", r.Method, "content", info.content, "action", info.action,
				"project_id", info.project, "status", w.status, "bytes", w.bytes, "ms", time.Since(start).Milliseconds())
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
	form, files, err := s.parseForm(r)
	if r.MultipartForm != nil {
		defer r.MultipartForm.RemoveAll() // spooled upload parts
	}
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			s.tooLarge(w, r)
			return
		}
		writeError(w, "xml", http.StatusBadRequest, "The request body could not be read as a form: send application/x-www-form-urlencoded or multipart/form-data.")
		return
	}
	s.dispatch(w, params{v: form, files: files}, info)
}

func (s *Server) tooLarge(w http.ResponseWriter, r *http.Request) {
	rf := params{v: r.URL.Query()}.returnFormat()
	writeError(w, rf, http.StatusRequestEntityTooLarge, fmt.Sprintf(
		"The request is too large: the server accepts at most %d bytes per API request (post_max_size). Send fewer records per call.", s.opts.MaxRequestBytes))
}

// multipartMemory is how much of a multipart body is held in memory; larger
// upload parts are spooled to temporary files (removed after the call).
const multipartMemory = 8 << 20

// parseForm reads the POST form. Of a multipart body, the "file" part is an
// upload (content=file, fileRepository); other file parts (a data file)
// count as the parameter of their name.
func (s *Server) parseForm(r *http.Request) (url.Values, map[string]*multipart.FileHeader, error) {
	ct := r.Header.Get("Content-Type")
	if strings.HasPrefix(ct, "multipart/form-data") {
		if err := r.ParseMultipartForm(multipartMemory); err != nil {
			return nil, nil, err
		}
		v := url.Values{}
		for k, vs := range r.MultipartForm.Value {
			v[k] = append(v[k], vs...)
		}
		files := map[string]*multipart.FileHeader{}
		for k, fhs := range r.MultipartForm.File {
			for _, fh := range fhs {
				if k == "file" {
					files[k] = fh
					continue
				}
				f, err := fh.Open()
				if err != nil {
					return nil, nil, err
				}
				b, err := io.ReadAll(f)
				f.Close()
				if err != nil {
					return nil, nil, err
				}
				v[k] = append(v[k], string(b))
			}
		}
		return v, files, nil
	}
	if err := r.ParseForm(); err != nil {
		return nil, nil, err
	}
	return r.PostForm, nil, nil
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
