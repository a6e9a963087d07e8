// Package protocol checks a site's REDCap project against the network's
// protocol: the core library of required instruments (as REDCap data
// dictionary CSVs), their allowed substitutes, instrument aliases, known
// variable-name corrections, and the planned events at which each instrument
// is collected. Items are found by name and by content (content.go), per
// definition (fields.go), across forms (instruments.go); events per item
// (events.go); type changes are graded by what REDCap stores (compare.go);
// renamed items become transfer-policy rules (harmonise.go).
//
// The protocol file is YAML (see library/heal-adult.yaml; `relay protocol
// write DIR` writes the built-in library out):
//
//	name: HEAL adult core library
//	version: "1.0.0"
//	tables:                        # optional; default: the embedded HEAL tables
//	  crf_ids: heal-crf-ids.csv    # instrument aliases (CRF Name, HEAL CDE CURIE, Other Names)
//	  corrections: heal-cde-corrections.csv
//	events:                        # planned timepoints; day and windows document the
//	                               # schedule (REDCap 14 exports no day offsets to check)
//	  - {name: baseline, label: Baseline, day: 0, window_before: 30, window_after: 0, match: [enrollment]}
//	instruments:                   # required
//	  - name: peg
//	    label: PEG
//	    crf: HEALCDE:peg           # row of the crf_ids/corrections tables
//	    dictionary: peg.csv        # REDCap data dictionary CSV (API or UI layout)
//	    form: peg                  # rows of that form (default: every row of the file)
//	    events: [baseline, month_3]
//	    substitutes: [bpi]         # names under substitutes:
//	    aliases: [pain_peg]        # extra instrument names accepted
//	    field_aliases: {pegavgpain: [peg_1]}
//	    repeating: false
//	    compare_labels: false      # our labels are paraphrases: do not warn on wording
//	substitutes:                   # allowed alternatives, same keys
//	  - {name: bpi, crf: "Brief Pain Inventory (BPI)", dictionary: bpi.csv}
//
// # Conformance score
//
// Each required instrument i gets s_i in [0,1]:
//
//	missing or broken protocol entry: s_i = 0
//	otherwise: s_i = 0.8 × fields_ok/fields_expected + 0.2 × events_mapped/events_planned
//	           − 0.1 per instrument-level error (e.g. repeating setup), floored at 0
//
// fields_ok counts the protocol's fields present at the site (under their own
// name, an accepted alias, or found by content under another name) without
// an error-level difference and collected at every planned event;
// events_mapped counts the planned events where every form holding the
// instrument's items is designated. The events term is 1 when no events are
// planned or the site's events are not known (a dictionary checked
// offline). The site score is 100 × the mean of
// s_i, rounded to one decimal. A site is conformant when it has no
// error-level finding (its score is then 100); warnings and infos never lower
// the score.
package protocol

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/redcap-relay/relay/messages"
)

// Protocol is a loaded protocol file.
type Protocol struct {
	Name        string
	Version     string
	Description string
	// Events are the planned timepoints, in protocol order.
	Events []PlannedEvent
	// Instruments are required; Substitutes are the allowed alternatives
	// they refer to by name.
	Instruments []Instrument
	Substitutes []Instrument
	// Arms, when set, are arm names every site must have.
	Arms []string
	// Problems are protocol entries that could not be loaded (an unknown
	// substitute or event, an unreadable or malformed dictionary). Check
	// reports each one in every site's report and checks the rest.
	Problems []string
	// Source is the file the protocol was loaded from.
	Source string

	crfs        map[string]crfRow
	corrections []Correction
}

// PlannedEvent is one timepoint of the protocol.
type PlannedEvent struct {
	Name  string `yaml:"name"`
	Label string `yaml:"label"`
	// Day is the target day after baseline; WindowBefore/After the allowed
	// days either side. They document the schedule; sites are not checked
	// against them (REDCap 14's event export has no day offsets).
	Day          int `yaml:"day"`
	WindowBefore int `yaml:"window_before"`
	WindowAfter  int `yaml:"window_after"`
	// Match lists site event names that mean this timepoint (compared
	// without case and punctuation, with or without the _arm_N suffix).
	Match []string `yaml:"match"`
	// Arm and Position (1-based, within the arm) pin a planned event of a
	// reference project (FromSnapshot), so that a site event with its
	// label in its place is recognised as renamed.
	Arm      int `yaml:"-"`
	Position int `yaml:"-"`
}

