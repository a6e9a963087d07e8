// Package config loads and validates the network file: the one YAML file that
// names the NATS connection, the destination REDCap, every site, their
// transfer policies and the protocol. Validation collects every mistake, each
// with its line and setting path, so `relay config validate` can list them all
// at once instead of failing on the first.
package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	"gopkg.in/yaml.v3"

	"github.com/redcap-relay/relay/services/internal/yamlcheck"
)

// Network is the whole network file.
type Network struct {
	NATS        NATS        `yaml:"nats"`
	Streams     Streams     `yaml:"streams"`
	Destination Destination `yaml:"destination"`
	Sites       []Site      `yaml:"sites"`
	// Protocol is the protocol (core library) file for the checker.
	Protocol string `yaml:"protocol"`
	// ReportsDir is where the checker writes its JSON/CSV/HTML reports.
	ReportsDir string `yaml:"reports_dir"`
	// PseudonymKey is the secret for keyed record-ID hashes and date shifts.
	PseudonymKey Secret `yaml:"pseudonym_key"`
	// Alerts is where the notifier sends alerts (alerts.go).
	Alerts Alerts `yaml:"alerts"`

	dir  string // folder of the file: relative paths resolve against it
	path string
}

// NATS says how services reach the broker.
type NATS struct {
	// URL of the NATS server; empty means "embedded" for `relay all`/`demo`.
	URL string `yaml:"url"`
	// User and Password (from a file or env var) for servers that require auth.
	User     string `yaml:"user"`
	Password Secret `yaml:"password"`
	// CAFile trusts a private CA for tls:// URLs.
	CAFile string `yaml:"ca_file"`
	// StoreDir is the embedded server's JetStream folder.
	StoreDir string `yaml:"store_dir"`
	// SyncInterval is how often the embedded server fsyncs its store: a
	// duration ("" = 2m, nats-server's default) or "always" (every write).
	SyncInterval string `yaml:"sync_interval"`
}

// Sync reads SyncInterval: always, or the interval (0: the server's default).
func (n NATS) Sync() (always bool, every time.Duration, err error) {
	switch v := strings.TrimSpace(n.SyncInterval); strings.ToLower(v) {
	case "":
		return false, 0, nil
	case "always":
		return true, 0, nil
	default:
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return false, 0, fmt.Errorf("%q: give \"always\" or a positive duration such as 2m or 10s", v)
		}
		return false, d, nil
	}
}

// Streams sets retention. Zero values take the defaults in Defaults().
type Streams struct {
	RawMaxAge       Duration `yaml:"raw_max_age"`   // RECORDS_RAW holds PHI: keep it short
	CleanMaxAge     Duration `yaml:"clean_max_age"` // the replay window
	AuditMaxAge     Duration `yaml:"audit_max_age"`
	DLQMaxAge       Duration `yaml:"dlq_max_age"`
	DedupeWindow    Duration `yaml:"dedupe_window"`
	RawMaxBytes     Bytes    `yaml:"raw_max_bytes"`   // shorthand for max_bytes.RECORDS_RAW
	CleanMaxBytes   Bytes    `yaml:"clean_max_bytes"` // shorthand for max_bytes.RECORDS_CLEAN
	MetadataPerSite int64    `yaml:"metadata_per_site"`
	// MaxBytes caps each stream and bucket by its stream name (RECORDS_RAW,
	// KV_relay_site_state, ...); unset ones take DefaultMaxBytes.
	MaxBytes MaxBytes `yaml:"max_bytes"`
	// Replicas for clustered NATS (1 for a single server).
	Replicas int `yaml:"replicas"`
	// How long a delivered message may stay unacked before JetStream
	// redelivers it (to another replica after a crash). A whole site run
	// happens inside one export request; the exporter sends a heartbeat
	// every quarter of export_ack_wait while it runs, so the wait is short
	// and export_run_timeout bounds the run.
	ExportAckWait    Duration `yaml:"export_ack_wait"`
	ExportRunTimeout Duration `yaml:"export_run_timeout"`
	TransformAckWait Duration `yaml:"transform_ack_wait"`
	ImportAckWait    Duration `yaml:"import_ack_wait"`
	CheckAckWait     Duration `yaml:"check_ack_wait"`
	// DeletedRetention is how long a record deleted at the destination is
	// kept (its destination rows) for `relay deletions restore`.
	DeletedRetention Duration `yaml:"deleted_retention"`
}

