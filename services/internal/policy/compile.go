package policy

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/phi"
)

// Options bind a policy to one site.
type Options struct {
	Site      string
	Namespace string // record-ID prefix; defaults to Site
	DAG       string // destination data access group ("" = none)
	// Key is the pseudonym key (network pseudonym_key). Required only when
	// a keyed rule is used: hash, shift, or record_id mode hmac.
	Key []byte
}

// Decision is what happens to one field of a site's dictionary, and why.
type Decision struct {
	Field      string `json:"field"`
	Form       string `json:"form"`
	Type       string `json:"type"`
	Validation string `json:"validation,omitempty"`
	Approved   bool   `json:"approved"`
	// Detected lists why the field looks like an identifier.
	Detected []Detection `json:"-"`
	Reasons  []string    `json:"detected,omitempty"`
	// Action is the rule applied: keep, drop, hash, shift, year, zip3,
	// cap_age, or record_id.
	Action string `json:"action"`
	// Dest is the destination field name ("" when dropped).
	Dest string `json:"dest,omitempty"`
	// By names the policy setting that decides, e.g. "rules[3] (field zip)".
	By   string `json:"by"`
	Line int    `json:"line,omitempty"`
	// Justification of a keep.
	Justification string `json:"justification,omitempty"`
	// Problem is why Compile refuses this field ("" when it is fine).
	Problem string `json:"problem,omitempty"`
}

// Dropped reports whether the field does not reach the destination.
func (d Decision) Dropped() bool { return d.Action == Drop }

const actionRecordID = "record_id"

// fieldPlan is the compiled decision for one dictionary field.
type fieldPlan struct {
	name     string
	dest     string
	action   string
	kind     dateKind
	field    messages.Field
	recode   map[string]string
	checkbox bool
}

// colPlan maps one export column to its plan.
type colPlan struct {
	fp   *fieldPlan
	dest string // destination column
	code string // checkbox code (source), "" otherwise
}

// Compiled is a policy bound to one site's dictionary and options; it is
// safe for concurrent use.
type Compiled struct {
	policy       *Policy
	opts         Options
	version      string
	idField      string
	idDest       string
	recordMode   string
	plans        []*fieldPlan
	cols         map[string]*colPlan // export column -> plan (kept columns only)
	dropped      map[string]bool     // known dropped columns (for checkbox prefix lookups)
	forms        map[string]bool     // approved forms
	repeatForms  map[string]bool     // forms whose repeating rows may leave
	completeDest map[string]string   // <form>_complete -> destination column
	tsForms      map[string]bool     // forms whose <form>_timestamp may leave
	events       map[string]bool     // nil = all
	exportFields []string
	exportEvents []string
	decisions    []Decision
	tsRule       string
	files        []FilePlan
	filesBy      map[string]FilePlan // site field -> its plan
}

// Explain says, per field of the site's dictionary, what the policy does
// with it and which setting decides. Fields Compile would refuse carry a
// Problem. Policy-level problems (unknown forms, missing key) are reported
// by Compile.
func Explain(p *Policy, meta *messages.MetadataSnapshot, opts Options) []Decision {
	c, _ := compile(p, meta, opts)
	return c.decisions
}

// Compile binds a policy to a site's metadata. It refuses, listing every
// problem at once, when a detected identifier inside an approved form has no
// explicit rule, when the policy names forms, fields or events the site's
// dictionary does not have (schema drift), or when a keyed rule has no key.
func Compile(p *Policy, meta *messages.MetadataSnapshot, opts Options) (*Compiled, error) {
	c, ps := compile(p, meta, opts)
	if len(ps) > 0 {
		return nil, &Error{File: p.file, Site: opts.Site, What: "policy refused", Problems: ps}
	}
	return c, nil
}

