// Package redcap is REDCap Relay's client for the REDCap API (REDCap's API
// behaviour as documented in the README's simulator section): one Client per site, every call a form POST to the
// project's …/api/ URL, with a client-side rate limit, a per-call timeout and
// errors that say whether a retry can help (Kind) and never contain the
// token or a field value.
//
// The client never retries: callers wrap calls in cenkalti/backoff/v4 and
// retry only errors for which IsTransient is true.
package redcap

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Defaults.
const (
	DefaultTimeout        = 5 * time.Minute
	DefaultCallsPerMinute = 300 // half of REDCap's default 600/minute IP ban threshold
)

// Options configure a Client.
type Options struct {
	Site    string // name used in errors and logs, e.g. "site-a" or "destination"
	URL     string // the project's API URL, …/api/
	Token   string // the project's API token (never logged, never in errors)
	Timeout time.Duration
	// CAFile is an extra trusted CA (PEM), for servers with a private CA.
	CAFile string
	// CallsPerMinute limits this client (shared by every client of the same
	// host and limit in this process, because REDCap's ban counts per IP).
	// 0 means DefaultCallsPerMinute; a negative value disables the limiter
	// (tests and benchmarks against a local simulator only).
	CallsPerMinute int
	HTTPClient     *http.Client // optional; CAFile is then applied to a copy of its transport
	Logger         *slog.Logger
	// Observe, when set, is told of every API call's outcome (metrics).
	Observe Observer
}

// Client calls one REDCap project's API. It is safe for concurrent use.
type Client struct {
	site    string
	url     string
	token   string
	timeout time.Duration
	hc      *http.Client
	lim     *rate.Limiter // nil = unlimited
	log     *slog.Logger
	calls   atomic.Int64
	obs     Observer
}

var tokenRE = regexp.MustCompile(`^[A-Za-z0-9]+$`)

// New checks the options and builds a client. TLS certificates are verified.
func New(opts Options) (*Client, error) {
	site := opts.Site
	if site == "" {
		site = "redcap"
	}
	u, err := url.Parse(opts.URL)
	if err != nil || opts.URL == "" {
		return nil, fmt.Errorf("%s: REDCap API URL %q is not a valid URL; use e.g. https://redcap.example.org/api/", site, redactURL(opts.URL))
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("%s: REDCap API URL %q must start with https:// (or http:// for a local simulator)", site, redactURL(opts.URL))
	}
	if u.Host == "" {
		return nil, fmt.Errorf("%s: REDCap API URL %q has no host", site, redactURL(opts.URL))
	}
	if opts.Token == "" {
		return nil, fmt.Errorf("%s: no REDCap API token given; set the site's token file or environment variable", site)
	}
	if !tokenRE.MatchString(opts.Token) {
		return nil, fmt.Errorf("%s: the REDCap API token is malformed (REDCap tokens are letters and digits only); check the token file or variable for stray characters", site)
	}
	if strings.Contains(opts.URL, opts.Token) {
		return nil, fmt.Errorf("%s: the REDCap API URL contains the token; give the token in the token file only", site)
	}
	c := &Client{site: site, url: opts.URL, token: opts.Token, timeout: opts.Timeout, log: opts.Logger, obs: opts.Observe}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.log = c.log.With("site", site)
	hc, err := httpClient(opts.HTTPClient, opts.CAFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", site, err)
	}
	// Never follow redirects: a 307/308 would re-send the token to whatever
	// host the Location names, and a 301/302 turns the POST into a GET.
	cp := *hc
	cp.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	c.hc = &cp
	cpm := opts.CallsPerMinute
	if cpm == 0 {
		cpm = DefaultCallsPerMinute
	}
	if cpm > 0 {
		c.lim = sharedLimiter(u.Scheme+"://"+u.Host, cpm)
	}
	return c, nil
}