// DefaultStreams is every stream and timing setting at its default: the
// one place the pipeline's retention and ack waits are decided.
func DefaultStreams() Streams {
	var s Streams
	s.applyDefaults()
	return s
}

func (s *Streams) applyDefaults() {
	def := func(d *Duration, v time.Duration) {
		if *d == 0 {
			*d = Duration(v)
		}
	}
	def(&s.RawMaxAge, 72*time.Hour)
	def(&s.CleanMaxAge, 30*24*time.Hour)
	def(&s.AuditMaxAge, 365*24*time.Hour)
	def(&s.DLQMaxAge, 90*24*time.Hour)
	def(&s.DedupeWindow, 2*time.Hour)
	// A whole site run happens inside one export request, with a heartbeat
	// every quarter of the ack wait: a crashed exporter's run is taken over
	// after this, and export_run_timeout bounds the run.
	def(&s.ExportAckWait, 2*time.Minute)
	def(&s.ExportRunTimeout, 6*time.Hour)
	def(&s.TransformAckWait, 60*time.Second)
	// The importer marks batches in progress every third of it, so a short
	// wait costs nothing while the destination is down, and a crashed
	// importer's batches come back quickly.
	def(&s.ImportAckWait, time.Minute)
	def(&s.CheckAckWait, 10*time.Minute)
	def(&s.DeletedRetention, 30*24*time.Hour)
	if s.MetadataPerSite == 0 {
		s.MetadataPerSite = 10
	}
	if s.Replicas == 0 {
		s.Replicas = 1
	}
	s.applyByteDefaults()
}

// Destination is the coordinating center's REDCap.
type Destination struct {
	URL   string `yaml:"url"`
	Token Secret `yaml:"token"`
	// ExportToken is an optional read-only token (API Export right only)
	// for `relay export heal`; unset, that command uses Token.
	ExportToken Secret `yaml:"export_token"`
	// CAFile adds a trusted CA (PEM) for a private TLS certificate.
	CAFile string `yaml:"ca_file"`
	// BatchSize is the number of records of the first Import Records
	// calls; the importer then grows batches up to MaxBatchSize while
	// REDCap's fixed cost per call is a notable share of a call's time, and
	// halves them when REDCap runs out of memory or times out.
	BatchSize    int `yaml:"batch_size"`
	MaxBatchSize int `yaml:"max_batch_size"`
	// MaxRequestBytes caps one import call's body (PHP's post_max_size).
	MaxRequestBytes Bytes `yaml:"max_request_bytes"`
	// Concurrency is how many import calls may run at once.
	Concurrency int `yaml:"concurrency"`
	// OverwriteBlanks sends overwriteBehavior=overwrite: a blank value at the
	// site then erases the destination's value. Off by default.
	OverwriteBlanks bool     `yaml:"overwrite_blanks"`
	CallsPerMinute  int      `yaml:"calls_per_minute"`
	Timeout         Duration `yaml:"timeout"`
}

// ReadExportToken returns the token `relay export heal` reads the
// destination with: ExportToken when set, else Token. The error names the
// setting and the source, never the value.
func (d Destination) ReadExportToken() (string, error) {
	setting, s := "destination.export_token", d.ExportToken
	if !s.IsSet() {
		setting, s = "destination.token", d.Token
	}
	v, err := s.Read()
	if err != nil {
		return "", fmt.Errorf("%s (%s): %w", setting, s, err)
	}
	return v, nil
}