func compile(p *Policy, meta *messages.MetadataSnapshot, opts Options) (*Compiled, []Problem) {
	if opts.Namespace == "" {
		opts.Namespace = opts.Site
	}
	c := &Compiled{
		policy: p, opts: opts, recordMode: p.RecordID.Mode,
		cols: map[string]*colPlan{}, dropped: map[string]bool{}, forms: map[string]bool{},
		repeatForms: map[string]bool{}, completeDest: map[string]string{}, tsForms: map[string]bool{},
		filesBy: map[string]FilePlan{},
	}
	var ps []Problem
	add := func(setting, format string, a ...any) { ps = append(ps, p.problem(setting, format, a...)) }
	if meta == nil || len(meta.Fields) == 0 {
		add("(site)", "the site's data dictionary is empty: cannot check the policy against it")
		return c, ps
	}
	keyed := func(setting, what string) {
		if len(opts.Key) == 0 {
			add(setting, "%s needs the pseudonym key: set pseudonym_key in the network file", what)
		}
	}
	if c.recordMode == "" {
		c.recordMode = ModeNamespace
	}
	if c.recordMode == ModeHMAC {
		keyed("record_id.mode", "record_id mode hmac")
	}

	// Index the dictionary.
	byName := map[string]*messages.Field{}
	formFields := map[string][]*messages.Field{}
	var formOrder []string
	for i := range meta.Fields {
		f := &meta.Fields[i]
		byName[f.FieldName] = f
		if _, ok := formFields[f.FormName]; !ok {
			formOrder = append(formOrder, f.FormName)
		}
		formFields[f.FormName] = append(formFields[f.FormName], f)
	}
	c.idField = meta.Fields[0].FieldName
	for i, f := range p.Approved.Forms {
		if _, ok := formFields[f]; !ok {
			add(fmt.Sprintf("approved.forms[%d]", i), "form %s is not in site %s's data dictionary (schema drift? the site has: %s)", f, opts.Site, strings.Join(formOrder, ", "))
			continue
		}
		c.forms[f] = true
	}
	approvedField := map[string]bool{}
	for i, f := range p.Approved.Fields {
		fd, ok := byName[f]
		if !ok {
			add(fmt.Sprintf("approved.fields[%d]", i), "field %s is not in site %s's data dictionary (schema drift?)", f, opts.Site)
			continue
		}
		if fd.FieldType == "descriptive" {
			add(fmt.Sprintf("approved.fields[%d]", i), "field %s is a descriptive field: it holds no data", f)
			continue
		}
		approvedField[f] = true
	}
	if len(p.Approved.Events) > 0 {
		if meta.Project.IsLongitudinal == 1 || len(meta.Events) > 0 {
			known := map[string]bool{}
			var names []string
			for _, e := range meta.Events {
				known[e.UniqueEventName] = true
				names = append(names, e.UniqueEventName)
			}
			c.events = map[string]bool{}
			for i, e := range p.Approved.Events {
				if !known[e] {
					add(fmt.Sprintf("approved.events[%d]", i), "event %s is not an event of site %s (it has: %s)", e, opts.Site, strings.Join(names, ", "))
					continue
				}
				c.events[e] = true
				c.exportEvents = append(c.exportEvents, e)
			}
		}
		// In a classic project there are no events to filter.
	}

	// Rules: field rules by name; check that what they name exists.
	fieldRule := map[string]int{}
	for i, r := range p.Rules {
		for j, f := range r.fieldNames() {
			fd, ok := byName[f]
			setting := fmt.Sprintf("rules[%d]", i)
			if r.Field == "" || j > 0 {
				setting = fmt.Sprintf("rules[%d].fields[%d]", i, j-btoi(r.Field != ""))
			}
			switch {
			case !ok:
				add(setting, "field %s is not in site %s's data dictionary (schema drift, or a typo?)", f, opts.Site)
			case f == c.idField:
				add(setting, "field %s is the record-ID field: record_id.mode decides it", f)
			default:
				fieldRule[f] = i
			}
			_ = fd
		}
		if r.Form != "" {
			if _, ok := formFields[r.Form]; !ok {
				add(fmt.Sprintf("rules[%d].form", i), "form %s is not in site %s's data dictionary", r.Form, opts.Site)
			}
		}
	}
	for _, src := range sortedKeys(p.Rename) {
		if _, ok := byName[src]; ok {
			continue
		}
		if form, ok := strings.CutSuffix(src, "_complete"); ok && formFields[form] != nil {
			continue
		}
		if form, ok := strings.CutSuffix(src, "_timestamp"); ok && formFields[form] != nil {
			continue // a survey's completion time (exportSurveyFields)
		}
		add("rename."+src, "field %s is not in site %s's data dictionary", src, opts.Site)
	}

	// The record-ID field.
	idf := byName[c.idField]
	idDet := Detect(*idf)
	c.idDest = destName(p, c.idField)
	idDec := Decision{Field: c.idField, Form: idf.FormName, Type: idf.FieldType, Validation: validation(*idf),
		Approved: true, Detected: idDet, Action: actionRecordID, Dest: c.idDest,
		By: "record_id.mode " + c.recordMode, Line: p.line("record_id.mode")}
	if idDec.Line == 0 {
		idDec.By = "record_id (default mode namespace)"
	}
	var idStrong []string
	for _, d := range idDet {
		if d.strong() {
			idStrong = append(idStrong, d.Detail)
		}
	}
	switch {
	case len(idStrong) > 0 && hasMRNLike(idDet):
		idDec.Problem = fmt.Sprintf("the record-ID field looks like an MRN/SSN (%s): Safe Harbor forbids deriving the destination ID from it, even hashed; use a study ID as the record ID", strings.Join(idStrong, "; "))
	case len(idStrong) > 0 && c.recordMode == ModeNamespace:
		idDec.Problem = fmt.Sprintf("the record-ID field looks like an identifier (%s): set record_id: {mode: hmac} so the destination gets a keyed hash", strings.Join(idStrong, "; "))
	}
	if idDec.Problem != "" {
		ps = append(ps, Problem{Line: p.line("record_id"), Setting: "field " + c.idField, Message: idDec.Problem})
	}
	c.decisions = append(c.decisions, idDec)
	c.exportFields = append(c.exportFields, c.idField)
	c.cols[c.idField] = &colPlan{fp: &fieldPlan{name: c.idField, dest: c.idDest, action: actionRecordID, field: *idf}, dest: c.idDest}

	tsRule := p.SurveyTimestamps.Rule
	if tsRule == "" {
		tsRule = Drop
	}
	c.tsRule = tsRule
	if (tsRule == Shift) && len(opts.Key) == 0 {
		keyed("survey_timestamps", "survey_timestamps: shift")
	}

	destUsed := map[string]string{c.idDest: c.idField}
	keyNeeded := map[string]bool{}
	// Every other field, in dictionary order; forms' _complete after them.
	for _, form := range formOrder {
		formKept := false
		for _, f := range formFields[form] {
			if f.FieldName == c.idField || f.FieldType == "descriptive" {
				continue
			}
			d, fp := c.decide(*f, approvedField[f.FieldName], fieldRule)
			if f.FieldType == "file" && d.Action == Keep {
				formKept = true
			}
			if d.Problem != "" {
				ps = append(ps, Problem{Line: d.Line, Setting: "field " + f.FieldName, Message: d.Problem})
			}
			if fp != nil && fp.action != Drop {
				if fp.action == Hash || fp.action == Shift {
					keyNeeded[fmt.Sprintf("%s on field %s", fp.action, f.FieldName)] = true
				}
				if other, dup := destUsed[fp.dest]; dup {
					ps = append(ps, Problem{Line: p.line("rename." + f.FieldName), Setting: "field " + f.FieldName,
						Message: fmt.Sprintf("destination name %s is also written by field %s", fp.dest, other)})
				}
				destUsed[fp.dest] = f.FieldName
				c.plans = append(c.plans, fp)
				c.exportFields = append(c.exportFields, f.FieldName)
				formKept = true
				if fp.checkbox {
					used := map[string]string{}
					for _, code := range choiceCodes(*f) {
						col := f.FieldName + "___" + exportCode(code)
						dcode := code
						if r, ok := fp.recode[code]; ok {
							dcode = r
						}
						dcol := fp.dest + "___" + exportCode(dcode)
						if other, dup := used[dcol]; dup {
							ps = append(ps, Problem{Line: p.line("recode." + f.FieldName), Setting: "recode." + f.FieldName,
								Message: fmt.Sprintf("checkbox codes %s and %s would both be written to %s", other, code, dcol)})
						}
						used[dcol] = code
						c.cols[col] = &colPlan{fp: fp, dest: dcol, code: code}
					}
				} else {
					c.cols[f.FieldName] = &colPlan{fp: fp, dest: fp.dest}
				}
			} else if f.FieldType == "checkbox" {
				for _, code := range choiceCodes(*f) {
					c.dropped[f.FieldName+"___"+exportCode(code)] = true
				}
			}
			c.decisions = append(c.decisions, d)
		}
		if formKept {
			c.repeatForms[form] = true
		}
		if c.forms[form] {
			col := form + "_complete"
			c.completeDest[col] = destName(p, col)
			c.exportFields = append(c.exportFields, col)
			c.decideTimestamp(form)
		}
	}
	for _, k := range sortedKeys(keyNeeded) {
		if len(opts.Key) == 0 {
			add("rules", "%s needs the pseudonym key: set pseudonym_key in the network file", k)
		}
	}
	// Recodes must name kept fields and codes the field has.
	for _, f := range sortedKeys(p.Recode) {
		fd, ok := byName[f]
		if !ok {
			add("recode."+f, "field %s is not in site %s's data dictionary", f, opts.Site)
			continue
		}
		if !c.kept(f) {
			add("recode."+f, "field %s does not reach the destination (not approved or dropped): remove the recode", f)
			continue
		}
		if codes := choiceCodes(*fd); len(codes) > 0 {
			have := map[string]bool{}
			for _, code := range codes {
				have[code] = true
			}
			for _, from := range sortedKeys(p.Recode[f]) {
				if !have[from] {
					add("recode."+f+"."+from, "code %q is not a choice of field %s (choices: %s)", from, f, strings.Join(codes, ", "))
				}
			}
		}
	}
	c.version = p.version + "+" + c.optionsHash()
	return c, ps
}

