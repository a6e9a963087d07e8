package report

import (
	"encoding/csv"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/redcap-relay/relay/messages"
)

// CSVHeader are the columns of the CSV report. Each row is one of:
// section "site" (status and score), "instrument", "finding",
// "completion", "item" (item missingness) or "change".
var CSVHeader = []string{
	"site", "section", "severity", "kind", "instrument", "form", "event", "field", "site_field",
	"expected", "actual", "message", "score", "records", "complete", "unverified", "incomplete", "blank", "rate",
	"wording", "match",
}

// CSV writes reports as one flat table (spreadsheet-friendly).
func CSV(w io.Writer, reports ...*messages.ProtocolReport) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(CSVHeader); err != nil {
		return err
	}
	row := func(site, section, sev, kind, inst, form, event, field, siteField, exp, act, msg, score string, counts ...string) error {
		rec := []string{site, section, sev, kind, inst, form, event, field, siteField, exp, act, msg, score}
		for len(counts) < 8 {
			counts = append(counts, "")
		}
		rec = append(rec, counts...)
		for i := range rec {
			rec[i] = cell(rec[i])
		}
		return cw.Write(rec)
	}
	for _, r := range reports {
		msg := r.Error
		if msg == "" {
			msg = strconv.Itoa(r.Errors) + " error(s), " + strconv.Itoa(r.Warnings) + " warning(s), " + strconv.Itoa(r.Infos) + " note(s)"
		}
		if err := row(r.Site, "site", "", r.Status, "", "", "", "", "", r.ProtocolName+" "+r.ProtocolVersion, "", msg, scoreText(r)); err != nil {
			return err
		}
		for _, in := range r.Instruments {
			exp := strconv.Itoa(in.FieldsExpected) + " fields"
			act := strconv.Itoa(in.FieldsOK) + " ok"
			if err := row(r.Site, "instrument", "", in.Status, in.Instrument, in.Form, "", "", in.Substitute, exp, act, in.Error,
				strconv.FormatFloat(100*in.Score, 'f', 1, 64)); err != nil {
				return err
			}
		}
		for _, f := range r.Findings {
			if err := row(r.Site, "finding", f.Severity, f.Kind, f.Instrument, f.Form, f.Event, f.Field, f.SiteField, f.Expected, f.Actual, f.Message, "",
				"", "", "", "", "", "", f.Wording, matchText(f.Match)); err != nil {
				return err
			}
		}
		for _, c := range r.Completion {
			if err := row(r.Site, "completion", "", "", c.Instrument, c.Form, c.Event, "", "", c.Planned, "", "", "",
				itoa(c.Records), itoa(c.Complete), itoa(c.Unverified), itoa(c.Incomplete), itoa(c.Blank), ftoa(c.Rate)); err != nil {
				return err
			}
			for _, it := range c.Items {
				if err := row(r.Site, "item", "", "missing", c.Instrument, c.Form, c.Event, it.Field, "", "", "", "", "",
					itoa(it.Saved), "", "", "", itoa(it.Missing), ftoa(it.Rate)); err != nil {
					return err
				}
			}
		}
		for _, ch := range r.Changes {
			if err := row(r.Site, "change", "", ch.Kind, ch.Instrument, "", "", ch.Field, "", ch.Before, ch.After, ch.Message, ""); err != nil {
				return err
			}
		}
	}
	cw.Flush()
	return cw.Error()
}

func itoa(i int) string     { return strconv.Itoa(i) }
func ftoa(f float64) string { return strconv.FormatFloat(f, 'f', 3, 64) }

// cell defuses spreadsheet formulas: labels come from site dictionaries, and
// a cell starting with = + - @ would run as a formula in Excel.
func cell(s string) string {
	if s != "" {
		switch s[0] {
		case '=', '+', '-', '@', '\t', '\r':
			return "'" + s
		}
	}
	return s
}

// matchText is how a site field was tied to a protocol item, e.g.
// "content 0.97 (wording, labels); recode 1=2 2=1".
func matchText(m *messages.ProtocolMatch) string {
	if m == nil {
		return ""
	}
	s := m.By
	if m.Score > 0 {
		s += " " + strconv.FormatFloat(m.Score, 'f', 2, 64)
	}
	if len(m.Basis) > 0 {
		s += " (" + strings.Join(m.Basis, ", ") + ")"
	}
	if len(m.Candidates) > 0 {
		s += "; candidates " + strings.Join(m.Candidates, ", ")
	}
	if len(m.Recode) > 0 {
		keys := make([]string, 0, len(m.Recode))
		for k := range m.Recode {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var parts []string
		for _, k := range keys {
			parts = append(parts, k+"="+m.Recode[k])
		}
		s += "; recode " + strings.Join(parts, " ")
	}
	return s
}
