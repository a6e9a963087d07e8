// Package verifier proves the destination equals the sites: for one site it
// exports the approved fields (batched, rate-limited and retried like the
// exporter, with the same client), applies the site's policy through the
// transformer's code path (the site kit's compiled policy, Apply), exports
// the destination's records of the site's namespace and compares them
// record by record on a content hash of the transformed rows (event and
// repeat instance included), and files by SHA-256. It reports counts, field
// names and destination record IDs, never a value. Memory is flat in the
// record count: records are compared batch by batch; only ID lists are
// held.
package verifier

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/pipeline/retry"
	"github.com/redcap-relay/relay/services/internal/pipeline/sitekit"
	"github.com/redcap-relay/relay/services/internal/pipeline/sitemeta"
	"github.com/redcap-relay/relay/services/internal/policy"
	"github.com/redcap-relay/relay/services/internal/redcap"
)

// Deps is what a verification needs.
type Deps struct {
	// Kit gives the site's and the destination's clients (their tokens)
	// and the site's compiled policy.
	Kit *sitekit.Kit
	// JS, when set, reads the site's state (the policy version of its last
	// sync) and is where Publish sends results.
	JS     jetstream.JetStream
	Logger *slog.Logger
	// SkipFiles compares only whether kept files are present at both ends,
	// without downloading them to compare their SHA-256.
	SkipFiles bool

	// shared, when set, is the destination's record-ID list read once for
	// every site of one verification round (Run), not once per site.
	shared *sharedIDs
}

// sharedIDs reads the destination's record-ID list once.
type sharedIDs struct {
	once sync.Once
	ids  []string
	err  error
}

func (s *sharedIDs) get(f func() ([]string, error)) ([]string, error) {
	s.once.Do(func() { s.ids, s.err = f() })
	return s.ids, s.err
}

// Outcome is a verification with what a repair needs: the site record IDs
// to export again (missing and stale) and the destination IDs of extras
// (never in the JSON: a site ID can be hidden by the policy).
type Outcome struct {
	Result  messages.VerifyResult
	Records []string // site record IDs to export again
	Extras  []string // destination record IDs the site does not have

	destOf map[string]string // site record ID -> destination ID, of Records
}

// Site verifies one site. A site (or the destination) that cannot be read
// gives a result with status "error" and the reason, and the error.
func Site(ctx context.Context, d Deps, site string) (messages.VerifyResult, error) {
	o, err := Compare(ctx, d, site)
	return o.Result, err
}

// Compare verifies one site and keeps what a repair needs.
func Compare(ctx context.Context, d Deps, siteID string) (*Outcome, error) {
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	v := &run{d: d, log: d.Logger.With("site", siteID), out: &Outcome{destOf: map[string]string{}}}
	r := &v.out.Result
	r.V, r.Site, r.StartedAt, r.Fields = messages.V, siteID, time.Now().UTC(), map[string]int{}
	err := v.compare(ctx, siteID)
	r.FinishedAt = time.Now().UTC()
	if err != nil {
		r.Status, r.Error = messages.VerifyError, err.Error()
		return v.out, err
	}
	r.Status = messages.VerifyEqual
	if r.Counts.Differences() > 0 {
		r.Status = messages.VerifyDifferences
	}
	if len(r.Fields) == 0 {
		r.Fields = nil
	}
	v.log.Info("verified", "status", r.Status, "records", r.Counts.Records, "equal", r.Counts.Equal, "missing", r.Counts.Missing,
		"stale", r.Counts.Stale, "extra", r.Counts.Extra, "refused", r.Counts.Refused, "files_compared", r.Files.Compared)
	return v.out, nil
}

type run struct {
	d   Deps
	log *slog.Logger
	out *Outcome

	site     *config.Site
	src, dst *redcap.Client
	c        *policy.Compiled
	snap     *messages.MetadataSnapshot
	retry    retry.Policy
	destID   string   // the destination's record-ID field
	want     []string // destination fields to read
	fileCols map[string]bool
	blanks   bool // the importer overwrites with blanks

	mu sync.Mutex // guards out while batches run at once
}