// Site is one remote REDCap project.
type Site struct {
	// ID names the site in subjects, keys and reports: lowercase letters,
	// digits, '-' and '_'.
	ID   string `yaml:"id"`
	Name string `yaml:"name"`
	URL  string `yaml:"url"`
	// Token is the site's API token, from a file or an env var only.
	Token Secret `yaml:"token"`
	// Schedule is a cron expression (5 fields, or @daily/@every 1h...).
	Schedule string `yaml:"schedule"`
	TimeZone string `yaml:"time_zone"`
	// ServerTimeZone is the REDCap server's clock zone, used for
	// changed-since queries (REDCap reads them as server-local time);
	// default TimeZone.
	ServerTimeZone string `yaml:"server_time_zone"`
	// Policy is the transfer policy file (YAML) the IRB approved for the site.
	Policy string `yaml:"policy"`
	// Namespace prefixes the site's record IDs at the destination
	// ("<namespace>-<id>"), so two sites' record 1 never collide.
	Namespace string `yaml:"namespace"`
	// DAG is the destination data access group the site's records go to.
	DAG string `yaml:"dag"`
	// PropagateDeletions deletes at the destination what the site deleted.
	PropagateDeletions bool `yaml:"propagate_deletions"`
	// DeletionDelay is how long a record must stay gone before it is
	// deleted at the destination: "run" (absent in the next run as well,
	// the default), "none", or a duration such as 24h.
	DeletionDelay DeletionDelay `yaml:"deletion_delay"`
	// MaxDeletionsPerRun holds every deletion of a run that would delete
	// more records than this (a number, or a share such as "2%" of the
	// site's records); default 2%, at least 5.
	MaxDeletionsPerRun Limit `yaml:"max_deletions_per_run"`
	// BatchSize is the number of records per Export Records call.
	BatchSize int `yaml:"batch_size"`
	// ExportConcurrency is how many Export Records calls run at once for
	// the site (the rate limit still applies).
	ExportConcurrency int      `yaml:"export_concurrency"`
	CallsPerMinute    int      `yaml:"calls_per_minute"`
	CAFile            string   `yaml:"ca_file"`
	Timeout           Duration `yaml:"timeout"`
	// Overlap is subtracted from the changed-since cursor, so clock skew
	// between the site and us cannot hide a change.
	Overlap Duration `yaml:"overlap"`
	// FullEvery forces a full export when the last full one is older.
	FullEvery Duration `yaml:"full_every"`
	// VerifyEvery is how often the site is compared with the destination
	// (`relay verify`, run by the ticker and the verifier service): default
	// weekly, 0 turns it off.
	VerifyEvery *Duration `yaml:"verify_every"`
	// VerifyRepair repairs what a scheduled verification finds.
	VerifyRepair bool `yaml:"verify_repair"`
	// RetryFor is how long one run may spend retrying failed calls to the
	// site (or the destination check) before it fails with the cause; the
	// next scheduled run tries again.
	RetryFor Duration `yaml:"retry_for"`
}

// DefaultVerifyEvery is a site's verify_every when the network file is silent.
const DefaultVerifyEvery = 7 * 24 * time.Hour

// VerifyInterval is the site's verify_every (0: scheduled verification off).
func (s *Site) VerifyInterval() time.Duration {
	if s.VerifyEvery == nil {
		return DefaultVerifyEvery
	}
	return s.VerifyEvery.D()
}

// Secret is read from a file or an environment variable, never written in
// the network file itself.
type Secret struct {
	File string `yaml:"file"`
	Env  string `yaml:"env"`
}

// IsSet reports whether the secret has a source.
func (s Secret) IsSet() bool { return s.File != "" || s.Env != "" }