// Instrument is a required instrument or a substitute.
type Instrument struct {
	Name  string
	Label string
	// CRF is the instrument's key in the alias and correction tables (HEAL
	// CDE CURIE or CRF Name).
	CRF        string
	Dictionary string
	Fields     []messages.Field
	// Substitutes are names of Protocol.Substitutes accepted instead.
	Substitutes []string
	// Aliases are other names of the instrument (from the YAML and the CRF
	// table).
	Aliases []string
	// Events are the planned events at which it is collected.
	Events []PlannedEvent
	// FieldAliases maps a protocol field to other accepted names (from the
	// YAML and the corrections table).
	FieldAliases map[string][]string
	// Skip are protocol fields the corrections table says are not real.
	Skip          map[string]bool
	Repeating     bool
	CompareLabels bool
	// Problem is set when the entry could not be loaded.
	Problem string
}

// Correction is one row of the corrections table.
type Correction struct {
	CRF       string
	Incorrect string
	Correct   string // "SKIP": the variable does not exist
	Notes     string
}

type fileYAML struct {
	Name        string         `yaml:"name"`
	Version     string         `yaml:"version"`
	Description string         `yaml:"description"`
	Tables      tablesYAML     `yaml:"tables"`
	Arms        []string       `yaml:"arms"`
	Events      []PlannedEvent `yaml:"events"`
	Instruments []instYAML     `yaml:"instruments"`
	Substitutes []instYAML     `yaml:"substitutes"`
}

type tablesYAML struct {
	CRFIDs      string `yaml:"crf_ids"`
	Corrections string `yaml:"corrections"`
}

type instYAML struct {
	Name          string              `yaml:"name"`
	Label         string              `yaml:"label"`
	CRF           string              `yaml:"crf"`
	Dictionary    string              `yaml:"dictionary"`
	Form          string              `yaml:"form"`
	Events        []string            `yaml:"events"`
	Substitutes   []string            `yaml:"substitutes"`
	Aliases       []string            `yaml:"aliases"`
	FieldAliases  map[string][]string `yaml:"field_aliases"`
	Repeating     bool                `yaml:"repeating"`
	CompareLabels *bool               `yaml:"compare_labels"`
}

//go:embed data/heal-crf-ids.csv data/heal-cde-corrections.csv
var tablesFS embed.FS

//go:embed library
var libraryFS embed.FS

// HEALAdult returns the built-in HEAL adult core library (library/ in this
// package: heal-adult.yaml and its dictionaries; `relay protocol write`
// copies it out for editing).
func HEALAdult() (*Protocol, error) {
	p, err := LoadFS(LibraryFS(), "heal-adult.yaml")
	if p != nil {
		p.Source = "built-in HEAL adult core library"
	}
	return p, err
}

// LibraryFS holds the built-in library's files: heal-adult.yaml and the
// dictionaries under heal-adult/.
func LibraryFS() fs.FS {
	sub, err := fs.Sub(libraryFS, "library")
	if err != nil {
		panic("protocol: embedded library missing: " + err.Error())
	}
	return sub
}

// Load reads a protocol file; paths in it resolve against its folder.
func Load(p string) (*Protocol, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return nil, fmt.Errorf("protocol file %s: %w", p, err)
	}
	pr, err := LoadFS(os.DirFS(filepath.Dir(abs)), filepath.Base(abs))
	if pr != nil {
		pr.Source = p
	}
	return pr, err
}