func (v *run) compare(ctx context.Context, siteID string) error {
	kit := v.d.Kit
	site, err := kit.Site(siteID)
	if err != nil {
		return err
	}
	v.site = site
	v.blanks = kit.Network().Destination.OverwriteBlanks
	// Every failed attempt is said (a site down is retried for retry_for
	// before its result says why): never a silent wait.
	v.retry = retry.Policy{MaxElapsed: site.RetryFor.D(), Budget: retry.NewBudget(site.RetryFor.D()),
		Notify: func(err error, attempt int, next time.Duration) {
			v.log.Warn("call failed; retrying within the site's retry_for", "attempt", attempt,
				"retry_in", next.Round(time.Millisecond), "retry_for", site.RetryFor.D(), "err", err)
		}}
	if v.src, err = kit.Client(site.ID); err != nil {
		return err
	}
	if v.dst, err = kit.Destination(); err != nil {
		return err
	}
	// The policy as the transformer applies it: compiled by the kit for
	// the site's dictionary as it is now.
	if v.snap, err = sitemeta.Fetch(ctx, v.src, site.ID, v.retry); err != nil {
		return fmt.Errorf("site %s: metadata: %w", site.ID, err)
	}
	if v.c, err = kit.Policy(site.ID, v.snap); err != nil {
		return err
	}
	r := &v.out.Result
	r.Policy.Current = v.c.Version()
	if st, ok := v.siteState(ctx); ok {
		r.Policy.Destination = st.PolicyVersion
		r.Policy.Changed = st.PolicyVersion != "" && st.PolicyVersion != r.Policy.Current
	}
	if err := v.destination(ctx); err != nil {
		return err
	}

	// ID lists: the site's, and the destination's of the site's namespace.
	ids, err := retry.Value(ctx, v.retry, func() ([]string, error) {
		return v.src.ExportRecordIDs(ctx, v.c.RecordIDField(), time.Time{})
	})
	if err != nil {
		return fmt.Errorf("site %s: record IDs: %w", site.ID, err)
	}
	read := func() ([]string, error) {
		return retry.Value(ctx, v.retry, func() ([]string, error) {
			return v.dst.ExportRecordIDs(ctx, v.destID, time.Time{})
		})
	}
	var all []string
	if v.d.shared != nil {
		all, err = v.d.shared.get(read)
	} else {
		all, err = read()
	}
	if err != nil {
		return destError(kit, err)
	}
	present := map[string]bool{}
	for _, id := range all {
		if v.ownNamespace(id) {
			present[id] = true
		}
	}
	all = nil
	ids = dedupe(ids)
	current := make(map[string]bool, len(ids))
	for _, id := range ids {
		current[v.c.DestRecordID(id)] = true
	}

	if err := v.batches(ctx, ids, present); err != nil {
		return err
	}
	var extras []string
	for id := range present {
		if !current[id] {
			extras = append(extras, id)
		}
	}
	sort.Strings(extras)
	if site.PropagateDeletions {
		r.Counts.Extra = len(extras)
		r.Extra = capIDs(extras, &r.Truncated)
		v.out.Extras = extras
	} else {
		r.Counts.ExtraKept = len(extras)
	}
	if r.Policy.Changed {
		r.Policy.StaleByPolicy = r.Counts.Stale
	}
	sort.Strings(r.Missing)
	sort.Strings(r.Stale)
	sort.Strings(r.Refused)
	r.Missing = capIDs(r.Missing, &r.Truncated)
	r.Stale = capIDs(r.Stale, &r.Truncated)
	r.Refused = capIDs(r.Refused, &r.Truncated)
	sort.Strings(v.out.Records)
	return nil
}

// siteState is the exporter's state of the site (the policy version of its
// last complete run).
func (v *run) siteState(ctx context.Context) (messages.SiteState, bool) {
	var st messages.SiteState
	if v.d.JS == nil {
		return st, false
	}
	kv, err := v.d.JS.KeyValue(ctx, messages.BucketSiteState)
	if err != nil {
		return st, false
	}
	e, err := kv.Get(ctx, v.site.ID)
	if err != nil || json.Unmarshal(e.Value(), &st) != nil {
		return st, false
	}
	return st, true
}

