// Package dryrun shows what a sync of one site would do, without importing
// anything: it exports the site's records (only the fields the transfer
// policy approves), transforms them with the policy, exports the same
// records from the destination, and compares. The report names records,
// fields and counts, never values.
package dryrun

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/pipeline/retry"
	"github.com/redcap-relay/relay/services/internal/pipeline/sitemeta"
	"github.com/redcap-relay/relay/services/internal/policy"
	"github.com/redcap-relay/relay/services/internal/redcap"
)

// Record statuses.
const (
	StatusNew       = "new"
	StatusChanged   = "changed"
	StatusUnchanged = "unchanged"
	StatusRefused   = "refused" // the policy could not transform it (it would go to the DLQ)
	StatusDeleted   = "deleted" // at the destination, gone at the site
)

// Options say what to compare.
type Options struct {
	Network *config.Network
	Site    string
	// Records limits the run to these site record IDs (all when empty).
	Records []string
	// Files downloads every kept file (site and destination) to compare
	// their SHA-256 and check the policy's type and size limits; without
	// it files are compared by presence only. Nothing of a file is kept.
	Files  bool
	Logger *slog.Logger
}

// Report is the outcome. It holds names and counts only.
type Report struct {
	Site          string   `json:"site"`
	Policy        string   `json:"policy"`
	PolicyName    string   `json:"policy_name"`
	PolicyVersion string   `json:"policy_version"`
	RecordIDField string   `json:"record_id_field"`
	ExportFields  []string `json:"export_fields"`
	// DestinationProblems are CheckDestination's mismatches: a real run
	// would stop on them.
	DestinationProblems []string       `json:"destination_problems,omitempty"`
	Records             []RecordResult `json:"records"`
	Fields              []FieldChange  `json:"fields"`
	Dropped             []Dropped      `json:"dropped"`
	Counts              map[string]int `json:"counts"`
	// Files are the kept file fields' locations; FileCounts by status.
	// FilesCompared says whether contents were compared (Options.Files).
	Files         []FileResult   `json:"files"`
	FileCounts    map[string]int `json:"file_counts"`
	FilesCompared bool           `json:"files_compared"`
	// OverwriteBlanks mirrors destination.overwrite_blanks: without it a
	// blank site value never changes the destination.
	OverwriteBlanks bool `json:"overwrite_blanks"`
	SiteCalls       int  `json:"site_calls"`
	DestCalls       int  `json:"destination_calls"`
}

// RecordResult is one record's outcome. Only the destination ID is given:
// with hashed IDs the site's ID is not shown.
type RecordResult struct {
	DestRecordID  string   `json:"dest_record_id"`
	Status        string   `json:"status"`
	ChangedFields []string `json:"changed_fields,omitempty"`
	Error         string   `json:"error,omitempty"` // names fields and rules, never values
}

// FieldChange counts, per destination field, the values a sync would write:
// Changed in records that exist at the destination, New in new records.
type FieldChange struct {
	Field   string `json:"field"`
	Changed int    `json:"changed"`
	New     int    `json:"new"`
}

// Dropped is a site field the policy keeps at the site, and why.
type Dropped struct {
	Field    string `json:"field"`
	Form     string `json:"form"`
	Why      string `json:"why"`
	Detected string `json:"detected,omitempty"`
}

