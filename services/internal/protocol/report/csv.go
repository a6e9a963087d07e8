package report

import (
	"encoding/csv"
	"io"
	"strconv"

	"github.com/redcap-relay/relay/messages"
)

// CSVHeader are the columns of the CSV report. Each row is one of:
// section "site" (status and score), "instrument", "finding",
// "completion", "item" (item missingness) or "change".
var CSVHeader = []string{
	"site", "section", "severity", "kind", "instrument", "form", "event", "field", "site_field",
	"expected", "actual", "message", "score", "records", "complete", "unverified", "incomplete", "blank", "rate",
}

// CSV writes reports as one flat table (spreadsheet-friendly).
func CSV(w io.Writer, reports ...*messages.ProtocolReport) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(CSVHeader); err != nil {
		return err
	}
	row := func(site, section, sev, kind, inst, form, event, field, siteField, exp, act, msg, score string, counts ...string) error {
		rec := []string{site, section, sev, kind, inst, form, event, field, siteField, exp, act, msg, score}
		for i := range rec {
			rec[i] = cell(rec[i])
		}
		for len(counts) < 6 {
			counts = append(counts, "")
		}
		return cw.Write(append(rec, counts...))
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
			if err := row(r.Site, "finding", f.Severity, f.Kind, f.Instrument, f.Form, f.Event, f.Field, f.SiteField, f.Expected, f.Actual, f.Message, ""); err != nil {
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