// destination reads the destination's dictionary and decides which of its
// fields to read.
func (v *run) destination(ctx context.Context) error {
	fields, err := retry.Value(ctx, v.retry, func() ([]messages.Field, error) { return v.dst.ExportMetadata(ctx) })
	if err != nil {
		return destError(v.d.Kit, err)
	}
	if len(fields) == 0 {
		return fmt.Errorf("destination (%s): its data dictionary is empty", v.d.Kit.Network().Destination.URL)
	}
	v.destID = fields[0].FieldName
	has := map[string]bool{}
	for _, f := range fields {
		has[f.FieldName] = true
	}
	seen := map[string]bool{v.destID: true}
	v.want = []string{v.destID}
	for _, col := range v.c.DestFields() {
		name := col
		if i := strings.Index(col, "___"); i > 0 {
			name = col[:i] // checkbox columns are asked for by base name
		}
		if (has[name] || strings.HasSuffix(name, "_complete")) && !seen[name] {
			seen[name] = true
			v.want = append(v.want, name)
		}
	}
	v.fileCols = map[string]bool{}
	for _, fp := range v.c.Files() {
		v.fileCols[fp.Dest] = true
		if has[fp.Dest] && !seen[fp.Dest] {
			seen[fp.Dest] = true
			v.want = append(v.want, fp.Dest)
		}
	}
	return nil
}

// destError names the destination and, for a refusal, the right missing.
func destError(kit *sitekit.Kit, err error) error {
	url := kit.Network().Destination.URL
	var re *redcap.Error
	if errors.As(err, &re) && (re.Status == 401 || re.Status == 403) {
		return fmt.Errorf("destination (%s): its token may not export records or the data dictionary (the 'API Export' right is missing, or the token is not valid): relay verify reads the destination; grant the destination token's user API Export: %w", url, err)
	}
	return fmt.Errorf("destination (%s): %w", url, err)
}

// ownNamespace reports whether a destination ID is of this site: its
// namespace prefix, and not a longer namespace of another site.
func (v *run) ownNamespace(id string) bool {
	if !strings.HasPrefix(id, v.site.Namespace+"-") {
		return false
	}
	for _, s := range v.d.Kit.Network().Sites {
		if len(s.Namespace) > len(v.site.Namespace) && strings.HasPrefix(id, s.Namespace+"-") {
			return false
		}
	}
	return true
}

// batches compares the site's records batch by batch, up to the site's
// export concurrency at once (the client's rate limit still applies).
func (v *run) batches(ctx context.Context, ids []string, present map[string]bool) error {
	size := v.site.BatchSize
	if size <= 0 {
		size = config.DefaultSiteBatchSize
	}
	conc := max(1, v.site.ExportConcurrency)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, conc)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for i, n := 0, 1; i < len(ids); i, n = i+size, n+1 {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func(part []string, n int) {
			defer wg.Done()
			defer func() { <-sem }()
			if err := v.batch(ctx, part, present); err != nil {
				once.Do(func() { first = fmt.Errorf("batch %d: %w", n, err); cancel() })
			}
		}(ids[i:min(i+size, len(ids))], n)
	}
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}

// batch compares one batch of site records with the destination.
func (v *run) batch(ctx context.Context, part []string, present map[string]bool) error {
	site, c := v.site, v.c
	rows, err := retry.Value(ctx, v.retry, func() ([]messages.Row, error) {
		return v.src.ExportRecords(ctx, redcap.ExportParams{Records: part, Fields: c.ExportFields(), Events: c.ExportEvents(),
			ExportSurveyFields: c.SurveyTimestamps(), ExportDataAccessGroups: c.NeedsSiteDAG()})
	})
	if err != nil {
		return fmt.Errorf("site %s: export records: %w", site.ID, err)
	}
	recs := group(rows, c.RecordIDField())
	type one struct {
		src     string
		cleaned messages.RecordCleaned
	}
	var todo []one
	var destIDs []string
	res := batchResult{fields: map[string]int{}}
	for _, id := range part {
		srcRows, ok := recs[id]
		if !ok {
			continue // deleted at the site since the ID list
		}
		res.records++
		out, err := c.Apply(messages.RecordExported{V: messages.V, Site: site.ID, RunID: "verify", RecordID: id, MetadataHash: v.snap.Hash, Rows: srcRows})
		if err != nil {
			res.refused = append(res.refused, out.DestRecordID)
			continue
		}
		if !present[out.DestRecordID] {
			if len(out.Rows) == 0 {
				res.equal++ // nothing approved in it: nothing to import
				continue
			}
			res.missing = append(res.missing, out.DestRecordID)
			res.repair, res.repairDest = append(res.repair, id), append(res.repairDest, out.DestRecordID)
			v.missingFiles(out, srcRows, &res)
			continue
		}
		todo = append(todo, one{id, out})
		destIDs = append(destIDs, out.DestRecordID)
	}
	if len(todo) > 0 {
		drows, err := retry.Value(ctx, v.retry, func() ([]messages.Row, error) {
			return v.dst.ExportRecords(ctx, redcap.ExportParams{Records: destIDs, Fields: v.want, ExportDataAccessGroups: v.dagCompared()})
		})
		if err != nil {
			return destError(v.d.Kit, err)
		}
		dest := group(drows, v.destID)
		for _, t := range todo {
			diff := v.diff(t.cleaned.Rows, dest[t.cleaned.DestRecordID])
			fdiff, err := v.files(ctx, t.src, t.cleaned.DestRecordID, recs[t.src], dest[t.cleaned.DestRecordID], &res)
			if err != nil {
				return err
			}
			for _, f := range fdiff {
				if !contains(diff, f) {
					diff = append(diff, f)
				}
			}
			if len(diff) == 0 {
				res.equal++
				continue
			}
			res.stale = append(res.stale, t.cleaned.DestRecordID)
			res.repair, res.repairDest = append(res.repair, t.src), append(res.repairDest, t.cleaned.DestRecordID)
			for _, f := range diff {
				res.fields[f]++
			}
		}
	}
	v.merge(res)
	return nil
}