// FilePlan is how a kept file-upload or signature field travels.
type FilePlan struct {
	Field, Dest string
	MaxBytes    int64    // 0 = no limit of the policy's
	Types       []string // MIME types ("application/pdf", "image/*") or extensions (".pdf"); empty = any
	KeepName    bool     // the original file name may leave the site
}

// decideFile decides a file-upload or signature field: a file can hold
// anything (a scanned consent form with a name and signature, a photo), so
// it leaves the site only when a field rule keeps it, with a justification.
func (c *Compiled) decideFile(f messages.Field, d Decision, fieldRule map[string]int) (Decision, *fieldPlan) {
	p := c.policy
	i, ok := fieldRule[f.FieldName]
	if !ok {
		d.Action, d.By = Drop, "a file field: not transferred unless a field rule keeps it (rule keep with a justification)"
		return d, nil
	}
	r := p.Rules[i]
	d.By, d.Line, d.Justification = fmt.Sprintf("rules[%d] (%s)", i, r.selector()), p.line(fmt.Sprintf("rules[%d]", i)), r.Justification
	switch r.Rule {
	case Drop:
		d.Action = Drop
	case Keep:
		d.Action, d.Dest = Keep, destName(p, f.FieldName)
		fp := FilePlan{Field: f.FieldName, Dest: d.Dest, MaxBytes: int64(r.MaxSize), Types: r.Types, KeepName: r.KeepName}
		c.files = append(c.files, fp)
		c.filesBy[f.FieldName] = fp
		c.exportFields = append(c.exportFields, f.FieldName) // the row then says whether a file is there
	default:
		d.Action = "refused"
		d.Problem = fmt.Sprintf("rule %s does not apply to a file: keep it (with a justification, and optionally max_size, types, keep_name) or drop it", r.Rule)
		d.Line = p.line(fmt.Sprintf("rules[%d].rule", i))
	}
	return d, nil
}

