// Package faults is HTTP middleware that makes a REDCap (simulator) endpoint
// misbehave the way real REDCap servers do under load: added latency, 5xx
// answers, outages (connections closed), 200 with an empty body, an HTML page
// or REDCap's "ran out of server memory" / MySQL texts, REDCap's permanent IP
// ban (429), dropped rows in record exports, record-ID lists that silently
// leave records out, and slow bodies.
//
// Faults are set for every project (ID 0) or for one project, found from the
// request's API token. An admin handler (GET/PUT/DELETE /faults) changes them
// at run time, on a separate port. A non-zero Seed, or EveryN, makes the
// choice of faulty calls reproducible.
package faults

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultBanThreshold is REDCap's default page_hit_threshold_per_minute.
const DefaultBanThreshold = 600

// Texts real REDCap servers send under load and when banning an IP.
const (
	MemoryText = "REDCap ran out of server memory. The request cannot be processed. Please try importing/exporting a smaller amount of data."
	MySQLText  = "The hostname (localhost) / username (redcap) / password (XXXXXX) combination could not connect to the MySQL server. Please check their values."
	HTMLPage   = "<!DOCTYPE html>\n<html><head><title>REDCap</title></head><body><h1>REDCap</h1><p>Please log in.</p></body></html>\n"
)

// Faults is what to inject. Rates are probabilities per call in [0, 1]; at
// most one of the answer faults (error, HTML, memory, MySQL, empty) hits a
// given call.
type Faults struct {
	// Latency is added to every call; LatencyPerRecord to every record in
	// the request (records[] or rows in data) and in the answer.
	Latency          Duration `json:"latency,omitempty"`
	LatencyPerRecord Duration `json:"latency_per_record,omitempty"`

	// ErrorRate answers with one of ErrorStatuses (default 500, 502, 503, 504)
	// without passing the call on. 4xx and 500 come in REDCap's error shape
	// (by returnFormat) with its default text; other 5xx as a proxy's page.
	ErrorRate     float64 `json:"error_rate,omitempty"`
	ErrorStatuses []int   `json:"error_statuses,omitempty"`
	// EmptyRate passes the call on (so an import is saved) but answers 200
	// with an empty body: the answer is lost, as under real load.
	EmptyRate float64 `json:"empty_rate,omitempty"`
	// HTMLRate answers 200 with an HTML page (a login page or proxy).
	HTMLRate float64 `json:"html_rate,omitempty"`
	// MemoryRate answers 200 with REDCap's "ran out of server memory" text.
	MemoryRate float64 `json:"memory_rate,omitempty"`
	// MySQLRate answers 200 with REDCap's MySQL connection error text.
	MySQLRate float64 `json:"mysql_rate,omitempty"`
	// TruncateRate passes the call on but cuts the answer in half (a
	// proxy or worker that died mid-answer): the JSON no longer parses.
	TruncateRate float64 `json:"truncate_rate,omitempty"`
	// CutRate passes the call on, then closes the connection halfway
	// through the answer, after a Content-Length that promised all of it
	// (a dropped connection): clients read an unexpected EOF.
	CutRate float64 `json:"cut_rate,omitempty"`
	// DropRate drops each row of a JSON record export with this
	// probability (REDCap can silently lose records in big exports).
	DropRate float64 `json:"drop_rate,omitempty"`
	// OmitRecords leaves this many records (every row of each) out of each
	// record-ID list answer: a JSON record export asking for one field only
	// (the record-ID field, when the injector knows it; see
	// SetRecordIDField), which is how clients list a project's IDs. It is
	// the incomplete answer that must never become a deletion.
	OmitRecords int `json:"omit_records,omitempty"`
	// OmitAnswers limits OmitRecords to the next this many such answers
	// (0 = every one).
	OmitAnswers int `json:"omit_answers,omitempty"`

	// Outage closes every connection without an answer. OutageFrom and
	// OutageUntil bound it in time (zero = open-ended on that side); with
	// Outage false and OutageUntil set, the window alone decides.
	Outage      bool      `json:"outage,omitempty"`
	OutageFrom  time.Time `json:"outage_from,omitzero"`
	OutageUntil time.Time `json:"outage_until,omitzero"`

	// BanThreshold is REDCap's page_hit_threshold_per_minute: more calls
	// than this from one client IP within a minute ban that IP until Reset
	// (429). 0 means DefaultBanThreshold; negative turns the ban off. Only
	// the every-project setting (ID 0) counts: REDCap bans per server.
	BanThreshold int `json:"ban_threshold,omitempty"`

	// SlowBodyBPS sends answers at this many bytes per second.
	SlowBodyBPS int `json:"slow_body_bps,omitempty"`

	// Seed makes the random choices reproducible (0 = seeded from the clock).
	Seed uint64 `json:"seed,omitempty"`
	// EveryN, if > 0, replaces the rates: every Nth call gets a fault,
	// cycling through the kinds whose rate is > 0 (error, HTML, memory,
	// MySQL, empty), and error statuses cycle through ErrorStatuses.
	EveryN int `json:"every_n,omitempty"`
}