// dagCompared is whether the cleaned rows carry a DAG to compare (the
// destination's DAG column is read only then).
func (v *run) dagCompared() bool { return v.site.DAG != "" || v.c.NeedsSiteDAG() }

type batchResult struct {
	records, equal          int
	missing, stale, refused []string
	repair, repairDest      []string
	fields                  map[string]int
	files                   messages.VerifyFiles
}

func (v *run) merge(b batchResult) {
	v.mu.Lock()
	defer v.mu.Unlock()
	r := &v.out.Result
	r.Counts.Records += b.records
	r.Counts.Equal += b.equal
	r.Counts.Missing += len(b.missing)
	r.Counts.Stale += len(b.stale)
	r.Counts.Refused += len(b.refused)
	r.Missing = append(r.Missing, b.missing...)
	r.Stale = append(r.Stale, b.stale...)
	r.Refused = append(r.Refused, b.refused...)
	for f, n := range b.fields {
		r.Fields[f] += n
	}
	r.Files.Compared += b.files.Compared
	r.Files.Equal += b.files.Equal
	r.Files.Missing += b.files.Missing
	r.Files.Differ += b.files.Differ
	r.Files.Extra += b.files.Extra
	v.out.Records = append(v.out.Records, b.repair...)
	for i, id := range b.repair {
		v.out.destOf[id] = b.repairDest[i]
	}
}

// systemCols identify a row; they are compared as its key.
var systemCols = map[string]bool{"redcap_event_name": true, "redcap_repeat_instrument": true, "redcap_repeat_instance": true}

// rowKey identifies a row within a record: event, repeating form, instance.
func rowKey(r messages.Row) string {
	return r["redcap_event_name"] + "\x00" + r["redcap_repeat_instrument"] + "\x00" + r["redcap_repeat_instance"]
}

// diff compares a record's transformed rows with its destination rows: on
// a content hash of the rows as the import would leave them (the
// destination's values of the transformed columns, by event and repeat
// instance), and only when the hashes differ field by field. It returns the
// destination fields that differ (never values).
func (v *run) diff(want, dest []messages.Row) []string {
	byKey := make(map[string]messages.Row, len(dest))
	for _, d := range dest {
		byKey[rowKey(d)] = d
	}
	norm := make([]messages.Row, 0, len(want))
	got := make([]messages.Row, 0, len(want))
	for _, w := range want {
		d := byKey[rowKey(w)]
		wr, gr := messages.Row{}, messages.Row{}
		for col, val := range w {
			if v.fileCols[col] {
				continue // compared by SHA-256
			}
			wr[col] = val
			dv, had := d[col]
			if systemCols[col] {
				dv, had = val, true
			}
			if val == "" && (!v.blanks || !had) {
				dv = "" // a blank the import does not write is no difference
			}
			gr[col] = dv
		}
		norm, got = append(norm, wr), append(got, gr)
	}
	sortRows(norm)
	sortRows(got)
	if messages.HashRows(norm) == messages.HashRows(got) && !v.extraRows(want, byKey) {
		return nil
	}
	var out []string
	seen := map[string]bool{}
	for i := range norm {
		for col, val := range norm[i] {
			if got[i][col] != val && !seen[col] {
				seen[col] = true
				out = append(out, col)
			}
		}
	}
	if v.extraRows(want, byKey) && !seen["(rows)"] {
		out = append(out, "(rows)")
	}
	sort.Strings(out)
	return out
}