// Files are the file fields the policy keeps.
func (c *Compiled) Files() []FilePlan { return append([]FilePlan(nil), c.files...) }

// FileAllowed checks a file against its field's limits; the error names the
// field and the limit, never the file's name or content.
func (p FilePlan) FileAllowed(name, mimeType string, size int64) error {
	if p.MaxBytes > 0 && size > p.MaxBytes {
		return fmt.Errorf("file of field %s is %d bytes, over the policy's max_size of %d bytes", p.Field, size, p.MaxBytes)
	}
	if len(p.Types) == 0 {
		return nil
	}
	ext := strings.ToLower(filepath.Ext(name))
	mt := strings.ToLower(mimeType)
	for _, t := range p.Types {
		t = strings.ToLower(strings.TrimSpace(t))
		switch {
		case strings.HasPrefix(t, "."):
			if ext == t {
				return nil
			}
		case strings.HasSuffix(t, "/*"):
			if strings.HasPrefix(mt, strings.TrimSuffix(t, "*")) {
				return nil
			}
		case mt == t:
			return nil
		}
	}
	return fmt.Errorf("file of field %s is of type %s (%s), which the policy does not allow (types: %s)", p.Field, orWord(mt, "unknown"), orWord(ext, "no extension"), strings.Join(p.Types, ", "))
}