// Duration is a time.Duration written as "200ms" in JSON (a number is
// read as nanoseconds).
type Duration time.Duration

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("duration %q: %w", s, err)
		}
		*d = Duration(v)
		return nil
	}
	var n int64
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("a duration must be a string like \"200ms\" or a number of nanoseconds")
	}
	*d = Duration(n)
	return nil
}

// Validate checks rates, statuses and sizes.
func (f Faults) Validate() error {
	for name, r := range map[string]float64{"error_rate": f.ErrorRate, "empty_rate": f.EmptyRate, "html_rate": f.HTMLRate,
		"memory_rate": f.MemoryRate, "mysql_rate": f.MySQLRate, "truncate_rate": f.TruncateRate, "cut_rate": f.CutRate, "drop_rate": f.DropRate} {
		if r < 0 || r > 1 {
			return fmt.Errorf("%s must be between 0 and 1, got %v", name, r)
		}
	}
	if s := f.ErrorRate + f.EmptyRate + f.HTMLRate + f.MemoryRate + f.MySQLRate + f.TruncateRate + f.CutRate; s > 1.000001 {
		return fmt.Errorf("error_rate + empty_rate + html_rate + memory_rate + mysql_rate + truncate_rate + cut_rate must be at most 1, got %v", s)
	}
	for _, st := range f.ErrorStatuses {
		if st < 400 || st > 599 {
			return fmt.Errorf("error_statuses: %d is not an HTTP error status", st)
		}
	}
	if f.Latency < 0 || f.LatencyPerRecord < 0 || f.SlowBodyBPS < 0 || f.EveryN < 0 || f.OmitRecords < 0 || f.OmitAnswers < 0 {
		return fmt.Errorf("latency, latency_per_record, slow_body_bps, every_n, omit_records and omit_answers cannot be negative")
	}
	return nil
}

// Fault kinds, as counted in Stats.
const (
	KindError   = "error"
	KindHTML    = "html"
	KindMemory  = "memory"
	KindMySQL   = "mysql"
	KindEmpty   = "empty"
	KindTrunc   = "truncated"
	KindCut     = "cut"
	KindOutage  = "outage"
	KindBan     = "ban"
	KindDropped = "dropped_rows"
	KindOmitted = "omitted_records" // records left out of record-ID lists
)

var answerKinds = []string{KindError, KindHTML, KindMemory, KindMySQL, KindEmpty, KindTrunc, KindCut}

func (f *Faults) rate(kind string) float64 {
	switch kind {
	case KindError:
		return f.ErrorRate
	case KindHTML:
		return f.HTMLRate
	case KindMemory:
		return f.MemoryRate
	case KindMySQL:
		return f.MySQLRate
	case KindEmpty:
		return f.EmptyRate
	case KindTrunc:
		return f.TruncateRate
	case KindCut:
		return f.CutRate
	}
	return 0
}

func (f *Faults) statuses() []int {
	if len(f.ErrorStatuses) > 0 {
		return f.ErrorStatuses
	}
	return []int{500, 502, 503, 504}
}

func (f *Faults) outageAt(now time.Time) bool {
	window := !f.OutageFrom.IsZero() || !f.OutageUntil.IsZero()
	if !f.Outage && !window {
		return false
	}
	if !f.OutageFrom.IsZero() && now.Before(f.OutageFrom) {
		return false
	}
	if !f.OutageUntil.IsZero() && !now.Before(f.OutageUntil) {
		return false
	}
	return true
}

