package redcap

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/redcap-relay/relay/messages"
)

// ExportParams select what Export Records returns. Empty lists mean "all".
type ExportParams struct {
	Records, Fields, Forms, Events []string
	// DateRangeBegin/End filter whole records by REDCap's logging (record
	// created or modified), both inclusive, in the server's local time;
	// zero = unset. They are sent as "YYYY-MM-DD HH:MM:SS" as given.
	DateRangeBegin, DateRangeEnd time.Time
	ExportDataAccessGroups       bool
	ExportBlankForGrayFormStatus bool
	// ExportSurveyFields adds redcap_survey_identifier and, for survey
	// instruments, <form>_timestamp ("YYYY-MM-DD HH:MM:SS" or
	// "[not completed]").
	ExportSurveyFields bool
}

// redcapTime is the layout of dateRangeBegin/End.
const redcapTime = "2006-01-02 15:04:05"

// ExportRecords exports flat, raw JSON rows. redcap_repeat_instance (an
// integer in REDCap's JSON) comes back as its decimal string.
func (c *Client) ExportRecords(ctx context.Context, p ExportParams) ([]messages.Row, error) {
	const call = "export records"
	f := url.Values{}
	f.Set("content", "record")
	f.Set("format", "json")
	f.Set("type", "flat")
	f.Set("rawOrLabel", "raw")
	f.Set("rawOrLabelHeaders", "raw")
	f.Set("returnFormat", "json")
	setArray(f, "records", p.Records)
	setArray(f, "fields", p.Fields)
	setArray(f, "forms", p.Forms)
	setArray(f, "events", p.Events)
	if !p.DateRangeBegin.IsZero() {
		f.Set("dateRangeBegin", p.DateRangeBegin.Format(redcapTime))
	}
	if !p.DateRangeEnd.IsZero() {
		f.Set("dateRangeEnd", p.DateRangeEnd.Format(redcapTime))
	}
	if p.ExportDataAccessGroups {
		f.Set("exportDataAccessGroups", "true")
	}
	if p.ExportBlankForGrayFormStatus {
		f.Set("exportBlankForGrayFormStatus", "true")
	}
	if p.ExportSurveyFields {
		f.Set("exportSurveyFields", "true")
	}
	body, err := c.post(ctx, call, f, bodyJSON)
	if err != nil {
		return nil, err
	}
	if bytes.HasPrefix(bytes.TrimSpace(body), []byte("{")) {
		return nil, c.objectInsteadOfArray(call, body)
	}
	rows, err := decodeRows(body)
	if err != nil {
		return nil, c.parseError(call, err)
	}
	return rows, nil
}

// objectInsteadOfArray handles a 200 whose body is a JSON object where an
// array belongs: an error object that came with the wrong status, or junk.
func (c *Client) objectInsteadOfArray(call string, body []byte) error {
	if msg, _ := errorText(body); msg != "" && !strings.HasPrefix(msg, "{") {
		return c.newError(call, http.StatusOK, KindTransient, msg, "REDCap sent an error with status 200", nil)
	}
	return c.newError(call, http.StatusOK, KindTransient, "REDCap's answer is a JSON object where a list was expected", "", nil)
}

// ExportRecordIDs lists the distinct record IDs in export order, exporting
// only idField (the project's record-ID field). since, if not zero, keeps
// records created or modified at or after it (REDCap's dateRangeBegin).
func (c *Client) ExportRecordIDs(ctx context.Context, idField string, since time.Time) ([]string, error) {
	if idField == "" {
		return nil, &Error{Site: c.site, Call: "export record IDs", Kind: KindPermanent, Message: "no record-ID field name given"}
	}
	rows, err := c.ExportRecords(ctx, ExportParams{Fields: []string{idField}, DateRangeBegin: since})
	if err != nil {
		var e *Error
		if asError(err, &e) {
			e.Call = "export record IDs"
		}
		return nil, err
	}
	seen := make(map[string]struct{}, len(rows))
	ids := make([]string, 0, len(rows))
	for i, r := range rows {
		id, ok := r[idField]
		if !ok {
			return nil, &Error{Site: c.site, Call: "export record IDs", Status: http.StatusOK, Kind: KindPermanent,
				Message: fmt.Sprintf("row %d of the answer has no %q column", i+1, idField),
				Hint:    "check that the record-ID field name is the project's first field"}
		}
		if _, dup := seen[id]; dup {
			continue
		}
		seen[id] = struct{}{}
		ids = append(ids, id)
	}
	return ids, nil
}

// ImportParams control Import Records.
type ImportParams struct {
	// Overwrite sends overwriteBehavior=overwrite: blank values erase stored
	// ones. Otherwise blanks are ignored (REDCap's "normal").
	Overwrite bool
}