func orWord(s, w string) string {
	if s == "" {
		return w
	}
	return s
}

// decideTimestamp decides an approved form's survey completion time
// (<form>_timestamp, exported only with exportSurveyFields and only for
// survey instruments). REDCap ignores <form>_timestamp on import, so the
// value reaches the destination only renamed to a real datetime field.
func (c *Compiled) decideTimestamp(form string) {
	col := form + "_timestamp"
	d := Decision{Field: col, Form: form, Type: "survey timestamp", Approved: true, Action: c.tsRule, Line: c.policy.line("survey_timestamps")}
	switch dest := destName(c.policy, col); {
	case c.tsRule == Drop:
		d.Action, d.By = Drop, "survey_timestamps: drop (the default)"
	case dest == col:
		d.Action, d.By = Drop, fmt.Sprintf("survey_timestamps: %s, but REDCap ignores %s on import: add rename: {%s: <a datetime field of the destination>} to transfer it", c.tsRule, col, col)
	default:
		d.By, d.Dest = "survey_timestamps: "+c.tsRule, dest
		c.tsForms[form] = true
		// The destination check sees it as a datetime (seconds) field.
		c.plans = append(c.plans, &fieldPlan{name: col, dest: dest, action: c.tsRule, kind: kindDatetimeSeconds,
			field: messages.Field{FieldName: col, FormName: form, FieldType: "text", TextValidationTypeOrShowSlider: "datetime_seconds_ymd"}})
	}
	c.decisions = append(c.decisions, d)
}

// NeedsSiteDAG reports whether the policy maps the site's data access
// groups: the exporter then asks for each record's DAG.
func (c *Compiled) NeedsSiteDAG() bool { return len(c.policy.SiteDAGs) > 0 }

// SurveyTimestamps reports whether any survey completion time reaches the
// destination: the exporter then asks for exportSurveyFields.
func (c *Compiled) SurveyTimestamps() bool { return len(c.tsForms) > 0 }