// LoadFS reads a protocol file from a file system. File-level mistakes (not
// YAML, no name, no instruments, duplicate names) are errors; a broken
// instrument entry is recorded in Problems and on the instrument, so the
// rest of the protocol still checks.
func LoadFS(fsys fs.FS, name string) (*Protocol, error) {
	raw, err := fs.ReadFile(fsys, name)
	if err != nil {
		return nil, fmt.Errorf("protocol file %s: %w", name, err)
	}
	var f fileYAML
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("protocol file %s: %s", name, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	if strings.TrimSpace(f.Name) == "" {
		return nil, fmt.Errorf("protocol file %s: name is missing", name)
	}
	if strings.TrimSpace(f.Version) == "" {
		return nil, fmt.Errorf("protocol file %s: version is missing (reports say which protocol version a site was checked against)", name)
	}
	if len(f.Instruments) == 0 {
		return nil, fmt.Errorf("protocol file %s: no instruments (list the required instruments under the instruments key)", name)
	}
	p := &Protocol{Name: f.Name, Version: f.Version, Description: f.Description, Arms: f.Arms, Source: name}
	dir := path.Dir(name)
	readTable := func(setting, file, embedded string) ([]byte, error) {
		if file == "" {
			return tablesFS.ReadFile("data/" + embedded)
		}
		b, err := fs.ReadFile(fsys, path.Join(dir, file))
		if err != nil {
			return nil, fmt.Errorf("protocol file %s: tables.%s: %w", name, setting, err)
		}
		return b, nil
	}
	b, err := readTable("crf_ids", f.Tables.CRFIDs, "heal-crf-ids.csv")
	if err != nil {
		return nil, err
	}
	if p.crfs, err = parseCRFIDs(b); err != nil {
		return nil, fmt.Errorf("protocol file %s: tables.crf_ids: %w", name, err)
	}
	if b, err = readTable("corrections", f.Tables.Corrections, "heal-cde-corrections.csv"); err != nil {
		return nil, err
	}
	if p.corrections, err = parseCorrections(b); err != nil {
		return nil, fmt.Errorf("protocol file %s: tables.corrections: %w", name, err)
	}

	events := map[string]PlannedEvent{}
	for i, e := range f.Events {
		if e.Name == "" {
			return nil, fmt.Errorf("protocol file %s: events[%d]: name is missing", name, i)
		}
		if _, dup := events[e.Name]; dup {
			return nil, fmt.Errorf("protocol file %s: events[%d]: %q is listed twice", name, i, e.Name)
		}
		if e.Label == "" {
			e.Label = e.Name
		}
		events[e.Name] = e
		p.Events = append(p.Events, e)
	}
	names := map[string]string{}
	build := func(list []instYAML, section string) ([]Instrument, error) {
		var out []Instrument
		for i, y := range list {
			where := fmt.Sprintf("%s[%d]", section, i)
			if y.Name == "" {
				return nil, fmt.Errorf("protocol file %s: %s: name is missing", name, where)
			}
			if prev, dup := names[y.Name]; dup {
				return nil, fmt.Errorf("protocol file %s: %s: instrument %q is already defined in %s", name, where, y.Name, prev)
			}
			names[y.Name] = where
			in := p.buildInstrument(fsys, dir, y, events)
			if in.Problem != "" {
				p.Problems = append(p.Problems, fmt.Sprintf("%s (%s): %s", where, y.Name, in.Problem))
			}
			out = append(out, in)
		}
		return out, nil
	}
	if p.Instruments, err = build(f.Instruments, "instruments"); err != nil {
		return nil, err
	}
	if p.Substitutes, err = build(f.Substitutes, "substitutes"); err != nil {
		return nil, err
	}
	for i := range p.Instruments {
		in := &p.Instruments[i]
		for _, s := range in.Substitutes {
			if p.substitute(s) == nil {
				msg := fmt.Sprintf("substitute %q is not defined under substitutes:", s)
				in.Problem = joinProblem(in.Problem, msg)
				p.Problems = append(p.Problems, fmt.Sprintf("instruments[%d] (%s): %s", i, in.Name, msg))
			}
		}
	}
	return p, nil
}

func joinProblem(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

func (p *Protocol) buildInstrument(fsys fs.FS, dir string, y instYAML, events map[string]PlannedEvent) Instrument {
	in := Instrument{
		Name: y.Name, Label: y.Label, CRF: y.CRF, Dictionary: y.Dictionary,
		Substitutes: y.Substitutes, Repeating: y.Repeating, CompareLabels: true,
		FieldAliases: map[string][]string{}, Skip: map[string]bool{},
	}
	if y.CompareLabels != nil {
		in.CompareLabels = *y.CompareLabels
	}
	if in.Label == "" {
		in.Label = in.Name
	}
	var problems []string
	for _, e := range y.Events {
		pe, ok := events[e]
		if !ok {
			problems = append(problems, fmt.Sprintf("event %q is not one of the planned events under events:", e))
			continue
		}
		in.Events = append(in.Events, pe)
	}
	in.Aliases = append(in.Aliases, y.Aliases...)
	if y.CRF != "" {
		row, ok := p.crfs[strings.ToLower(y.CRF)]
		if !ok {
			problems = append(problems, fmt.Sprintf("crf %q is not in the CRF table (give its HEAL CDE CURIE or CRF Name)", y.CRF))
		} else {
			in.Aliases = append(in.Aliases, row.names()...)
		}
	}
	if y.Dictionary == "" {
		problems = append(problems, "no dictionary: give the instrument's REDCap data dictionary CSV")
	} else {
		b, err := fs.ReadFile(fsys, path.Join(dir, y.Dictionary))
		if err != nil {
			problems = append(problems, fmt.Sprintf("dictionary %s: %v", y.Dictionary, unwrapPath(err)))
		} else if fields, err := ParseDictionary(bytes.NewReader(b)); err != nil {
			problems = append(problems, fmt.Sprintf("dictionary %s: %v", y.Dictionary, err))
		} else {
			form := y.Form
			if form == "" && len(formsOf(fields)) > 1 {
				form = y.Name
			}
			for _, f := range fields {
				if form == "" || f.FormName == form {
					in.Fields = append(in.Fields, f)
				}
			}
			if len(in.Fields) == 0 {
				problems = append(problems, fmt.Sprintf("dictionary %s has no fields of form %q (set form:)", y.Dictionary, form))
			}
			for _, f := range in.Fields {
				if msg := choicesProblem(f); msg != "" {
					problems = append(problems, fmt.Sprintf("dictionary %s: field %s: %s", y.Dictionary, f.FieldName, msg))
				}
			}
		}
	}
	for f, as := range y.FieldAliases {
		in.FieldAliases[f] = append(in.FieldAliases[f], as...)
	}
	// Corrections: the incorrect and the correct name are both accepted for
	// a field of this CRF; "SKIP" means the variable does not exist.
	for _, c := range p.corrections {
		if y.CRF == "" || !strings.EqualFold(c.CRF, y.CRF) {
			continue
		}
		inc, cor := strings.ToLower(c.Incorrect), strings.ToLower(c.Correct)
		for _, f := range in.Fields {
			switch strings.ToLower(f.FieldName) {
			case inc:
				if c.Correct == "SKIP" {
					in.Skip[f.FieldName] = true
				} else {
					in.FieldAliases[f.FieldName] = append(in.FieldAliases[f.FieldName], cor)
				}
			case cor:
				in.FieldAliases[f.FieldName] = append(in.FieldAliases[f.FieldName], inc)
			}
		}
	}
	in.Aliases = dedupe(in.Aliases)
	in.Problem = strings.Join(problems, "; ")
	return in
}

func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func formsOf(fields []messages.Field) []string {
	seen := map[string]bool{}
	var out []string
	for _, f := range fields {
		if !seen[f.FormName] {
			seen[f.FormName] = true
			out = append(out, f.FormName)
		}
	}
	return out
}

func dedupe(xs []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, x := range xs {
		if x == "" || seen[x] {
			continue
		}
		seen[x] = true
		out = append(out, x)
	}
	return out
}

// Instrument returns a required instrument or a substitute by name.
func (p *Protocol) Instrument(name string) *Instrument {
	for i := range p.Instruments {
		if p.Instruments[i].Name == name {
			return &p.Instruments[i]
		}
	}
	return p.substitute(name)
}

func (p *Protocol) substitute(name string) *Instrument {
	for i := range p.Substitutes {
		if p.Substitutes[i].Name == name {
			return &p.Substitutes[i]
		}
	}
	return nil
}

// Err joins the protocol's Problems into one error (nil when none), for
// `relay config validate`.
func (p *Protocol) Err() error {
	if len(p.Problems) == 0 {
		return nil
	}
	ps := append([]string(nil), p.Problems...)
	sort.Strings(ps)
	return fmt.Errorf("protocol %s: %d problem(s):\n  - %s", p.Source, len(ps), strings.Join(ps, "\n  - "))
}