// scope is one Faults setting with its own random source and call count.
type scope struct {
	f        Faults
	mu       sync.Mutex
	rng      *rand.Rand
	calls    int64
	omitLeft int // answers still to cut when OmitAnswers > 0
}

func newScope(f Faults) *scope {
	seed := f.Seed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	f.ErrorStatuses = append([]int(nil), f.ErrorStatuses...)
	return &scope{f: f, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), omitLeft: f.OmitAnswers}
}

// decide picks this call's answer fault ("" = none) and error status.
func (s *scope) decide() (kind string, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	f := &s.f
	if f.EveryN > 0 {
		if s.calls%int64(f.EveryN) != 0 {
			return "", 0
		}
		var kinds []string
		for _, k := range answerKinds {
			if f.rate(k) > 0 {
				kinds = append(kinds, k)
			}
		}
		if len(kinds) == 0 {
			return "", 0
		}
		nth := s.calls/int64(f.EveryN) - 1
		kind = kinds[nth%int64(len(kinds))]
		if kind == KindError {
			st := f.statuses()
			errNth := nth / int64(len(kinds))
			status = st[errNth%int64(len(st))]
		}
		return kind, status
	}
	u := s.rng.Float64()
	acc := 0.0
	for _, k := range answerKinds {
		acc += f.rate(k)
		if u < acc {
			if k == KindError {
				st := f.statuses()
				status = st[s.rng.IntN(len(st))]
			}
			return k, status
		}
	}
	return "", 0
}

// omitPlan says how many records to leave out of this record-ID list
// answer, counting it against OmitAnswers.
func (s *scope) omitPlan() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f.OmitRecords == 0 {
		return 0
	}
	if s.f.OmitAnswers > 0 {
		if s.omitLeft == 0 {
			return 0
		}
		s.omitLeft--
	}
	return s.f.OmitRecords
}

func (s *scope) intn(n int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rng.IntN(n)
}

func (s *scope) drop() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rng.Float64() < s.f.DropRate
}

// Injector is the middleware. Create it with New.
type Injector struct {
	next      http.Handler
	projectOf func(token string) (int, bool)
	idFieldOf func(token string) (string, bool)
	now       func() time.Time
	banBase   atomic.Int64 // the ban threshold when no setting names one

	mu     sync.RWMutex
	scopes map[int]*scope // 0 = every project

	banMu  sync.Mutex
	hits   map[string][]time.Time // per client IP, within the last minute
	banned map[string]time.Time

	statMu sync.Mutex
	stats  map[string]int64
	calls  atomic.Int64
}

// New wraps next. projectOf maps an API token to its project (nil: only the
// every-project setting applies).
func New(next http.Handler, projectOf func(token string) (int, bool)) *Injector {
	in := &Injector{next: next, projectOf: projectOf, now: time.Now, scopes: map[int]*scope{},
		hits: map[string][]time.Time{}, banned: map[string]time.Time{}, stats: map[string]int64{}}
	in.banBase.Store(DefaultBanThreshold)
	return in
}

// SetBanDefault sets the ban threshold that applies while the every-project
// setting names none (BanThreshold 0): the one the server was started with.
// Reset, Clear(0) and DELETE /faults keep it. 0 means DefaultBanThreshold;
// negative turns the ban off.
func (in *Injector) SetBanDefault(threshold int) {
	if threshold == 0 {
		threshold = DefaultBanThreshold
	}
	in.banBase.Store(int64(threshold))
}

// SetRecordIDField tells the injector each token's record-ID field, so that
// OmitRecords cuts only record-ID lists (without it, any one-field JSON
// record export counts as one).
func (in *Injector) SetRecordIDField(idFieldOf func(token string) (string, bool)) {
	in.mu.Lock()
	in.idFieldOf = idFieldOf
	in.mu.Unlock()
}

// Set replaces the faults of a project (0 = every project without its own).
func (in *Injector) Set(projectID int, f Faults) error {
	if err := f.Validate(); err != nil {
		return err
	}
	in.mu.Lock()
	in.scopes[projectID] = newScope(f)
	in.mu.Unlock()
	return nil
}

// Get returns a project's own faults (0 = every project).
func (in *Injector) Get(projectID int) (Faults, bool) {
	in.mu.RLock()
	defer in.mu.RUnlock()
	s, ok := in.scopes[projectID]
	if !ok {
		return Faults{}, false
	}
	return s.f, true
}