// kept reports whether a field reaches the destination.
func (c *Compiled) kept(field string) bool {
	for _, fp := range c.plans {
		if fp.name == field {
			return true
		}
	}
	return false
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func hasMRNLike(ds []Detection) bool {
	for _, d := range ds {
		for _, c := range d.HIPAA {
			if c == phi.MRN || c == phi.SSN {
				return true
			}
		}
	}
	return false
}

func destName(p *Policy, src string) string {
	if d, ok := p.Rename[src]; ok {
		return d
	}
	return src
}

// decide finds the rule for one non-ID field and checks that it applies.
func (c *Compiled) decide(f messages.Field, fieldApproved bool, fieldRule map[string]int) (Decision, *fieldPlan) {
	p := c.policy
	det := Detect(f)
	d := Decision{Field: f.FieldName, Form: f.FormName, Type: f.FieldType, Validation: validation(f), Detected: det}
	for _, x := range det {
		d.Reasons = append(d.Reasons, x.Detail)
	}
	approved := c.forms[f.FormName] || fieldApproved
	d.Approved = approved
	if !approved {
		d.Action, d.By = Drop, "not approved (deny by default)"
		return d, nil
	}
	if c.forms[f.FormName] {
		d.By = "approved.forms"
	} else {
		d.By = "approved.fields"
	}
	if f.FieldType == "file" {
		return c.decideFile(f, d, fieldRule)
	}
	rule, just, by, line := "", "", "", 0
	if i, ok := fieldRule[f.FieldName]; ok {
		r := p.Rules[i]
		rule, just, by, line = r.Rule, r.Justification, fmt.Sprintf("rules[%d] (%s)", i, r.selector()), p.line(fmt.Sprintf("rules[%d]", i))
	}
	v := validation(f)
	if rule == "" && v != "" {
		for i, r := range p.Rules {
			for _, pat := range r.Validation {
				if matchValidation(pat, v) {
					rule, just, by, line = r.Rule, r.Justification, fmt.Sprintf("rules[%d] (validation %s)", i, pat), p.line(fmt.Sprintf("rules[%d]", i))
					break
				}
			}
			if rule != "" {
				break
			}
		}
	}
	if rule == "" && len(det) > 0 {
		for i, r := range p.Rules {
			if r.Form == f.FormName {
				rule, just, by, line = r.Rule, r.Justification, fmt.Sprintf("rules[%d] (form %s)", i, r.Form), p.line(fmt.Sprintf("rules[%d]", i))
				break
			}
		}
	}
	strong := hasStrong(det)
	if rule == "" && !strong {
		switch {
		case hasCategory(det, CatDate) && p.Dates.IsSet():
			rule, just, by, line = p.Dates.Rule, p.Dates.Justification, "dates: "+p.Dates.Rule, p.line("dates")
		case hasCategory(det, CatFreeText) && p.FreeText.IsSet():
			rule, just, by, line = p.FreeText.Rule, p.FreeText.Justification, "free_text: "+p.FreeText.Rule, p.line("free_text")
		case len(det) == 0:
			rule, by = Keep, d.By+" (no identifier detected)"
		}
	}
	if rule == "" {
		d.Action = "refused"
		sug := suggest(f, det)
		d.Problem = fmt.Sprintf("approved, but looks like an identifier (%s) and no rule decides it: add `{field: %s, rule: %s}` to rules (fitting rules: %s)",
			strings.Join(d.Reasons, "; "), f.FieldName, sug[0], strings.Join(sug, ", "))
		if !strong && hasCategory(det, CatDate) {
			d.Problem += ", or set dates: shift|year|drop"
		}
		if !strong && hasCategory(det, CatFreeText) {
			d.Problem += ", or set free_text: drop"
		}
		d.Line = p.line("rules")
		return d, nil
	}
	d.Action, d.By, d.Line, d.Justification = rule, by, line, just
	if rule == Drop {
		return d, nil
	}
	fp := &fieldPlan{name: f.FieldName, dest: destName(p, f.FieldName), action: rule, kind: dateKindOf(f), field: f,
		recode: p.Recode[f.FieldName], checkbox: f.FieldType == "checkbox"}
	d.Dest = fp.dest
	// Does the rule fit the field?
	switch rule {
	case Shift, Year:
		if fp.kind == notDate {
			d.Problem = fmt.Sprintf("rule %s needs a date or datetime field, but %s is %s", rule, f.FieldName, describe(f))
		}
	case Zip3:
		if f.FieldType != "text" || (v != "" && v != "zipcode" && v != "integer") {
			d.Problem = fmt.Sprintf("rule zip3 needs a US ZIP code text field, but %s is %s", f.FieldName, describe(f))
		}
	case CapAge:
		if !(f.FieldType == "calc" || (f.FieldType == "text" && (v == "" || v == "integer" || strings.HasPrefix(v, "number")))) {
			d.Problem = fmt.Sprintf("rule cap_age needs a numeric age field, but %s is %s", f.FieldName, describe(f))
		}
	case Hash:
		if f.FieldType == "checkbox" {
			d.Problem = "rule hash cannot apply to a checkbox field: use drop or keep"
		}
	}
	if fp.recode != nil && rule != Keep {
		d.Problem = fmt.Sprintf("recode.%s: recoding applies only to kept fields, not to rule %s", f.FieldName, rule)
	}
	return d, fp
}

func describe(f messages.Field) string {
	if v := validation(f); v != "" {
		return f.FieldType + " with validation " + v
	}
	return "a " + f.FieldType + " field"
}

// choiceCodes parses "1, one | 2, two" (and "0, A|1, B").
func choiceCodes(f messages.Field) []string {
	switch f.FieldType {
	case "radio", "dropdown", "checkbox":
	case "yesno", "truefalse":
		return []string{"0", "1"}
	default:
		return nil
	}
	var out []string
	for _, part := range strings.Split(f.SelectChoicesOrCalculations, "|") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		code, _, _ := strings.Cut(part, ",")
		out = append(out, strings.TrimSpace(code))
	}
	return out
}

