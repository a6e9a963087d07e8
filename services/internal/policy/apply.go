package policy

import (
	"fmt"
	"sort"
	"strings"

	"github.com/redcap-relay/relay/messages"
)

// REDCap's pseudo-columns.
const (
	colEvent    = "redcap_event_name"
	colRepeat   = "redcap_repeat_instrument"
	colInstance = "redcap_repeat_instance"
	colDAG      = "redcap_data_access_group"
)

// FieldError is one value a rule could not transform. It names the field
// and rule, never the value.
type FieldError struct {
	Field string
	Rule  string
	Err   error
}

// ApplyError lists every value of one record that could not be
// transformed. The record is then dead-lettered as a whole: a partial
// record would be a silent loss.
type ApplyError struct {
	Site   string
	Record string // the source record ID, or the destination ID when record IDs are hashed
	Fields []FieldError
}

func (e *ApplyError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "site %s: record %s: %d value(s) cannot be transformed:", e.Site, e.Record, len(e.Fields))
	for i, f := range e.Fields {
		if i > 0 {
			b.WriteString(";")
		}
		fmt.Fprintf(&b, " field %s (rule %s): %v", f.Field, f.Rule, f.Err)
	}
	return b.String()
}

// Problems gives the per-field problems for a dead letter's Details.
func (e *ApplyError) Problems() []messages.FieldProblem {
	out := make([]messages.FieldProblem, len(e.Fields))
	for i, f := range e.Fields {
		out[i] = messages.FieldProblem{Record: e.Record, Field: f.Field, Message: "rule " + f.Rule + ": " + f.Err.Error()}
	}
	return out
}

// Apply transforms one exported record. It is a pure function of the record
// and the compiled policy: the same input gives byte-identical output on
// every run and replica. Only the columns the policy keeps are written;
// anything else (unapproved, dropped, unknown, the site's DAG, survey
// identifiers) is left out. Rows of unapproved events and of repeating
// instruments with nothing approved are left out too. CleanedAt is left for
// the caller to stamp.
func (c *Compiled) Apply(rec messages.RecordExported) (messages.RecordCleaned, error) {
	destID := c.DestRecordID(rec.RecordID)
	if rec.Deleted && rec.RecordID == "" && rec.DestRecordID != "" {
		destID = rec.DestRecordID // a repair deleting a destination record the site does not have
	}
	out := messages.RecordCleaned{
		V: messages.V, Site: rec.Site, RunID: rec.RunID, SourceRecord: rec.RecordID, DestRecordID: destID,
		Version: rec.Version, PolicyVersion: c.version, DAG: c.opts.DAG, Deleted: rec.Deleted, Repair: rec.Repair,
	}
	if rec.RenamedFrom != "" {
		out.RenamedFrom = c.DestRecordID(rec.RenamedFrom)
	}
	recName := rec.RecordID
	if c.recordMode == ModeHMAC {
		recName = destID
	}
	if c.opts.Site != "" && rec.Site != "" && rec.Site != c.opts.Site {
		return out, &ApplyError{Site: rec.Site, Record: recName, Fields: []FieldError{{Field: "(record)", Rule: "site",
			Err: fmt.Errorf("the policy was compiled for site %s", c.opts.Site)}}}
	}
	if rec.Deleted && rec.RecordID == "" && !strings.HasPrefix(destID, c.opts.Namespace+"-") {
		return out, &ApplyError{Site: rec.Site, Record: destID, Fields: []FieldError{{Field: "(record)", Rule: "namespace",
			Err: fmt.Errorf("a deletion of a destination record outside the site's namespace %s", c.opts.Namespace)}}}
	}
	if rec.Deleted {
		out.Hash = messages.HashRows(nil)
		return out, nil
	}
	shift := -1
	days := func() int {
		if shift < 0 {
			shift = c.ShiftDays(rec.RecordID)
		}
		return shift
	}
	var errs []FieldError
	rows := make([]messages.Row, 0, len(rec.Rows))
	for _, row := range rec.Rows {
		if ev := row[colEvent]; ev != "" && c.events != nil && !c.events[ev] {
			continue
		}
		if ri := row[colRepeat]; ri != "" && !c.repeatForms[ri] {
			continue
		}
		o := make(messages.Row, len(c.cols)+4)
		for k, v := range row {
			switch k {
			case colEvent, colRepeat, colInstance:
				o[k] = v
				continue
			}
			cp := c.cols[k]
			if cp == nil {
				if d, ok := c.completeDest[k]; ok {
					o[d] = v
				} else if form, ok := strings.CutSuffix(k, "_timestamp"); ok && c.tsForms[form] && v != "" && v != "[not completed]" {
					nv, err := c.transform(c.tsRule, kindDatetimeSeconds, v, days, true)
					if err != nil {
						errs = append(errs, FieldError{Field: k, Rule: "survey_timestamps " + c.tsRule, Err: err})
						continue
					}
					o[destName(c.policy, k)] = nv
				}
				continue // not approved, dropped, or unknown to the dictionary
			}
			fp := cp.fp
			if fp.action == actionRecordID {
				continue // written below for every row
			}
			if cp.code != "" { // checkbox column: recoding moved it already
				o[cp.dest] = v
				continue
			}
			nv, err := c.transform(fp.action, fp.kind, v, days, false)
			if err != nil {
				errs = append(errs, FieldError{Field: fp.name, Rule: fp.action, Err: err})
				continue
			}
			if fp.recode != nil {
				if r, ok := fp.recode[nv]; ok {
					nv = r
				}
			}
			o[cp.dest] = nv
		}
		o[c.idDest] = destID
		dag := c.opts.DAG
		if mapped, ok := c.policy.SiteDAGs[row[colDAG]]; ok && row[colDAG] != "" {
			dag = mapped
			out.DAG = mapped
		}
		if dag != "" {
			o[colDAG] = dag
		}
		rows = append(rows, o)
	}
	if len(errs) > 0 {
		sort.Slice(errs, func(i, j int) bool { return errs[i].Field < errs[j].Field })
		return out, &ApplyError{Site: rec.Site, Record: recName, Fields: dedupe(errs)}
	}
	out.Rows = rows
	for _, f := range rec.Files {
		fp, ok := c.filesBy[f.Field]
		if !ok {
			continue // not kept: the exporter never sends one, but never pass one on
		}
		f.Field = fp.Dest
		if !fp.KeepName {
			f.Name = ""
		}
		out.Files = append(out.Files, f)
	}
	out.Hash = messages.HashRecord(rows, out.Files)
	return out, nil
}

func dedupe(errs []FieldError) []FieldError {
	out := errs[:0]
	for i, e := range errs {
		if i > 0 && e.Field == errs[i-1].Field && e.Rule == errs[i-1].Rule {
			continue
		}
		out = append(out, e)
	}
	return out
}

// transform applies one rule to one value. Empty stays empty.
func (c *Compiled) transform(rule string, kind dateKind, v string, days func() int, timestamp bool) (string, error) {
	if v == "" {
		return v, nil
	}
	switch rule {
	case Keep:
		return v, nil
	case Hash:
		return c.hashValue(v), nil
	case Shift, Year:
		if timestamp && v == "[not completed]" {
			return v, nil
		}
		if rule == Shift {
			return shiftDate(kind, v, days())
		}
		return yearOf(kind, v)
	case Zip3:
		return ZIP3(v)
	case CapAge:
		return CapAgeValue(v)
	}
	return "", fmt.Errorf("unknown rule %s", rule)
}