// Read returns the secret's value, trimmed. Errors name the source, never the value.
func (s Secret) Read() (string, error) {
	switch {
	case s.File != "":
		b, err := os.ReadFile(s.File)
		if err != nil {
			return "", fmt.Errorf("read secret file %s: %w", s.File, errors.Unwrap(err))
		}
		v := strings.TrimSpace(string(b))
		if v == "" {
			return "", fmt.Errorf("secret file %s is empty", s.File)
		}
		return v, nil
	case s.Env != "":
		v := strings.TrimSpace(os.Getenv(s.Env))
		if v == "" {
			return "", fmt.Errorf("environment variable %s is not set", s.Env)
		}
		return v, nil
	}
	return "", errors.New("no secret source: set file or env")
}

func (s Secret) String() string {
	if s.File != "" {
		return "file " + s.File
	}
	return "env " + s.Env
}

// Duration is a time.Duration written as "90s", "72h".
type Duration time.Duration

func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return yamlcheck.Errorf(n, "%q is not a duration (use e.g. 90s, 15m, 72h)", n.Value)
	}
	*d = Duration(v)
	return nil
}

func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Deletion delay modes.
const (
	DelayRun  = "run"  // absent in a later run too
	DelayNone = "none" // carried out once a direct export confirms it
	DelayFor  = "for"  // absent for at least DeletionDelay.For
)

// DeletionDelay is a site's deletion_delay.
type DeletionDelay struct {
	Mode string
	For  time.Duration
}

func (d *DeletionDelay) UnmarshalYAML(n *yaml.Node) error {
	switch v := strings.TrimSpace(n.Value); v {
	case DelayRun, "":
		*d = DeletionDelay{Mode: DelayRun}
	case DelayNone, "0":
		*d = DeletionDelay{Mode: DelayNone}
	default:
		t, err := time.ParseDuration(v)
		if err != nil || t <= 0 {
			return yamlcheck.Errorf(n, "%q is not a deletion delay (use run, none, or a duration such as 24h)", v)
		}
		*d = DeletionDelay{Mode: DelayFor, For: t}
	}
	return nil
}

func (d DeletionDelay) String() string {
	if d.Mode == DelayFor {
		return d.For.String()
	}
	return d.Mode
}

// Limit is a count, or a share of a total with a floor ("2%": 2 percent,
// and never fewer than AtLeast).
type Limit struct {
	Count   int
	Percent float64
	AtLeast int
}

func (l *Limit) UnmarshalYAML(n *yaml.Node) error {
	v := strings.TrimSpace(n.Value)
	if p, ok := strings.CutSuffix(v, "%"); ok {
		f, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || f <= 0 || f > 100 {
			return yamlcheck.Errorf(n, "%q is not a share of records (use e.g. 2%%)", v)
		}
		*l = Limit{Percent: f, AtLeast: 1}
		return nil
	}
	c, err := strconv.Atoi(v)
	if err != nil || c < 0 {
		return yamlcheck.Errorf(n, "%q is not a number of records or a share such as 2%%", v)
	}
	*l = Limit{Count: c}
	return nil
}

// Of is the limit for a total.
func (l Limit) Of(total int) int {
	if l.Percent == 0 {
		return l.Count
	}
	return max(l.AtLeast, int(float64(total)*l.Percent/100))
}

func (l Limit) String() string {
	if l.Percent == 0 {
		return strconv.Itoa(l.Count)
	}
	return strconv.FormatFloat(l.Percent, 'f', -1, 64) + "% (at least " + strconv.Itoa(l.AtLeast) + ")"
}

// Defaults, applied to zero values after loading.
const (
	// REDCapR exports 100 records a call; every REDCap call costs a fixed
	// 0.2-1 s, so fewer, larger calls win while a batch stays far below
	// what a REDCap server handles in one answer.
	DefaultSiteBatchSize   = 250
	DefaultExportConc      = 2
	DefaultCallsPerMinute  = 300 // half of REDCap's 600/minute IP ban
	DefaultImportBatchSize = 500
	DefaultMaxImportBatch  = 5000
	// DefaultMaxRequestBytes is below PHP's default post_max_size (8M).
	DefaultMaxRequestBytes = 7 << 20
	DefaultImportConc      = 4
	DefaultSchedule        = "@daily"
)