// exportCode is REDCap's checkbox column suffix for a code: lowercase, and
// every character other than a letter or digit becomes '_'.
func exportCode(code string) string {
	b := []byte(strings.ToLower(code))
	for i, ch := range b {
		if !(ch >= 'a' && ch <= 'z' || ch >= '0' && ch <= '9') {
			b[i] = '_'
		}
	}
	return string(b)
}

// optionsHash fingerprints what besides the file changes the output: the
// namespace, the DAG and the key (through an HMAC, never the key itself).
func (c *Compiled) optionsHash() string {
	m := hmac.New(sha256.New, c.opts.Key)
	m.Write([]byte("relay/key-fingerprint/v1"))
	kf := m.Sum(nil)
	s := sha256.Sum256([]byte(c.opts.Namespace + "\x00" + c.opts.DAG + "\x00" + hex.EncodeToString(kf)))
	return hex.EncodeToString(s[:])[:8]
}

// Version is the policy version plus a fingerprint of the site options
// ("sha256:<policy>+<options>"): recorded with every cleaned record.
func (c *Compiled) Version() string { return c.version }

// Policy returns the policy this was compiled from.
func (c *Compiled) Policy() *Policy { return c.policy }

// RecordIDField is the site's record-ID field (the dictionary's first).
func (c *Compiled) RecordIDField() string { return c.idField }

// ExportFields is what to ask the site for: the record-ID field, every
// approved field that is not dropped (checkboxes by base name), and the
// <form>_complete of each approved form. Nothing else leaves the site.
func (c *Compiled) ExportFields() []string { return append([]string(nil), c.exportFields...) }

// ExportEvents is the approved events, nil for all.
func (c *Compiled) ExportEvents() []string {
	if len(c.exportEvents) == 0 {
		return nil
	}
	return append([]string(nil), c.exportEvents...)
}

// Decisions is the per-field outcome (as Explain gives it).
func (c *Compiled) Decisions() []Decision { return append([]Decision(nil), c.decisions...) }

// DestFields lists the destination columns the policy writes (sorted),
// without system columns.
func (c *Compiled) DestFields() []string {
	seen := map[string]bool{}
	for _, cp := range c.cols {
		seen[cp.dest] = true
	}
	for _, d := range c.completeDest {
		seen[d] = true
	}
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
