// Package policy is the IRB transfer policy: which forms and fields of a
// site's REDCap project may leave the site, and how each identifier is
// withheld or transformed on the way (drop, keyed hash, date shift, year,
// ZIP3, age cap, or keep with a written justification).
//
// It is deny by default: a field reaches the destination only when its form
// or the field itself is approved, and Compile refuses a policy when a field
// inside an approved form looks like an identifier (Identifier? flag,
// validation, date, free text, or a telling name) but no rule of the policy
// says what to do with it. Every transform is deterministic, so re-runs and
// replays give identical output; keyed transforms use the network's
// pseudonym key. No value ever appears in an error this package returns.
package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/redcap-relay/relay/services/internal/yamlcheck"
)

// Rule names.
const (
	Drop   = "drop"    // the field never leaves the site
	Hash   = "hash"    // keyed HMAC-SHA256 of the value, 16 hex characters
	Shift  = "shift"   // dates moved back by the record's keyed offset (0-364 days)
	Year   = "year"    // dates reduced to their year
	Zip3   = "zip3"    // US ZIP to its first 3 digits; low-population prefixes to 000
	CapAge = "cap_age" // ages of 90 and over become 90
	Keep   = "keep"    // unchanged; needs a justification
)

var ruleNames = []string{Drop, Hash, Shift, Year, Zip3, CapAge, Keep}

// Record-ID modes.
const (
	ModeNamespace = "namespace" // "<namespace>-<site record id>"
	ModeHMAC      = "hmac"      // "<namespace>-<keyed hash of the site record id>"
)

// Policy is one parsed transfer-policy file.
type Policy struct {
	// Name identifies the policy in reports.
	Name        string `yaml:"name"`
	Description string `yaml:"description"`
	// Approved lists what may leave the site. Everything else is denied.
	Approved Approved `yaml:"approved"`
	// RecordID says how the destination record ID is made.
	RecordID RecordIDSpec `yaml:"record_id"`
	// Dates is the default for date and datetime fields: shift, year, drop
	// or keep (keep needs a justification). Unset: every date field of an
	// approved form needs its own rule.
	Dates RuleSpec `yaml:"dates"`
	// SurveyTimestamps is the rule for <form>_timestamp columns (shift,
	// year, drop, keep). Unset means drop.
	SurveyTimestamps RuleSpec `yaml:"survey_timestamps"`
	// FreeText is the default for unvalidated text and notes fields: drop or
	// keep (with a justification). Unset: each needs its own rule.
	FreeText RuleSpec `yaml:"free_text"`
	// Rules decide single fields, validation types or forms.
	Rules []Rule `yaml:"rules"`
	// Rename maps site field names (or <form>_complete) to destination names.
	Rename map[string]string `yaml:"rename"`
	// Recode maps a field's site codes to the destination's codes.
	Recode map[string]map[string]string `yaml:"recode"`
	// SiteDAGs maps the site's data access groups (unique names) to the
	// destination's; a record in another group (or none) goes to the
	// site's dag from the network file. Set, it makes the exporter ask for
	// each record's DAG (exportDataAccessGroups), which needs the token's
	// Data Access Groups right.
	SiteDAGs map[string]string `yaml:"site_dags"`

	file    string
	version string
	lines   map[string]int // setting path -> line
}

// Approved is the allow-list.
type Approved struct {
	Forms  []string `yaml:"forms"`
	Fields []string `yaml:"fields"`
	// Events limits export to these unique event names (longitudinal
	// projects); empty means every event.
	Events []string `yaml:"events"`
}

// RecordIDSpec chooses the destination record ID.
type RecordIDSpec struct {
	Mode string `yaml:"mode"`
}

// RuleSpec is a rule written either as a word ("shift") or as a mapping
// with a justification ({rule: keep, justification: "..."}).
type RuleSpec struct {
	Rule          string `yaml:"rule"`
	Justification string `yaml:"justification"`
}

func (r *RuleSpec) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		r.Rule = n.Value
		return nil
	}
	type plain RuleSpec
	var p plain
	if err := n.Decode(&p); err != nil {
		return err
	}
	*r = RuleSpec(p)
	return nil
}