func (n *Network) applyDefaults() {
	n.Streams.applyDefaults()
	n.Alerts.applyDefaults()
	def := func(d *Duration, v time.Duration) {
		if *d == 0 {
			*d = Duration(v)
		}
	}
	d := &n.Destination
	if d.BatchSize == 0 {
		d.BatchSize = DefaultImportBatchSize
	}
	if d.Concurrency == 0 {
		d.Concurrency = DefaultImportConc
	}
	if d.MaxBatchSize == 0 {
		d.MaxBatchSize = max(DefaultMaxImportBatch, d.BatchSize)
	}
	if d.MaxRequestBytes == 0 {
		d.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if d.CallsPerMinute == 0 {
		d.CallsPerMinute = DefaultCallsPerMinute
	}
	def(&d.Timeout, 5*time.Minute)
	for i := range n.Sites {
		st := &n.Sites[i]
		if st.Name == "" {
			st.Name = st.ID
		}
		if st.Schedule == "" {
			st.Schedule = DefaultSchedule
		}
		if st.TimeZone == "" {
			st.TimeZone = "UTC"
		}
		if st.ServerTimeZone == "" {
			st.ServerTimeZone = st.TimeZone
		}
		if st.Namespace == "" {
			st.Namespace = st.ID
		}
		if st.BatchSize == 0 {
			st.BatchSize = DefaultSiteBatchSize
		}
		if st.ExportConcurrency == 0 {
			st.ExportConcurrency = DefaultExportConc
		}
		if st.CallsPerMinute == 0 {
			st.CallsPerMinute = DefaultCallsPerMinute
		}
		def(&st.Timeout, 5*time.Minute)
		def(&st.Overlap, 5*time.Minute)
		def(&st.FullEvery, 7*24*time.Hour)
		if st.VerifyEvery == nil {
			w := Duration(DefaultVerifyEvery)
			st.VerifyEvery = &w
		}
		def(&st.RetryFor, 15*time.Minute)
		if st.DeletionDelay.Mode == "" {
			st.DeletionDelay.Mode = DelayRun
		}
		if st.MaxDeletionsPerRun == (Limit{}) {
			st.MaxDeletionsPerRun = Limit{Percent: 2, AtLeast: 5}
		}
	}
}

// Problem is one mistake in the network file.
type Problem struct {
	Line    int    // 0 when unknown
	Setting string // e.g. sites[1].schedule
	Message string
}

func (p Problem) String() string {
	if p.Line > 0 {
		return fmt.Sprintf("line %d: %s: %s", p.Line, p.Setting, p.Message)
	}
	return fmt.Sprintf("%s: %s", p.Setting, p.Message)
}

// Error lists every problem found in one file.
type Error struct {
	Path     string
	Problems []Problem
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: %d problem(s):", e.Path, len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n  - " + p.String())
	}
	return b.String()
}

// Load reads, defaults and validates a network file. Relative paths in it
// (policies, protocol, token files, CA files, reports) resolve against the
// file's folder. Secrets are checked for presence, so a missing token file is
// reported at start-up rather than at the first run.
func Load(path string) (*Network, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("network file: %w", err)
	}
	return Parse(path, raw)
}

// Parse is Load on bytes already read; path is used for messages and to
// resolve relative paths.
func Parse(path string, raw []byte) (*Network, error) {
	n := &Network{path: path, dir: filepath.Dir(path)}
	root, problems := yamlcheck.Decode(raw, n)
	if root == nil { // not YAML at all
		return nil, &Error{Path: path, Problems: fromChecks(problems)}
	}
	n.applyDefaults()
	n.resolvePaths()
	decoded := map[string]bool{} // a setting that did not decode is not validated again
	for _, p := range problems {
		decoded[p.Setting] = true
	}
	for _, p := range n.validate() {
		if decoded[p.Setting] {
			continue
		}
		p.Line = yamlcheck.LineOf(root, p.Setting)
		problems = append(problems, yamlcheck.Problem(p))
	}
	if len(problems) > 0 {
		sort.SliceStable(problems, func(i, j int) bool { return problems[i].Line < problems[j].Line })
		return n, &Error{Path: path, Problems: fromChecks(problems)}
	}
	return n, nil
}