// Run performs the dry run. It returns an error when it cannot run at all
// (unknown site, unreadable token, policy refused, REDCap unreachable).
func Run(ctx context.Context, o Options) (*Report, error) {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	net := o.Network
	site, ok := net.Site(o.Site)
	if !ok {
		return nil, fmt.Errorf("site %q is not in %s (sites: %s)", o.Site, net.Path(), strings.Join(net.SiteIDs(), ", "))
	}
	src, err := SiteClient(site, log)
	if err != nil {
		return nil, err
	}
	dst, err := DestinationClient(net, log)
	if err != nil {
		return nil, err
	}
	meta, err := sitemeta.Fetch(ctx, src, site.ID, retry.Policy{MaxElapsed: 2 * time.Minute})
	if err != nil {
		return nil, fmt.Errorf("site %s: metadata: %w", site.ID, err)
	}
	pol, err := policy.Load(site.Policy)
	if err != nil {
		return nil, fmt.Errorf("site %s: %w", site.ID, err)
	}
	popts, err := PolicyOptions(net, site)
	if err != nil {
		return nil, err
	}
	c, err := policy.Compile(pol, meta, popts)
	if err != nil {
		return nil, err
	}
	r := &Report{
		Site: site.ID, Policy: site.Policy, PolicyName: pol.Name, PolicyVersion: c.Version(),
		RecordIDField: c.RecordIDField(), ExportFields: c.ExportFields(), Counts: map[string]int{},
		OverwriteBlanks: net.Destination.OverwriteBlanks, Files: []FileResult{}, FileCounts: map[string]int{}, FilesCompared: o.Files,
	}
	for _, d := range c.Decisions() {
		if d.Dropped() {
			r.Dropped = append(r.Dropped, Dropped{Field: d.Field, Form: d.Form, Why: d.By, Detected: strings.Join(d.Reasons, "; ")})
		}
	}
	defer func() { r.SiteCalls, r.DestCalls = int(src.Calls()), int(dst.Calls()) }()

	destFields, err := dst.ExportMetadata(ctx)
	if err != nil {
		return nil, fmt.Errorf("destination: metadata: %w", err)
	}
	if err := c.CheckDestination(destFields); err != nil {
		var de *policy.DestinationError
		if errors.As(err, &de) {
			r.DestinationProblems = de.Mismatches
		} else {
			r.DestinationProblems = []string{err.Error()}
		}
	}
	destIDField := ""
	destHas := map[string]bool{}
	if len(destFields) > 0 {
		destIDField = destFields[0].FieldName
	}
	for _, f := range destFields {
		destHas[f.FieldName] = true
		if f.FieldType == "checkbox" {
			// Checkbox columns are asked for by base name.
			destHas[f.FieldName+"___"] = true
		}
	}
	// Ask the destination only for fields the policy writes and it has.
	var want []string
	seen := map[string]bool{}
	for _, col := range c.DestFields() {
		name := col
		if i := strings.Index(col, "___"); i > 0 {
			name = col[:i]
		}
		if (destHas[name] || strings.HasSuffix(name, "_complete")) && !seen[name] {
			seen[name] = true
			want = append(want, name)
		}
	}
	files := fileCompare{plans: c.Files(), src: src, dst: dst, download: o.Files}
	for _, f := range files.destFields(destHas) {
		if !seen[f] {
			seen[f] = true
			want = append(want, f)
		}
	}
	if destIDField != "" && !seen[destIDField] {
		want = append([]string{destIDField}, want...)
	}

	ids := o.Records
	if len(ids) == 0 {
		if ids, err = src.ExportRecordIDs(ctx, c.RecordIDField(), zeroTime); err != nil {
			return nil, fmt.Errorf("site %s: record IDs: %w", site.ID, err)
		}
	}
	fieldCount := map[string]*FieldChange{}
	count := func(field string, isNew bool) {
		fc := fieldCount[field]
		if fc == nil {
			fc = &FieldChange{Field: field}
			fieldCount[field] = fc
		}
		if isNew {
			fc.New++
		} else {
			fc.Changed++
		}
	}
	current := map[string]bool{}
	batch := site.BatchSize
	if batch <= 0 {
		batch = config.DefaultSiteBatchSize
	}
	for i := 0; i < len(ids); i += batch {
		part := ids[i:min(i+batch, len(ids))]
		rows, err := src.ExportRecords(ctx, redcap.ExportParams{Records: part, Fields: c.ExportFields(), Events: c.ExportEvents()})
		if err != nil {
			return nil, fmt.Errorf("site %s: export batch %d: %w", site.ID, i/batch+1, err)
		}
		recs := groupRows(rows, c.RecordIDField())
		var cleaned []messages.RecordCleaned
		var destIDs, srcIDs []string
		for _, id := range part {
			dest := c.DestRecordID(id)
			current[dest] = true
			srcRows, ok := recs[id]
			if !ok {
				continue // no longer at the site, or nothing approved in it
			}
			out, err := c.Apply(messages.RecordExported{V: messages.V, Site: site.ID, RunID: "dry-run", RecordID: id, Rows: srcRows})
			if err != nil {
				r.Records = append(r.Records, RecordResult{DestRecordID: dest, Status: StatusRefused, Error: err.Error()})
				continue
			}
			cleaned = append(cleaned, out)
			destIDs, srcIDs = append(destIDs, dest), append(srcIDs, id)
		}
		if len(cleaned) == 0 {
			continue
		}
		var destRows []messages.Row
		if destIDField != "" {
			destRows, err = dst.ExportRecords(ctx, redcap.ExportParams{Records: destIDs, Fields: want, ExportDataAccessGroups: popts.DAG != ""})
			if err != nil {
				return nil, fmt.Errorf("destination: export batch %d: %w", i/batch+1, err)
			}
		}
		existing := groupRows(destRows, destIDField)
		for k, rec := range cleaned {
			res := compare(rec, existing[rec.DestRecordID], net.Destination.OverwriteBlanks, count)
			r.Records = append(r.Records, res)
			if len(files.plans) == 0 {
				continue
			}
			byKey := map[string]messages.Row{}
			for _, d := range existing[rec.DestRecordID] {
				byKey[rowKey(d)] = d
			}
			fs, err := files.compare(ctx, site.ID, srcIDs[k], rec.DestRecordID, recs[srcIDs[k]], byKey)
			if err != nil {
				return nil, err
			}
			r.Files = append(r.Files, fs...)
		}
	}
	if site.PropagateDeletions && destIDField != "" && len(o.Records) == 0 {
		all, err := dst.ExportRecordIDs(ctx, destIDField, zeroTime)
		if err != nil {
			return nil, fmt.Errorf("destination: record IDs: %w", err)
		}
		prefix := popts.Namespace + "-"
		for _, id := range all {
			if strings.HasPrefix(id, prefix) && !current[id] {
				r.Records = append(r.Records, RecordResult{DestRecordID: id, Status: StatusDeleted})
			}
		}
	}
	for _, rr := range r.Records {
		r.Counts[rr.Status]++
	}
	for _, f := range r.Files {
		r.FileCounts[f.Status]++
	}
	for _, fc := range fieldCount {
		r.Fields = append(r.Fields, *fc)
	}
	sort.Slice(r.Fields, func(i, j int) bool { return r.Fields[i].Field < r.Fields[j].Field })
	log.Info("dry run done", "site", site.ID, "policy_version", r.PolicyVersion, "new", r.Counts[StatusNew],
		"changed", r.Counts[StatusChanged], "unchanged", r.Counts[StatusUnchanged], "refused", r.Counts[StatusRefused],
		"deleted", r.Counts[StatusDeleted], "destination_problems", len(r.DestinationProblems))
	return r, nil
}