// extraRows reports destination rows (events, repeat instances) with a
// value in a transformed column that the site's record no longer has.
func (v *run) extraRows(want []messages.Row, dest map[string]messages.Row) bool {
	keys := make(map[string]bool, len(want))
	for _, w := range want {
		keys[rowKey(w)] = true
	}
	for k, d := range dest {
		if keys[k] {
			continue
		}
		for col, val := range d {
			if val != "" && !systemCols[col] && col != v.destID && col != "redcap_data_access_group" && !strings.HasSuffix(col, "_complete") {
				return true
			}
		}
	}
	return false
}

func sortRows(rows []messages.Row) {
	sort.SliceStable(rows, func(i, j int) bool { return rowKey(rows[i]) < rowKey(rows[j]) })
}

// missingFiles counts the kept files of a record missing at the destination.
func (v *run) missingFiles(out messages.RecordCleaned, srcRows []messages.Row, res *batchResult) {
	for _, row := range srcRows {
		for _, fp := range v.c.Files() {
			if row[fp.Field] != "" {
				res.files.Missing++
			}
		}
	}
}

// files compares a record's kept files by SHA-256 (downloaded, hashed,
// never kept) and returns the destination file fields that differ.
func (v *run) files(ctx context.Context, srcID, destID string, srcRows, dest []messages.Row, res *batchResult) ([]string, error) {
	plans := v.c.Files()
	if len(plans) == 0 {
		return nil, nil
	}
	byKey := map[string]messages.Row{}
	for _, d := range dest {
		byKey[rowKey(d)] = d
	}
	var out []string
	seen := map[string]bool{}
	for _, row := range srcRows {
		key := rowKey(row)
		d := byKey[key]
		for _, fp := range plans {
			sv, ok := row[fp.Field]
			if !ok {
				continue
			}
			seen[key+"\x00"+fp.Dest] = true
			dv := d[fp.Dest]
			event := row["redcap_event_name"]
			inst, _ := strconv.Atoi(row["redcap_repeat_instance"])
			switch {
			case sv == "" && dv == "":
				continue
			case sv == "":
				res.files.Extra++
				out = append(out, fp.Dest)
				continue
			case dv == "":
				res.files.Missing++
				out = append(out, fp.Dest)
				continue
			}
			if v.d.SkipFiles {
				continue
			}
			res.files.Compared++
			sum, err := hashFile(ctx, v.src, redcap.FileRef{Record: srcID, Field: fp.Field, Event: event, Instance: inst})
			if err != nil {
				return nil, fmt.Errorf("site %s: record %s, field %s, event %q, instance %d: file download: %w", v.site.ID, destID, fp.Field, event, inst, err)
			}
			dsum, err := hashFile(ctx, v.dst, redcap.FileRef{Record: destID, Field: fp.Dest, Event: event, Instance: inst})
			if err != nil {
				return nil, fmt.Errorf("destination: record %s, field %s, event %q, instance %d: file download: %w", destID, fp.Dest, event, inst, err)
			}
			if sum == dsum {
				res.files.Equal++
			} else {
				res.files.Differ++
				out = append(out, fp.Dest)
			}
		}
	}
	for key, d := range byKey {
		for _, fp := range plans {
			if d[fp.Dest] != "" && !seen[key+"\x00"+fp.Dest] {
				res.files.Extra++
				out = append(out, fp.Dest)
			}
		}
	}
	return out, nil
}

// hashFile downloads a file into SHA-256, keeping nothing of it.
func hashFile(ctx context.Context, c *redcap.Client, ref redcap.FileRef) (string, error) {
	h := sha256.New()
	if _, err := c.ExportFile(ctx, ref, h); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func group(rows []messages.Row, idField string) map[string][]messages.Row {
	out := map[string][]messages.Row{}
	for _, r := range rows {
		out[r[idField]] = append(out[r[idField]], r)
	}
	return out
}

func dedupe(ids []string) []string {
	seen := make(map[string]struct{}, len(ids))
	out := ids[:0]
	for _, id := range ids {
		if _, ok := seen[id]; !ok {
			seen[id] = struct{}{}
			out = append(out, id)
		}
	}
	return out
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func capIDs(ids []string, truncated *bool) []string {
	if len(ids) > messages.MaxVerifyIDs {
		*truncated = true
		return ids[:messages.MaxVerifyIDs]
	}
	return ids
}