func fromChecks(ps []yamlcheck.Problem) []Problem {
	out := make([]Problem, len(ps))
	for i, p := range ps {
		out[i] = Problem(p)
	}
	return out
}

// Path is the file the network was loaded from.
func (n *Network) Path() string { return n.path }

// Site returns the site with the given ID.
func (n *Network) Site(id string) (*Site, bool) {
	for i := range n.Sites {
		if n.Sites[i].ID == id {
			return &n.Sites[i], true
		}
	}
	return nil, false
}

// SiteIDs lists the site IDs in file order.
func (n *Network) SiteIDs() []string {
	ids := make([]string, len(n.Sites))
	for i, s := range n.Sites {
		ids[i] = s.ID
	}
	return ids
}

// Location returns the site's schedule time zone.
func (s *Site) Location() *time.Location {
	loc, err := time.LoadLocation(s.TimeZone)
	if err != nil {
		return time.UTC
	}
	return loc
}

// ServerLocation is the REDCap server's time zone.
func (s *Site) ServerLocation() *time.Location {
	loc, err := time.LoadLocation(s.ServerTimeZone)
	if err != nil {
		return time.UTC
	}
	return loc
}

// ParseSchedule parses the site's cron schedule in its time zone.
func (s *Site) ParseSchedule() (cron.Schedule, error) {
	return cronParser.Parse("CRON_TZ=" + s.TimeZone + " " + s.Schedule)
}

var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

func (n *Network) resolvePaths() {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(n.dir, *p)
		}
	}
	abs(&n.Protocol)
	abs(&n.ReportsDir)
	n.Alerts.resolvePaths(abs)
	abs(&n.PseudonymKey.File)
	abs(&n.NATS.Password.File)
	abs(&n.NATS.CAFile)
	abs(&n.NATS.StoreDir)
	abs(&n.Destination.Token.File)
	abs(&n.Destination.ExportToken.File)
	abs(&n.Destination.CAFile)
	for i := range n.Sites {
		s := &n.Sites[i]
		abs(&s.Token.File)
		abs(&s.Policy)
		abs(&s.CAFile)
	}
}