// Clear removes a project's faults (0 = the every-project setting).
func (in *Injector) Clear(projectID int) {
	in.mu.Lock()
	delete(in.scopes, projectID)
	in.mu.Unlock()
}

// Reset removes every fault, lifts every IP ban and zeroes the counters.
func (in *Injector) Reset() {
	in.mu.Lock()
	in.scopes = map[int]*scope{}
	in.mu.Unlock()
	in.ResetBans()
	in.statMu.Lock()
	in.stats = map[string]int64{}
	in.statMu.Unlock()
	in.calls.Store(0)
}

// ResetBans lifts every IP ban and forgets the hit counts (an admin
// deleting rows of redcap_ip_banned).
func (in *Injector) ResetBans() {
	in.banMu.Lock()
	in.hits = map[string][]time.Time{}
	in.banned = map[string]time.Time{}
	in.banMu.Unlock()
}

// Banned lists the banned client IPs.
func (in *Injector) Banned() []string {
	in.banMu.Lock()
	defer in.banMu.Unlock()
	out := make([]string, 0, len(in.banned))
	for ip := range in.banned {
		out = append(out, ip)
	}
	sort.Strings(out)
	return out
}

// Stats counts injected faults by kind, plus "calls" for every call seen.
func (in *Injector) Stats() map[string]int64 {
	in.statMu.Lock()
	defer in.statMu.Unlock()
	out := make(map[string]int64, len(in.stats)+1)
	for k, v := range in.stats {
		out[k] = v
	}
	out["calls"] = in.calls.Load()
	return out
}

func (in *Injector) count(kind string, n int64) {
	in.statMu.Lock()
	in.stats[kind] += n
	in.statMu.Unlock()
}

func (in *Injector) scopeFor(projectID int, known bool) (*scope, *scope) {
	in.mu.RLock()
	defer in.mu.RUnlock()
	global := in.scopes[0]
	if known {
		if s, ok := in.scopes[projectID]; ok {
			return s, global
		}
	}
	return global, global
}

func (in *Injector) hasProjectScopes() bool {
	in.mu.RLock()
	defer in.mu.RUnlock()
	for id := range in.scopes {
		if id != 0 {
			return true
		}
	}
	return false
}

// globalOutage reports whether the every-project setting has an outage now
// (used by OutageListener, which cannot see tokens).
func (in *Injector) globalOutage() bool {
	in.mu.RLock()
	s := in.scopes[0]
	in.mu.RUnlock()
	return s != nil && s.f.outageAt(in.now())
}