// IsSet reports whether the policy gave this default.
func (r RuleSpec) IsSet() bool { return r.Rule != "" }

// Rule is one entry of rules:. Exactly one selector (field/fields,
// validation, form) is given.
type Rule struct {
	// Field or Fields select fields by exact name.
	Field  string     `yaml:"field"`
	Fields StringList `yaml:"fields"`
	// Validation selects text fields by validation type; a trailing * is a
	// prefix match ("mrn_*", "phone*").
	Validation StringList `yaml:"validation"`
	// Form selects the detected identifiers of a form.
	Form          string `yaml:"form"`
	Rule          string `yaml:"rule"`
	Justification string `yaml:"justification"`
	// Note is free text for reviewers; it changes nothing.
	Note string `yaml:"note"`
	// For file-upload and signature fields kept (rule keep): the largest
	// file allowed, the MIME types or extensions allowed (empty = any), and
	// whether the file's original name may leave the site.
	MaxSize  ByteSize   `yaml:"max_size"`
	Types    StringList `yaml:"types"`
	KeepName bool       `yaml:"keep_name"`
}

// ByteSize is a size written as "20MB", "512KB", "1GiB" or a number of bytes.
type ByteSize int64

func (b *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	v, err := ParseByteSize(n.Value)
	if err != nil {
		return yamlcheck.Errorf(n, "%v", err)
	}
	*b = ByteSize(v)
	return nil
}

// ParseByteSize reads "20MB" (10^6), "20MiB" (2^20), "512KB", "1GB" or bytes.
func ParseByteSize(s string) (int64, error) {
	t := strings.ToUpper(strings.TrimSpace(s))
	units := []struct {
		suffix string
		mult   int64
	}{{"KIB", 1 << 10}, {"MIB", 1 << 20}, {"GIB", 1 << 30}, {"KB", 1000}, {"MB", 1000 * 1000}, {"GB", 1000 * 1000 * 1000}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseFloat(t, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("%q is not a size (use e.g. 20MB, 512KB)", s)
	}
	return int64(n * float64(mult)), nil
}

// StringList accepts "a" or [a, b].
type StringList []string

func (s *StringList) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.ScalarNode {
		*s = StringList{n.Value}
		return nil
	}
	var l []string
	if err := n.Decode(&l); err != nil {
		return err
	}
	*s = l
	return nil
}

func (r Rule) fieldNames() []string {
	out := append([]string(nil), r.Fields...)
	if r.Field != "" {
		out = append([]string{r.Field}, out...)
	}
	return out
}

func (r Rule) selector() string {
	switch {
	case r.Field != "" || len(r.Fields) > 0:
		return "field " + strings.Join(r.fieldNames(), ", ")
	case len(r.Validation) > 0:
		return "validation " + strings.Join(r.Validation, ", ")
	case r.Form != "":
		return "form " + r.Form
	}
	return "(no selector)"
}

// Problem is one mistake in a policy (or in how it fits a site).
type Problem struct {
	Line    int    // line in the policy file; 0 when unknown
	Setting string // e.g. rules[2].rule, or field ssn
	Message string
}

func (p Problem) String() string {
	if p.Line > 0 {
		return fmt.Sprintf("line %d: %s: %s", p.Line, p.Setting, p.Message)
	}
	return fmt.Sprintf("%s: %s", p.Setting, p.Message)
}

// Error lists every problem found, so one run of `relay policy explain` or
// one refused sync shows them all.
type Error struct {
	File     string
	Site     string // set by Compile
	What     string // "invalid policy", "policy refused"
	Problems []Problem
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Site != "" {
		b.WriteString(" for site " + e.Site)
	}
	fmt.Fprintf(&b, ": %s: %d problem(s):", e.What, len(e.Problems))
	for _, p := range e.Problems {
		b.WriteString("\n  - " + e.File)
		if p.Line > 0 {
			fmt.Fprintf(&b, ":%d", p.Line)
		}
		b.WriteString(": " + p.Setting + ": " + p.Message)
	}
	return b.String()
}

// Load reads and validates a policy file.
func Load(path string) (*Policy, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("policy file: %w", err)
	}
	return Parse(path, data)
}