var (
	siteIDRe    = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	namespaceRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,30}$`)
)

func (n *Network) validate() []Problem {
	var ps []Problem
	add := func(setting, format string, a ...any) {
		ps = append(ps, Problem{Setting: setting, Message: fmt.Sprintf(format, a...)})
	}
	checkURL := func(setting, u string) {
		switch {
		case u == "":
			add(setting, "missing: the REDCap API URL, e.g. https://redcap.example.org/api/")
		case !strings.HasPrefix(u, "https://") && !strings.HasPrefix(u, "http://"):
			add(setting, "%q must start with https:// (or http:// for a local simulator)", u)
		case !strings.HasSuffix(strings.TrimRight(u, "/"), "/api"):
			add(setting, "%q should end in /api/ (REDCap's API endpoint)", u)
		}
	}
	// Secrets are checked for shape here; whether they can be read is
	// checked by the service that needs each one (a transformer container
	// holds no token at all) and by CheckSecrets (`relay config validate`).
	checkSecret := func(setting string, s Secret, what string) {
		if !s.IsSet() {
			add(setting, "missing: give %s as file: <path> or env: <VAR> (never in this file)", what)
			return
		}
		if s.File != "" && s.Env != "" {
			add(setting, "give either file or env, not both")
		}
	}
	checkFile := func(setting, p string) {
		if p == "" {
			return
		}
		if _, err := os.Stat(p); err != nil {
			add(setting, "file %s: %v", p, errors.Unwrap(err))
		}
	}
	checkURL("destination.url", n.Destination.URL)
	checkSecret("destination.token", n.Destination.Token, "the destination's API token")
	if n.Destination.ExportToken.File != "" && n.Destination.ExportToken.Env != "" {
		add("destination.export_token", "give either file or env, not both")
	}
	checkFile("destination.ca_file", n.Destination.CAFile)
	if n.Destination.BatchSize < 1 || n.Destination.BatchSize > 5000 {
		add("destination.batch_size", "%d is out of range 1..5000", n.Destination.BatchSize)
	}
	if n.Destination.MaxBatchSize < n.Destination.BatchSize || n.Destination.MaxBatchSize > 5000 {
		add("destination.max_batch_size", "%d is out of range %d (batch_size)..5000", n.Destination.MaxBatchSize, n.Destination.BatchSize)
	}
	if n.Destination.MaxRequestBytes < 1<<20 {
		add("destination.max_request_bytes", "%d bytes is too small for an import call (at least 1MiB; REDCap servers take 8MB or more, PHP's post_max_size)", n.Destination.MaxRequestBytes)
	}
	if n.Destination.Concurrency < 1 || n.Destination.Concurrency > 32 {
		add("destination.concurrency", "%d is out of range 1..32", n.Destination.Concurrency)
	}
	if n.Destination.CallsPerMinute > 599 {
		add("destination.calls_per_minute", "%d would reach REDCap's IP ban at 600 calls/minute; use 500 or less", n.Destination.CallsPerMinute)
	}
	if len(n.Sites) == 0 {
		add("sites", "no sites: list at least one remote REDCap project")
	}
	if n.PseudonymKey.IsSet() {
		checkSecret("pseudonym_key", n.PseudonymKey, "the pseudonym key")
	}
	checkFile("protocol", n.Protocol)
	checkFile("nats.ca_file", n.NATS.CAFile)
	if _, _, err := n.NATS.Sync(); err != nil {
		add("nats.sync_interval", "%v", err)
	}
	if n.NATS.User != "" {
		checkSecret("nats.password", n.NATS.Password, "the NATS password")
	}
	if n.Streams.ExportRunTimeout.D() <= n.Streams.ExportAckWait.D() {
		add("streams.export_run_timeout", "%s must be longer than streams.export_ack_wait %s", n.Streams.ExportRunTimeout.D(), n.Streams.ExportAckWait.D())
	}
	if n.Streams.DedupeWindow.D() > n.Streams.RawMaxAge.D() {
		add("streams.dedupe_window", "%s is longer than streams.raw_max_age %s", n.Streams.DedupeWindow.D(), n.Streams.RawMaxAge.D())
	}
	n.Streams.validateBytes(add)
	seen := map[string]int{}
	seenNS := map[string]string{}
	for i, s := range n.Sites {
		p := "sites[" + s.label(i) + "]"
		if !siteIDRe.MatchString(s.ID) {
			add(p+".id", "%q must be 1-63 lowercase letters, digits, '-' or '_' (it is used in NATS subjects)", s.ID)
		} else if j, dup := seen[s.ID]; dup {
			add(fmt.Sprintf("sites[%d].id", i), "%q is already the ID of the site at position %d: every site needs its own", s.ID, j+1)
		} else {
			seen[s.ID] = i
		}
		checkURL(p+".url", s.URL)
		checkSecret(p+".token", s.Token, "the site's API token")
		checkFile(p+".ca_file", s.CAFile)
		zoneOK := true
		if _, err := time.LoadLocation(s.TimeZone); err != nil {
			add(p+".time_zone", "%q is not a known time zone (use e.g. America/New_York)", s.TimeZone)
			zoneOK = false
		}
		if _, err := time.LoadLocation(s.ServerTimeZone); err != nil && s.ServerTimeZone != s.TimeZone {
			add(p+".server_time_zone", "%q is not a known time zone", s.ServerTimeZone)
		}
		// A bad time zone must not hide a bad schedule: check it in UTC.
		check := s
		if !zoneOK {
			check.TimeZone = "UTC"
		}
		if _, err := check.ParseSchedule(); err != nil {
			add(p+".schedule", "%q is not a cron schedule: %v (use e.g. \"0 2 * * *\" or @daily)", s.Schedule, err)
		}
		if s.Policy == "" {
			add(p+".policy", "missing: every site needs the transfer policy its IRB approved (deny by default)")
		} else {
			checkFile(p+".policy", s.Policy)
		}
		if !namespaceRe.MatchString(s.Namespace) {
			add(p+".namespace", "%q must be letters, digits, '-' or '_' (it prefixes record IDs)", s.Namespace)
		} else if other, dup := seenNS[s.Namespace]; dup {
			add(p+".namespace", "%q is already used by site %s: record IDs would collide", s.Namespace, other)
		} else {
			seenNS[s.Namespace] = s.label(i)
		}
		if v := s.VerifyInterval(); v < 0 || (v > 0 && v < time.Hour) {
			add(p+".verify_every", "%s must be 0 (off) or at least 1h: a verification exports the whole site", v)
		}
		if s.VerifyRepair && s.VerifyInterval() == 0 {
			add(p+".verify_repair", "true has no effect while verify_every is 0 (off)")
		}
		if s.BatchSize < 1 || s.BatchSize > 5000 {
			add(p+".batch_size", "%d is out of range 1..5000", s.BatchSize)
		}
		if s.ExportConcurrency < 1 || s.ExportConcurrency > 8 {
			add(p+".export_concurrency", "%d is out of range 1..8", s.ExportConcurrency)
		}
		if s.CallsPerMinute > 599 {
			add(p+".calls_per_minute", "%d would reach REDCap's IP ban at 600 calls/minute; use 500 or less", s.CallsPerMinute)
		}
	}
	return append(ps, n.Alerts.problems(checkFile)...)
}

// Needs says which secrets a process reads: each service reads only its
// own (a transformer container holds no token at all).
type Needs struct {
	SiteTokens, DestinationToken, ExportToken, PseudonymKey, NATSPassword, AlertSecrets bool
}

// AllSecrets is every secret the network file names (`relay all`, `relay
// config validate`).
var AllSecrets = Needs{SiteTokens: true, DestinationToken: true, ExportToken: true, PseudonymKey: true, NATSPassword: true, AlertSecrets: true}