// ImportResult is REDCap's answer to an import with returnContent=ids.
type ImportResult struct {
	Count int      // distinct records saved
	IDs   []string // their IDs
}

// ImportRecords imports flat raw rows as one JSON array (never a single
// object, which REDCap silently ignores). Nothing is saved when REDCap
// answers 400; the Error then carries one Problem per bad value.
func (c *Client) ImportRecords(ctx context.Context, rows []messages.Row, p ImportParams) (ImportResult, error) {
	const call = "import records"
	if len(rows) == 0 {
		return ImportResult{IDs: []string{}}, nil
	}
	data, err := json.Marshal(rows)
	if err != nil {
		return ImportResult{}, &Error{Site: c.site, Call: call, Kind: KindPermanent, Message: "cannot encode the rows as JSON", Err: jsonErrNoValue(err)}
	}
	f := url.Values{}
	f.Set("content", "record") // no action: REDCap imports when data is present
	f.Set("format", "json")
	f.Set("type", "flat")
	f.Set("overwriteBehavior", map[bool]string{true: "overwrite", false: "normal"}[p.Overwrite])
	f.Set("forceAutoNumber", "false")
	f.Set("returnContent", "ids")
	f.Set("returnFormat", "json")
	f.Set("data", string(data))
	body, err := c.post(ctx, call, f, bodyJSON)
	if err != nil {
		return ImportResult{}, err
	}
	var ids []string
	if err := decodeLoose(body, &ids); err != nil {
		// Some servers answer {"count": N} whatever returnContent says.
		var cnt struct {
			Count *int `json:"count"`
		}
		if json.Unmarshal(body, &cnt) == nil && cnt.Count != nil {
			return ImportResult{Count: *cnt.Count}, nil
		}
		if bytes.HasPrefix(bytes.TrimSpace(body), []byte("{")) {
			return ImportResult{}, c.objectInsteadOfArray(call, body)
		}
		return ImportResult{}, c.parseError(call, err)
	}
	if ids == nil {
		ids = []string{}
	}
	return ImportResult{Count: len(ids), IDs: ids}, nil
}

// DeleteRecords deletes whole records (every arm). REDCap deletes nothing
// and answers 400 if any of them does not exist.
func (c *Client) DeleteRecords(ctx context.Context, ids []string) (int, error) {
	const call = "delete records"
	if len(ids) == 0 {
		return 0, nil
	}
	f := url.Values{}
	f.Set("content", "record")
	f.Set("action", "delete")
	f.Set("returnFormat", "json")
	setArray(f, "records", ids)
	body, err := c.post(ctx, call, f, bodyText)
	if err != nil {
		return 0, err
	}
	return c.parseCount(call, body)
}

// parseCount reads a bare "N", {"count": N} or <count>N</count>.
func (c *Client) parseCount(call string, body []byte) (int, error) {
	s := strings.TrimSpace(string(body))
	if n, err := strconv.Atoi(strings.Trim(s, `"`)); err == nil {
		return n, nil
	}
	var cnt struct {
		Count json.Number `json:"count"`
	}
	if json.Unmarshal([]byte(s), &cnt) == nil && cnt.Count != "" {
		if n, err := strconv.Atoi(cnt.Count.String()); err == nil {
			return n, nil
		}
	}
	if i := strings.Index(s, "<count>"); i >= 0 {
		if j := strings.Index(s, "</count>"); j > i {
			if n, err := strconv.Atoi(strings.TrimSpace(s[i+7 : j])); err == nil {
				return n, nil
			}
		}
	}
	return 0, c.newError(call, http.StatusOK, KindTransient, "REDCap's answer is not a count", "", nil)
}

// setArray sends a list as name[0]=…&name[1]=…, which every REDCap
// version accepts. Empty lists are not sent ("" would mean absent anyway).
func setArray(f url.Values, name string, vals []string) {
	for i, v := range vals {
		f.Set(name+"["+strconv.Itoa(i)+"]", v)
	}
}

// Record is one REDCap record: all of its event and instance rows.
type Record struct {
	ID   string
	Rows []messages.Row
}

// GroupRecords groups export rows by record, in REDCap's order. Rows of one
// record are adjacent in an export, but this does not rely on it.
func GroupRecords(rows []messages.Row, idField string) []Record {
	idx := map[string]int{}
	var out []Record
	for _, r := range rows {
		id := r[idField]
		i, ok := idx[id]
		if !ok {
			i = len(out)
			idx[id] = i
			out = append(out, Record{ID: id})
		}
		out[i].Rows = append(out[i].Rows, r)
	}
	return out
}