// Parse validates a policy held in memory; name is used in messages.
func Parse(name string, data []byte) (*Policy, error) {
	fail := func(line int, setting, msg string) error {
		return &Error{File: name, What: "invalid policy", Problems: []Problem{{Line: line, Setting: setting, Message: msg}}}
	}
	p := &Policy{file: name, lines: map[string]int{}}
	root, decodeProblems := yamlcheck.Decode(data, p)
	if root == nil {
		return nil, &Error{File: name, What: "invalid policy", Problems: policyProblems(decodeProblems)}
	}
	if root.Kind == 0 || root.Kind == yaml.DocumentNode {
		return nil, fail(0, "(file)", "empty policy: a policy needs at least name and approved")
	}
	collectLines(root, "", p.lines)
	sum := sha256.Sum256(data)
	p.version = "sha256:" + hex.EncodeToString(sum[:])[:12]
	ps := policyProblems(decodeProblems)
	failed := map[string]bool{}
	for _, dp := range decodeProblems {
		failed[dp.Setting] = true
	}
	for _, vp := range p.validate() {
		if !failed[vp.Setting] {
			ps = append(ps, vp)
		}
	}
	if len(ps) > 0 {
		sort.SliceStable(ps, func(i, j int) bool { return ps[i].Line < ps[j].Line })
		return nil, &Error{File: name, What: "invalid policy", Problems: ps}
	}
	return p, nil
}

// policyProblems are the decoder's problems, pointing to the format.
func policyProblems(ps []yamlcheck.Problem) []Problem {
	out := make([]Problem, len(ps))
	for i, p := range ps {
		out[i] = Problem{Line: p.Line, Setting: p.Setting, Message: p.Message}
	}
	return out
}

var dagNameRE = regexp.MustCompile(`^[a-z0-9_]{1,100}$`)

// Version is the content hash of the policy file ("sha256:" + 12 hex
// digits). Any edit, comments included, is a new version: the file is the
// document the IRB approved.
func (p *Policy) Version() string { return p.version }

// File is the name the policy was loaded from.
func (p *Policy) File() string { return p.file }

// line returns the line of a setting path, falling back to its parents.
func (p *Policy) line(setting string) int {
	for s := setting; s != ""; {
		if l, ok := p.lines[s]; ok {
			return l
		}
		i := strings.LastIndexAny(s, ".[")
		if i < 0 {
			break
		}
		s = s[:i]
	}
	return 0
}

func (p *Policy) problem(setting, format string, a ...any) Problem {
	return Problem{Line: p.line(setting), Setting: setting, Message: fmt.Sprintf(format, a...)}
}

var (
	fieldNameRe = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	yamlLineRe  = regexp.MustCompile(`line (\d+)`)
)

func collectLines(n *yaml.Node, path string, out map[string]int) {
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i].Value
			sub := k
			if path != "" {
				sub = path + "." + k
			}
			out[sub] = n.Content[i].Line
			collectLines(n.Content[i+1], sub, out)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			sub := fmt.Sprintf("%s[%d]", path, i)
			out[sub] = c.Line
			collectLines(c, sub, out)
		}
	}
}

func isRule(s string) bool {
	for _, r := range ruleNames {
		if r == s {
			return true
		}
	}
	return false
}