// rowKey identifies a row within a record: event, repeating form, instance.
func rowKey(r messages.Row) string {
	inst := r["redcap_repeat_instance"]
	if r["redcap_repeat_instrument"] == "" && r["redcap_event_name"] == "" && inst == "" {
		return ""
	}
	return r["redcap_event_name"] + "\x00" + r["redcap_repeat_instrument"] + "\x00" + inst
}

var systemCols = map[string]bool{"redcap_event_name": true, "redcap_repeat_instrument": true, "redcap_repeat_instance": true}

// compare decides what importing rec would change. A value the import would
// not write (blank without overwrite) is no change.
func compare(rec messages.RecordCleaned, dest []messages.Row, overwriteBlanks bool, count func(string, bool)) RecordResult {
	res := RecordResult{DestRecordID: rec.DestRecordID}
	isNew := len(dest) == 0
	byKey := map[string]messages.Row{}
	for _, r := range dest {
		byKey[rowKey(r)] = r
	}
	changed := map[string]bool{}
	for _, row := range rec.Rows {
		d := byKey[rowKey(row)]
		for col, v := range row {
			if systemCols[col] {
				continue
			}
			old, had := d[col]
			if v == "" && (!overwriteBlanks || !had || old == "") {
				continue
			}
			if d != nil && had && old == v {
				continue
			}
			if d == nil && !isNew && v == "" {
				continue
			}
			if !changed[col] {
				changed[col] = true
			}
			count(col, isNew)
		}
	}
	switch {
	case isNew:
		res.Status = StatusNew
	case len(changed) > 0:
		res.Status = StatusChanged
		for col := range changed {
			res.ChangedFields = append(res.ChangedFields, col)
		}
		sort.Strings(res.ChangedFields)
	default:
		res.Status = StatusUnchanged
	}
	return res
}

func groupRows(rows []messages.Row, idField string) map[string][]messages.Row {
	out := map[string][]messages.Row{}
	for _, r := range rows {
		id := r[idField]
		out[id] = append(out[id], r)
	}
	return out
}