// CheckSecrets reads every secret the network file names and reports those
// that cannot be read (never their values).
func (n *Network) CheckSecrets() []Problem { return n.CheckSecretsOf(AllSecrets) }

// CheckSecretsOf reads the secrets a process needs and reports every one
// that cannot be read, so a service refuses to start with the full list
// instead of failing at a site's first run at 3 am.
func (n *Network) CheckSecretsOf(need Needs) []Problem {
	var ps []Problem
	check := func(setting string, s Secret) {
		if !s.IsSet() {
			return
		}
		if _, err := s.Read(); err != nil {
			ps = append(ps, Problem{Setting: setting, Message: err.Error()})
		}
	}
	if need.DestinationToken {
		check("destination.token", n.Destination.Token)
	}
	if need.ExportToken {
		check("destination.export_token", n.Destination.ExportToken)
	}
	if need.PseudonymKey {
		check("pseudonym_key", n.PseudonymKey)
	}
	if need.NATSPassword && n.NATS.User != "" {
		check("nats.password", n.NATS.Password)
	}
	if need.SiteTokens {
		for _, s := range n.Sites {
			check(siteSetting(s, "token"), s.Token)
		}
	}
	if need.AlertSecrets {
		for _, setting := range sortedKeys(n.Alerts.Secrets()) {
			check(setting, n.Alerts.Secrets()[setting])
		}
	}
	return ps
}

// siteSetting names a site's setting by the site's ID.
func siteSetting(s Site, key string) string { return "sites[" + s.label(-1) + "]." + key }

// label is how settings name a site: by its ID, else by its position.
func (s Site) label(i int) string {
	if s.ID != "" {
		return s.ID
	}
	return strconv.Itoa(i)
}