// validate checks what can be checked without a site's dictionary.
func (p *Policy) validate() []Problem {
	var ps []Problem
	add := func(setting, format string, a ...any) { ps = append(ps, p.problem(setting, format, a...)) }
	for _, site := range sortedKeys(p.SiteDAGs) {
		if !dagNameRE.MatchString(site) {
			add("site_dags."+site, "%q is not a REDCap data access group's unique name (lowercase letters, digits, _)", site)
		}
		if d := p.SiteDAGs[site]; !dagNameRE.MatchString(d) {
			add("site_dags."+site, "%q is not a REDCap data access group's unique name (lowercase letters, digits, _)", d)
		}
	}
	if strings.TrimSpace(p.Name) == "" {
		add("name", "missing: give the policy a name (it appears in reports)")
	}
	if len(p.Approved.Forms) == 0 && len(p.Approved.Fields) == 0 {
		add("approved", "nothing approved: list approved.forms and/or approved.fields (everything else stays at the site)")
	}
	checkNames := func(setting string, names []string) {
		seen := map[string]bool{}
		for i, n := range names {
			s := fmt.Sprintf("%s[%d]", setting, i)
			if !fieldNameRe.MatchString(n) {
				add(s, "%q is not a REDCap name (lowercase letters, digits, _)", n)
			} else if seen[n] {
				add(s, "%q is listed twice", n)
			}
			seen[n] = true
		}
	}
	checkNames("approved.forms", p.Approved.Forms)
	checkNames("approved.fields", p.Approved.Fields)
	checkNames("approved.events", p.Approved.Events)
	switch p.RecordID.Mode {
	case "":
		p.RecordID.Mode = ModeNamespace
	case ModeNamespace, ModeHMAC:
	default:
		add("record_id.mode", "%q is not a mode: use namespace (\"<namespace>-<id>\") or hmac (keyed hash)", p.RecordID.Mode)
	}
	checkDefault := func(setting string, r RuleSpec, allowed ...string) {
		if !r.IsSet() {
			if r.Justification != "" {
				add(setting, "justification without rule")
			}
			return
		}
		ok := false
		for _, a := range allowed {
			ok = ok || a == r.Rule
		}
		if !ok {
			add(setting, "%q is not allowed here: use one of %s", r.Rule, strings.Join(allowed, ", "))
			return
		}
		if r.Rule == Keep && strings.TrimSpace(r.Justification) == "" {
			add(setting, "keep needs a justification: write it as {rule: keep, justification: \"why the IRB allows it\"}")
		}
	}
	checkDefault("dates", p.Dates, Shift, Year, Drop, Keep)
	checkDefault("survey_timestamps", p.SurveyTimestamps, Shift, Year, Drop, Keep)
	checkDefault("free_text", p.FreeText, Drop, Keep)
	for i, r := range p.Rules {
		s := fmt.Sprintf("rules[%d]", i)
		n := 0
		if r.Field != "" || len(r.Fields) > 0 {
			n++
		}
		if len(r.Validation) > 0 {
			n++
		}
		if r.Form != "" {
			n++
		}
		if n != 1 {
			add(s, "give exactly one of field/fields, validation or form (found %d)", n)
		}
		for j, f := range r.fieldNames() {
			if !fieldNameRe.MatchString(f) {
				add(fmt.Sprintf("%s.fields[%d]", s, j), "%q is not a REDCap field name", f)
			}
		}
		switch {
		case r.Rule == "":
			add(s+".rule", "missing: one of %s", strings.Join(ruleNames, ", "))
		case !isRule(r.Rule):
			add(s+".rule", "%q is not a rule: use one of %s", r.Rule, strings.Join(ruleNames, ", "))
		case r.Rule == Keep && strings.TrimSpace(r.Justification) == "":
			add(s+".justification", "keep needs a justification (why the IRB allows this field to leave the site unchanged)")
		}
	}
	// The same field named by two field rules is ambiguous.
	byField := map[string]int{}
	for i, r := range p.Rules {
		for _, f := range r.fieldNames() {
			if j, dup := byField[f]; dup {
				add(fmt.Sprintf("rules[%d]", i), "field %s already has a rule in rules[%d]", f, j)
			}
			byField[f] = i
		}
	}
	dests := map[string]string{}
	for _, src := range sortedKeys(p.Rename) {
		dst := p.Rename[src]
		s := "rename." + src
		if !fieldNameRe.MatchString(src) {
			add(s, "%q is not a REDCap field name", src)
		}
		if !fieldNameRe.MatchString(dst) {
			add(s, "destination name %q is not a REDCap field name (lowercase letters, digits, _)", dst)
		}
		if other, dup := dests[dst]; dup {
			add(s, "%s and %s would both be written to %s", other, src, dst)
		}
		dests[dst] = src
	}
	for _, f := range sortedKeys(p.Recode) {
		if len(p.Recode[f]) == 0 {
			add("recode."+f, "empty recode map")
		}
	}
	return ps
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// base is the file name used in short messages.
func (p *Policy) base() string { return filepath.Base(p.file) }