func httpClient(base *http.Client, caFile string) (*http.Client, error) {
	if caFile == "" {
		if base != nil {
			return base, nil
		}
		return &http.Client{Transport: defaultTransport()}, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("CA file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("CA file %s holds no PEM certificate", caFile)
	}
	var tr *http.Transport
	hc := &http.Client{}
	if base != nil {
		*hc = *base
		t, ok := base.Transport.(*http.Transport)
		if base.Transport != nil && !ok {
			return nil, fmt.Errorf("CA file %s cannot be applied to a custom HTTP transport", caFile)
		}
		if t != nil {
			tr = t.Clone()
		}
	}
	if tr == nil {
		tr = defaultTransport()
	}
	if tr.TLSClientConfig == nil {
		tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	tr.TLSClientConfig.RootCAs = pool
	hc.Transport = tr
	return hc, nil
}

func defaultTransport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	t.MaxIdleConnsPerHost = 4
	return t
}

var (
	limMu    sync.Mutex
	limiters = map[string]*rate.Limiter{}
)

// sharedLimiter gives every client of one host (and limit) the same bucket:
// REDCap bans by client IP, not by token, so sites on one server share it.
func sharedLimiter(host string, perMinute int) *rate.Limiter {
	key := fmt.Sprintf("%s|%d", host, perMinute)
	limMu.Lock()
	defer limMu.Unlock()
	if l, ok := limiters[key]; ok {
		return l
	}
	burst := perMinute / 60
	if burst < 1 {
		burst = 1
	}
	l := rate.NewLimiter(rate.Limit(float64(perMinute)/60), burst)
	limiters[key] = l
	return l
}

// Site is the name the client uses in errors.
func (c *Client) Site() string { return c.site }

// Calls is the number of HTTP requests made so far.
func (c *Client) Calls() int64 { return c.calls.Load() }

// bodyKind says what a successful answer must look like.
type bodyKind int

const (
	bodyJSON bodyKind = iota // a JSON array or object
	bodyText                 // a short plain-text answer (version, counts)
)

// post sends one API call and returns the checked body of a 200.
func (c *Client) post(ctx context.Context, call string, form url.Values, want bodyKind) ([]byte, error) {
	body, _, err := c.postHeader(ctx, call, form, want)
	return body, err
}

// postHeader is post that also returns the answer's headers.
func (c *Client) postHeader(ctx context.Context, call string, form url.Values, want bodyKind) (_ []byte, _ http.Header, err error) {
	status, start := 0, time.Now()
	defer func() { c.observe(call, start, status, err) }()
	form.Set("token", c.token)
	enc := form.Encode()
	resp, done, err := c.send(ctx, call, strings.NewReader(enc), int64(len(enc)), "application/x-www-form-urlencoded")
	if err != nil {
		return nil, nil, err
	}
	defer done()
	status = resp.StatusCode
	body, err := readBody(resp.Body, resp.ContentLength)
	resp.Body.Close()
	c.log.Debug("redcap call", "call", call, "status", resp.StatusCode, "bytes", len(body))
	if err != nil {
		return nil, nil, c.netError(call, resp.Request.Context(), fmt.Errorf("reading the answer: %w", err))
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, c.answerError(call, resp, body)
	}
	if err := c.checkBody(call, body, want); err != nil {
		return nil, nil, err
	}
	return body, resp.Header, nil
}

// send makes one POST with the rate limit and the per-call timeout, and
// returns the answer with its body unread; done ends the call's timeout
// context once the body has been read.
func (c *Client) send(ctx context.Context, call string, body io.Reader, length int64, ctype string) (*http.Response, context.CancelFunc, error) {
	if c.lim != nil {
		if err := c.lim.Wait(ctx); err != nil {
			return nil, nil, c.netError(call, ctx, err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, body)
	if err != nil {
		cancel()
		return nil, nil, c.newError(call, 0, KindPermanent, "cannot build the request", "", err)
	}
	req.ContentLength = length
	req.Header.Set("Content-Type", ctype)
	req.Header.Set("Accept", "application/json")
	start := time.Now()
	c.calls.Add(1)
	resp, err := c.hc.Do(req)
	if err != nil {
		c.log.Debug("redcap call failed", "call", call, "ms", time.Since(start).Milliseconds())
		cancel()
		return nil, nil, c.netError(call, ctx, err)
	}
	return resp, cancel, nil
}

// answerError is the error for a non-200 answer whose body was read.
func (c *Client) answerError(call string, resp *http.Response, body []byte) *Error {
	e := c.statusError(call, resp.StatusCode, body)
	if resp.StatusCode >= 300 && resp.StatusCode < 400 {
		e.Kind = KindPermanent
		e.Message = "the server redirects the API call"
		e.Hint = "set the site's URL to the address it redirects to"
		if loc := resp.Header.Get("Location"); loc != "" {
			e.Message += " to " + c.scrub(redactURL(loc))
			e.Hint = "set the site's URL to that address"
		}
	}
	return e
}

func readBody(r io.Reader, n int64) ([]byte, error) {
	var buf bytes.Buffer
	if n > 0 && n < 1<<31 {
		buf.Grow(int(n))
	}
	_, err := buf.ReadFrom(r)
	return buf.Bytes(), err
}

func (c *Client) newError(call string, status int, kind Kind, msg, hint string, cause error) *Error {
	return &Error{Site: c.site, Call: call, Status: status, Kind: kind, Message: c.scrub(msg), Hint: hint, Err: c.scrubErr(cause)}
}

// scrub removes the token from any text, defensively: net/http errors carry
// the URL (not the body), but a misconfigured proxy may echo anything.
func (c *Client) scrub(s string) string {
	if c.token == "" || !strings.Contains(s, c.token) {
		return s
	}
	return strings.ReplaceAll(s, c.token, "<token>")
}

func (c *Client) scrubErr(err error) error {
	if err == nil || !strings.Contains(err.Error(), c.token) {
		return err
	}
	return &scrubbed{msg: c.scrub(err.Error()), ctxErr: ctxCause(err)}
}

// scrubbed replaces an error whose text held the token; it keeps the
// context sentinels so errors.Is still works.
type scrubbed struct {
	msg    string
	ctxErr error
}

func (s *scrubbed) Error() string { return s.msg }
func (s *scrubbed) Unwrap() error { return s.ctxErr }

func ctxCause(err error) error {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return context.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		return context.Canceled
	}
	return nil
}

// netError classifies failures where no HTTP status arrived.
func (c *Client) netError(call string, ctx context.Context, err error) *Error {
	var (
		unknownCA   x509.UnknownAuthorityError
		hostErr     x509.HostnameError
		invalidCert x509.CertificateInvalidError
		verifyErr   *tls.CertificateVerificationError
		recordErr   tls.RecordHeaderError
	)
	switch {
	case errors.As(err, &unknownCA), errors.As(err, &hostErr), errors.As(err, &invalidCert), errors.As(err, &verifyErr):
		return c.newError(call, 0, KindPermanent, "the server's TLS certificate is not trusted", "set ca_file to the CA that signed it, or fix the server's certificate", err)
	case errors.As(err, &recordErr), strings.Contains(err.Error(), "server gave HTTP response to HTTPS client"):
		return c.newError(call, 0, KindPermanent, "the server does not speak TLS (it answers plain HTTP on an https:// URL)", "check whether the URL should start with http:// or https://, and the port", err)
	case errors.Is(err, context.DeadlineExceeded) || (ctx.Err() == context.DeadlineExceeded):
		return c.newError(call, 0, KindTransient, fmt.Sprintf("no complete answer within %s", c.timeout), "the server is slow or the batch is too big", err)
	case errors.Is(err, context.Canceled):
		return c.newError(call, 0, KindTransient, "cancelled", "", err)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return c.newError(call, 0, KindTransient, "network timeout", "", err)
	}
	return c.newError(call, 0, KindTransient, "cannot reach the REDCap server", "", err)
}

// statusError builds the error for a non-200 answer from REDCap's error
// body ({"error":…}, "ERROR: …", <hash><error>…, or a web server page).
func (c *Client) statusError(call string, status int, body []byte) *Error {
	msg, html := errorText(body)
	msg = c.scrub(msg)
	e := &Error{Site: c.site, Call: call, Status: status, Kind: KindPermanent}
	if ps := parseProblems(msg); len(ps) > 0 {
		e.Problems = ps
		msg = problemsText(ps)
	} else if strings.HasPrefix(msg, `"`) && strings.Count(msg, `","`) >= 3 {
		// Looks like validation lines we cannot split: they hold values.
		msg = "REDCap rejected the data; its problem list could not be read without showing values"
	}
	e.Message = msg
	switch {
	case status >= 400 && status < 500 && cutOff(body):
		// Only a complete, well-formed error answer is matched against
		// REDCap's texts: a cut one ("... do not exis") could read as
		// another error, or as none.
		e.Kind = KindTransient
		e.Message = fmt.Sprintf("REDCap's error answer was cut off or malformed (%d bytes); the call is tried again", len(body))
		e.Problems = nil
	case status == http.StatusTooManyRequests:
		e.Kind = KindTransient
		e.Message = "REDCap has banned this client's IP address for suspected abuse (too many calls per minute)"
		if strings.Contains(msg, "banned") {
			e.Message += ": " + msg
		}
		e.Hint = "the ban lasts until a REDCap administrator lifts it; lower calls_per_minute"
	case status == http.StatusRequestTimeout || status == 425:
		e.Kind = KindTransient
	case status == http.StatusNotImplemented:
		e.Hint = "REDCap only accepts POST; check for a proxy that rewrites requests"
	case status >= 500:
		e.Kind = KindTransient
	case status == http.StatusForbidden:
		e.Hint = forbiddenHint(msg)
	case status == http.StatusUnauthorized:
		e.Hint = "check the token file for this site"
	case status == http.StatusNotFound:
		e.Hint = "check the API URL: it should be the server's …/api/ address"
	case status == http.StatusRequestEntityTooLarge:
		e.Hint = "the request is too big for the server; use smaller batches"
	case status >= 400:
		e.Hint = badRequestHint(msg)
	default:
		// 1xx/3xx/other 2xx: not REDCap's API talking.
		e.Kind = KindTransient
		if e.Message == "" {
			e.Message = "unexpected answer"
		}
	}
	if e.Message == "" {
		if html {
			e.Message = "the server answered with an HTML page"
		} else {
			e.Message = http.StatusText(status)
		}
	}
	return e
}

func forbiddenHint(msg string) string {
	switch {
	case strings.Contains(msg, "You do not have permissions to use the API"):
		return "check the token file for this site: the token is wrong or revoked, or its user is suspended"
	case strings.Contains(msg, "expired"):
		return "the token user's project rights have expired; ask the project's REDCap administrator to renew them"
	case strings.Contains(msg, "privileges") || strings.Contains(msg, "rights"):
		return "ask the project's REDCap administrator to grant the token's user the right named above"
	}
	return ""
}

func badRequestHint(msg string) string {
	switch {
	case strings.Contains(msg, `parameter "fields"`), strings.Contains(msg, "real data fields"):
		return "check the field names against the project's data dictionary"
	case strings.Contains(msg, `parameter "forms"`):
		return "check the form (instrument) names against the project"
	case strings.Contains(msg, `parameter "events"`), strings.Contains(msg, "redcap_event_name"):
		return "check the event names against the project's unique event names"
	}
	return ""
}

// cutOff reports an error body that began as REDCap's JSON or XML error
// and did not end as one: truncated on the way.
func cutOff(body []byte) bool {
	s := strings.TrimSpace(string(body))
	switch {
	case strings.HasPrefix(s, "{"):
		var v struct {
			Error *string `json:"error"`
		}
		return jsonUnmarshal([]byte(s), &v) != nil || v.Error == nil
	case strings.HasPrefix(s, "<?xml"):
		return !strings.Contains(s, "</error>") && !strings.Contains(s, "</hash>")
	}
	return false
}

// errorText extracts the message of a REDCap error body in any of its three
// shapes; html reports a web page (a proxy or a wrong URL).
func errorText(body []byte) (msg string, html bool) {
	s := strings.TrimSpace(string(body))
	switch {
	case s == "":
		return "", false
	case strings.HasPrefix(s, "{"):
		var v struct {
			Error *string `json:"error"`
		}
		if jsonUnmarshal([]byte(s), &v) == nil && v.Error != nil {
			return strings.TrimSpace(*v.Error), false
		}
	case strings.HasPrefix(s, "ERROR:"):
		return strings.TrimSpace(strings.TrimPrefix(s, "ERROR:")), false
	case strings.HasPrefix(s, "<?xml"):
		if i := strings.Index(s, "<error>"); i >= 0 {
			rest := s[i+len("<error>"):]
			if j := strings.Index(rest, "</error>"); j >= 0 {
				return xmlUnescape(rest[:j]), false
			}
		}
	}
	if looksHTML(s) {
		t := "the server answered with an HTML page"
		if title := htmlTitle(s); title != "" {
			t += " titled " + fmt.Sprintf("%q", title)
		}
		return t, true
	}
	if known := knownFailure(s); known != "" {
		return known, false
	}
	return truncate(s, 300), false
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func looksHTML(s string) bool {
	head := strings.ToLower(truncate(s, 512))
	return strings.HasPrefix(head, "<!doctype") || strings.HasPrefix(head, "<html") ||
		strings.HasPrefix(head, "<br") || strings.HasPrefix(head, "<b>") ||
		strings.Contains(head, "<html") || strings.Contains(head, "<body")
}

func htmlTitle(s string) string {
	l := strings.ToLower(s)
	i := strings.Index(l, "<title>")
	if i < 0 {
		return ""
	}
	j := strings.Index(l[i:], "</title>")
	if j < 0 {
		return ""
	}
	return truncate(strings.TrimSpace(s[i+7:i+j]), 120)
}

// knownFailure recognises REDCap's server-trouble texts that arrive with a
// 200 (looked for only in bodies that are not the expected answer, and only
// at their start, so that record values can never trigger it).
func knownFailure(s string) string {
	head := strings.ToLower(truncate(s, 2048))
	switch {
	case strings.Contains(head, "ran out of server memory"), strings.Contains(head, "allowed memory size"):
		return "REDCap ran out of server memory"
	case strings.Contains(head, "mysql"):
		return "REDCap's database is not answering (MySQL error)"
	}
	return ""
}

func xmlUnescape(s string) string {
	s = strings.TrimPrefix(strings.TrimSuffix(s, "]]>"), "<![CDATA[")
	r := strings.NewReplacer("&lt;", "<", "&gt;", ">", "&quot;", `"`, "&#039;", "'", "&apos;", "'", "&amp;", "&")
	return strings.TrimSpace(r.Replace(s))
}

// checkBody rejects 200 answers that are not what the call returns:
// empty, an HTML page, REDCap's memory or database texts, or not JSON.
func (c *Client) checkBody(call string, body []byte, want bodyKind) error {
	s := bytes.TrimSpace(body)
	if len(s) == 0 {
		return c.newError(call, http.StatusOK, KindTransient, "REDCap answered 200 with an empty body (server overloaded?)", "", nil)
	}
	switch want {
	case bodyJSON:
		if s[0] == '[' || s[0] == '{' {
			return nil
		}
	case bodyText:
		if !bytes.HasPrefix(s, []byte("<")) && knownFailure(string(s)) == "" && len(s) < 4096 {
			return nil
		}
	}
	str := string(s)
	switch {
	case looksHTML(str):
		msg, _ := errorText(s)
		if known := knownFailure(str); known != "" {
			msg = known + " (inside an HTML page)"
		}
		return c.newError(call, http.StatusOK, KindTransient, msg+" instead of an API answer", "a proxy, login page or PHP error is in the way; check the URL if it persists", nil)
	case knownFailure(str) != "":
		return c.newError(call, http.StatusOK, KindTransient, knownFailure(str), "export or import fewer records per call if it persists", nil)
	case strings.HasPrefix(str, "ERROR:"):
		return c.newError(call, http.StatusOK, KindTransient, truncate(strings.TrimSpace(strings.TrimPrefix(str, "ERROR:")), 300), "", nil)
	}
	return c.newError(call, http.StatusOK, KindTransient, "REDCap's answer is not in the expected format", "", nil)
}

// parseError is a 200 whose JSON does not decode: truncated or garbled.
func (c *Client) parseError(call string, err error) error {
	return c.newError(call, http.StatusOK, KindTransient, "REDCap's answer is not valid JSON (truncated?)", "", jsonErrNoValue(err))
}

// jsonErrNoValue keeps only the position/type of a JSON error: some
// encoding/json messages quote the offending text, which may be a value.
func jsonErrNoValue(err error) error {
	var se *jsonSyntaxError
	var te *jsonTypeError
	var re *rowSyntaxError
	switch {
	case errors.As(err, &re):
		return re // its texts are fixed, never data
	case errors.As(err, &se):
		return fmt.Errorf("JSON syntax error at byte %d", se.Offset)
	case errors.As(err, &te):
		return fmt.Errorf("JSON value of type %s at byte %d where %s was expected", te.Value, te.Offset, te.Type)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return errors.New("the JSON ends early")
	}
	return errors.New("JSON decode error")
}

// redactURL drops credentials and query strings from a URL before it goes
// into an error (someone may paste a token there).
func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		if i := strings.IndexAny(raw, "?@"); i >= 0 {
			return raw[:i] + "…"
		}
		return raw
	}
	u.User = nil
	if u.RawQuery != "" {
		u.RawQuery = "…"
	}
	return u.String()
}