// ban records a hit from ip and reports whether ip is (now) banned.
func (in *Injector) ban(ip string, threshold int) bool {
	now := in.now()
	in.banMu.Lock()
	defer in.banMu.Unlock()
	if _, ok := in.banned[ip]; ok {
		return true
	}
	h := in.hits[ip]
	cut := 0
	for cut < len(h) && now.Sub(h[cut]) >= time.Minute {
		cut++
	}
	h = append(h[cut:], now)
	in.hits[ip] = h
	if len(h) > threshold {
		in.banned[ip] = now
		delete(in.hits, ip)
		return true
	}
	return false
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// ServeHTTP applies the faults, then (unless a fault answered) calls next.
func (in *Injector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	in.calls.Add(1)
	ctx := r.Context()

	in.mu.RLock()
	global := in.scopes[0]
	in.mu.RUnlock()
	threshold := int(in.banBase.Load())
	if global != nil && global.f.BanThreshold != 0 {
		threshold = global.f.BanThreshold
	}
	if threshold > 0 {
		if ip := clientIP(r); in.ban(ip, threshold) {
			in.count(KindBan, 1)
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.WriteHeader(http.StatusTooManyRequests)
			fmt.Fprintf(w, "Your IP address (%s) has been banned due to suspected abuse.", ip)
			return
		}
	}

	// Read the body once: the token picks the project, the payload size
	// drives per-record latency; next gets an identical copy.
	var body []byte
	if r.Body != nil {
		var err error
		body, err = io.ReadAll(r.Body)
		r.Body.Close()
		if err != nil {
			http.Error(w, "cannot read the request", http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	form := parseForm(r.Header.Get("Content-Type"), body)

	sc := global
	if in.projectOf != nil && in.hasProjectScopes() {
		id, ok := in.projectOf(form.Get("token"))
		sc, _ = in.scopeFor(id, ok)
	}
	if sc == nil {
		in.next.ServeHTTP(w, r)
		return
	}
	f := &sc.f

	if f.outageAt(in.now()) {
		in.count(KindOutage, 1)
		hangUp(w)
		return
	}
	if f.Latency > 0 || f.LatencyPerRecord > 0 {
		d := time.Duration(f.Latency) + time.Duration(f.LatencyPerRecord)*time.Duration(requestRecords(form))
		if !sleep(ctx, d) {
			return
		}
	}

	kind, status := sc.decide()
	switch kind {
	case KindError:
		in.count(KindError, 1)
		writeStatus(w, status, form)
		return
	case KindHTML:
		in.count(KindHTML, 1)
		in.write(ctx, w, f, http.StatusOK, "text/html; charset=utf-8", []byte(HTMLPage))
		return
	case KindMemory:
		in.count(KindMemory, 1)
		in.write(ctx, w, f, http.StatusOK, "text/html; charset=utf-8", []byte(MemoryText))
		return
	case KindMySQL:
		in.count(KindMySQL, 1)
		in.write(ctx, w, f, http.StatusOK, "text/html; charset=utf-8", []byte(MySQLText))
		return
	}

	rec := &recorder{header: http.Header{}, status: http.StatusOK}
	in.next.ServeHTTP(rec, r)
	if kind == KindEmpty {
		// The server failed before it wrote anything of the answer: PHP's
		// default header, no body (not the answer's own headers, which
		// would name a file that never came).
		in.count(KindEmpty, 1)
		w.Header().Set("Content-Type", "text/html; charset=UTF-8")
		w.WriteHeader(http.StatusOK)
		return
	}
	out := rec.buf.Bytes()
	if kind == KindCut {
		in.count(KindCut, 1)
		copyHeader(w.Header(), rec.header)
		w.Header().Set("Content-Length", strconv.Itoa(len(out)))
		w.WriteHeader(rec.status)
		w.Write(out[:len(out)/2])
		if fl, ok := w.(http.Flusher); ok {
			fl.Flush()
		}
		hangUp(w)
		return
	}
	if kind == KindTrunc {
		in.count(KindTrunc, 1)
		out = out[:len(out)/2]
	}
	if f.DropRate > 0 && rec.status == http.StatusOK && isRecordExport(form) {
		var dropped int64
		out, dropped = dropRows(out, sc.drop)
		if dropped > 0 {
			in.count(KindDropped, dropped)
		}
	}
	if f.OmitRecords > 0 && rec.status == http.StatusOK && kind != KindTrunc {
		if field, ok := in.recordIDList(form); ok {
			if n := sc.omitPlan(); n > 0 {
				var omitted int64
				out, omitted = omitRecords(out, field, n, sc.intn)
				in.count(KindOmitted, omitted)
			}
		}
	}
	if f.LatencyPerRecord > 0 {
		if !sleep(ctx, time.Duration(f.LatencyPerRecord)*time.Duration(countRows(out))) {
			return
		}
	}
	copyHeader(w.Header(), rec.header)
	w.Header().Del("Content-Length")
	in.write(ctx, w, f, rec.status, "", out)
}

// write sends an answer, throttled to SlowBodyBPS if set.
func (in *Injector) write(ctx context.Context, w http.ResponseWriter, f *Faults, status int, ctype string, body []byte) {
	if ctype != "" {
		w.Header().Set("Content-Type", ctype)
	}
	if f.SlowBodyBPS <= 0 {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(status)
		w.Write(body)
		return
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	fl, _ := w.(http.Flusher)
	// ~10 writes a second keeps the pace smooth without busy-looping.
	chunk := max(f.SlowBodyBPS/10, 1)
	for len(body) > 0 {
		n := min(chunk, len(body))
		if _, err := w.Write(body[:n]); err != nil {
			return
		}
		if fl != nil {
			fl.Flush()
		}
		body = body[n:]
		if len(body) > 0 && !sleep(ctx, time.Duration(float64(n)/float64(f.SlowBodyBPS)*float64(time.Second))) {
			return
		}
	}
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// hangUp closes the connection without an answer, as a server that is down
// (or a load balancer with no backend) does.
func hangUp(w http.ResponseWriter) {
	hj, ok := w.(http.Hijacker)
	if ok {
		if conn, _, err := hj.Hijack(); err == nil {
			if tc, ok := conn.(*net.TCPConn); ok {
				tc.SetLinger(0) // RST rather than FIN: "connection reset"
			}
			conn.Close()
			return
		}
	}
	// HTTP/2 or a test recorder: abort the handler, which resets the stream.
	panic(http.ErrAbortHandler)
}

// redcapDefaults are REDCap's default error texts per status.
var redcapDefaults = map[int]string{
	400: "There were errors with your request. If you are sending data, then it might be due to the data being misformatted.",
	401: "The API token was missing or incorrect",
	403: "You do not have permissions to use the API",
	404: "The requested URI was not found.",
	500: "The server encountered an error processing your request.",
}

// writeStatus answers an injected error like the thing that would send it:
// REDCap's own error wrapper for 4xx (except 429) and 500, a proxy's HTML
// page for 502/503/504 and the rest.
func writeStatus(w http.ResponseWriter, status int, form url.Values) {
	if status == http.StatusTooManyRequests {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(status)
		io.WriteString(w, "Your IP address (127.0.0.1) has been banned due to suspected abuse.")
		return
	}
	if status < 500 || status == http.StatusInternalServerError {
		msg := redcapDefaults[status]
		if msg == "" {
			msg = http.StatusText(status)
		}
		rf := strings.ToLower(form.Get("returnFormat"))
		if rf == "" {
			rf = strings.ToLower(form.Get("format"))
		}
		switch rf {
		case "json":
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			w.WriteHeader(status)
			b, _ := json.Marshal(map[string]string{"error": msg})
			w.Write(b)
		case "csv":
			w.Header().Set("Content-Type", "text/csv; charset=utf-8")
			w.WriteHeader(status)
			io.WriteString(w, "ERROR: "+msg)
		default:
			w.Header().Set("Content-Type", "text/xml; charset=utf-8")
			w.WriteHeader(status)
			io.WriteString(w, `<?xml version="1.0" encoding="UTF-8" ?><hash><error>`+msg+`</error></hash>`)
		}
		return
	}
	text := fmt.Sprintf("%d %s", status, http.StatusText(status))
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	fmt.Fprintf(w, "<html>\r\n<head><title>%s</title></head>\r\n<body>\r\n<center><h1>%s</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n", text, text)
}

// parseForm reads an urlencoded or multipart body without consuming it.
func parseForm(ctype string, body []byte) url.Values {
	mt, params, _ := mime.ParseMediaType(ctype)
	if mt == "multipart/form-data" && params["boundary"] != "" {
		out := url.Values{}
		mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
		for {
			p, err := mr.NextPart()
			if err != nil {
				break
			}
			if p.FileName() == "" && p.FormName() != "" {
				b, _ := io.ReadAll(io.LimitReader(p, 64<<20))
				out.Add(p.FormName(), string(b))
			}
			p.Close()
		}
		return out
	}
	v, _ := url.ParseQuery(string(body))
	return v
}

// requestRecords estimates the records a call names: records[] entries, or
// the rows of an import's data (JSON objects or CSV lines).
func requestRecords(form url.Values) int {
	n := 0
	for k, vs := range form {
		if k == "records" || strings.HasPrefix(k, "records[") {
			for _, v := range vs {
				if k == "records" && strings.Contains(v, ",") {
					n += strings.Count(v, ",") + 1
				} else if v != "" {
					n++
				}
			}
		}
	}
	if data := form.Get("data"); data != "" {
		t := strings.TrimSpace(data)
		if strings.HasPrefix(t, "[") || strings.HasPrefix(t, "{") {
			n += countRows([]byte(t))
		} else {
			n += max(strings.Count(t, "\n"), 1)
		}
	}
	return n
}

// CountJSON counts the objects at the top level of a JSON array (rows of a
// flat export) and their values (colons outside strings at depth 2); it
// skips strings, so values cannot fool it. Latency models charge by both.
func CountJSON(b []byte) (rows, values int) {
	depth, inStr, esc := 0, false, false
	for _, c := range b {
		if inStr {
			switch {
			case esc:
				esc = false
			case c == '\\':
				esc = true
			case c == '"':
				inStr = false
			}
			continue
		}
		switch c {
		case '"':
			inStr = true
		case '[', '{':
			if c == '{' && depth == 1 {
				rows++
			}
			depth++
		case ']', '}':
			depth--
		case ':':
			if depth == 2 {
				values++
			}
		}
	}
	return rows, values
}

func countRows(b []byte) int { n, _ := CountJSON(b); return n }

func isRecordExport(form url.Values) bool {
	return form.Get("content") == "record" && form.Get("data") == "" && form.Get("action") == "" &&
		strings.EqualFold(form.Get("format"), "json")
}

// recordIDList reports whether a call asks for a record-ID list: a JSON
// record export naming exactly one field (the token's record-ID field when
// the injector knows it), and which field that is.
func (in *Injector) recordIDList(form url.Values) (string, bool) {
	if !isRecordExport(form) {
		return "", false
	}
	var fields []string
	for k, vs := range form {
		if k == "fields" || strings.HasPrefix(k, "fields[") {
			for _, v := range vs {
				for _, f := range strings.Split(v, ",") {
					if f = strings.TrimSpace(f); f != "" {
						fields = append(fields, f)
					}
				}
			}
		}
	}
	if len(fields) != 1 {
		return "", false
	}
	in.mu.RLock()
	idFieldOf := in.idFieldOf
	in.mu.RUnlock()
	if idFieldOf != nil {
		if id, ok := idFieldOf(form.Get("token")); ok && id != fields[0] {
			return "", false
		}
	}
	return fields[0], true
}

// omitRecords leaves n records (every row whose field holds one of n
// distinct values, picked at random) out of a JSON array of rows.
func omitRecords(body []byte, field string, n int, intn func(int) int) ([]byte, int64) {
	var rows []json.RawMessage
	if err := json.Unmarshal(body, &rows); err != nil || len(rows) == 0 {
		return body, 0
	}
	ids := make([]string, len(rows))
	var distinct []string
	seen := map[string]bool{}
	for i, r := range rows {
		var m map[string]any
		if json.Unmarshal(r, &m) != nil {
			return body, 0
		}
		v, ok := m[field]
		if !ok {
			return body, 0 // not a list of that field after all
		}
		id := fmt.Sprint(v)
		ids[i] = id
		if !seen[id] {
			seen[id] = true
			distinct = append(distinct, id)
		}
	}
	n = min(n, len(distinct))
	omit := map[string]bool{}
	for len(omit) < n {
		omit[distinct[intn(len(distinct))]] = true
	}
	kept := rows[:0]
	for i, r := range rows {
		if !omit[ids[i]] {
			kept = append(kept, r)
		}
	}
	out, err := json.Marshal(kept)
	if err != nil {
		return body, 0
	}
	return out, int64(n)
}

// dropRows removes rows of a JSON array for which drop() is true.
func dropRows(body []byte, drop func() bool) ([]byte, int64) {
	var rows []json.RawMessage
	if err := json.Unmarshal(body, &rows); err != nil || len(rows) == 0 {
		return body, 0
	}
	kept := rows[:0]
	var dropped int64
	for _, r := range rows {
		if drop() {
			dropped++
			continue
		}
		kept = append(kept, r)
	}
	if dropped == 0 {
		return body, 0
	}
	out, err := json.Marshal(kept)
	if err != nil {
		return body, 0
	}
	return out, dropped
}

func copyHeader(dst, src http.Header) {
	for k, vs := range src {
		dst[k] = append([]string(nil), vs...)
	}
}

// recorder buffers next's answer so that faults can replace, trim or slow it.
type recorder struct {
	header http.Header
	status int
	wrote  bool
	buf    bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(s int) {
	if !r.wrote {
		r.status, r.wrote = s, true
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	r.wrote = true
	return r.buf.Write(b)
}

// OutageListener wraps a listener so that, while the every-project setting
// has an outage on, each accepted connection is closed at once (clients
// see a reset or EOF before any HTTP).
func (in *Injector) OutageListener(l net.Listener) net.Listener {
	return &outageListener{Listener: l, in: in}
}

type outageListener struct {
	net.Listener
	in *Injector
}

func (l *outageListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if !l.in.globalOutage() {
			return c, nil
		}
		l.in.count(KindOutage, 1)
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		c.Close()
	}
}
