package heal

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/heal/vlmd"
	"github.com/redcap-relay/relay/services/internal/ops/dryrun"
	"github.com/redcap-relay/relay/services/internal/pipeline/app"
	"github.com/redcap-relay/relay/services/internal/pipeline/broker"
	"github.com/redcap-relay/relay/services/internal/pipeline/exportreq"
	"github.com/redcap-relay/relay/services/internal/pipeline/retry"
	"github.com/redcap-relay/relay/services/internal/pipeline/sitemeta"
	"github.com/redcap-relay/relay/services/internal/policy"
	"github.com/redcap-relay/relay/services/internal/protocol"
	"github.com/redcap-relay/relay/services/internal/tools/demo"
	"github.com/redcap-relay/relay/services/internal/tools/redcapsim"
)

// demoNet is the demo network after one full sync through the real
// pipeline (simulator over HTTP, embedded NATS, every service).
type demoNet struct {
	sim   *redcapsim.Server
	setup *demo.Setup
	net   *config.Network
}

func syncedDemo(t *testing.T) *demoNet {
	t.Helper()
	sim, err := redcapsim.New(redcapsim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	url, err := sim.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	setup, err := demo.Build(sim, url, demo.Options{Dir: t.TempDir(), Seed: 2026})
	if err != nil {
		t.Fatal(err)
	}
	net, err := config.Load(setup.NetworkFile)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	stack, err := app.Start(ctx, app.Options{Network: net, Embedded: true, DataDir: t.TempDir(), NATSPort: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer stack.Close()
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- stack.Run(runCtx, app.All...) }()
	defer func() { stop(); <-done }()
	now := time.Now()
	runs := map[string]string{}
	want := 0
	for _, s := range demo.Sites {
		req := exportreq.New(s.ID, now, true, "test")
		if err := exportreq.Publish(ctx, stack.JS, req); err != nil {
			t.Fatal(err)
		}
		runs[s.ID] = req.RunID
		want += setup.Expected[s.ID]
	}
	for {
		select {
		case <-ctx.Done():
			t.Fatalf("the demo sync did not finish: %v", ctx.Err())
		case err := <-done:
			t.Fatalf("a service stopped: %v", err)
		case <-time.After(200 * time.Millisecond):
		}
		finished := 0
		for site, run := range runs {
			var ev messages.RunEvent
			if broker.LastJSON(ctx, stack.JS, messages.StreamAudit, messages.RunSubject(site), &ev) && ev.RunID == run {
				if ev.Phase == messages.PhaseFailed {
					t.Fatalf("site %s: run failed: %s", site, ev.Error)
				}
				if ev.Phase == messages.PhaseExported {
					finished++
				}
			}
		}
		if finished == len(runs) && broker.Drained(ctx, stack.JS) && len(recordIDs(t, sim, setup.Projects["destination"])) == want {
			return &demoNet{sim: sim, setup: setup, net: net}
		}
	}
}

func recordIDs(t *testing.T, sim *redcapsim.Server, pid int) map[string]bool {
	t.Helper()
	rows, err := sim.ExportRows(pid)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, r := range rows {
		ids[r["record_id"]] = true
	}
	return ids
}

func readCSV(t *testing.T, path string) ([]string, [][]string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	recs, err := csv.NewReader(f).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	return recs[0], recs[1:]
}

func exportPkg(t *testing.T, n *config.Network, o Options) (*Result, string) {
	t.Helper()
	p, err := protocol.HEALAdult()
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "pkg")
	o.Network, o.Protocol, o.Out, o.Validate = n, p, dir, true
	if o.BatchSize == 0 {
		o.BatchSize = 97 // several batches, the last one short
	}
	res, err := Export(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Violations) > 0 {
		t.Fatalf("the package does not validate:\n%s", strings.Join(res.Violations, "\n"))
	}
	return res, dir
}

// The demo network, synced through the real pipeline, exported: the data
// file holds exactly the destination's records, its columns are exactly
// the dictionary's fields, the manifest's checksums match, the CDE
// mappings are there, and nothing the policies keep at the sites is in
// any file of the package.
func TestDemoNetworkPackage(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a full sync of the demo network")
	}
	d := syncedDemo(t)
	res, dir := exportPkg(t, d.net, Options{})

	// Dictionary: JSON and CSV name the same fields, which are the data's columns.
	var dict struct {
		Fields []vlmd.Field `json:"fields"`
	}
	b, err := os.ReadFile(filepath.Join(dir, FileDictJSON))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &dict); err != nil {
		t.Fatal(err)
	}
	var names []string
	fields := map[string]vlmd.Field{}
	for _, f := range dict.Fields {
		names = append(names, f.Name)
		fields[f.Name] = f
	}
	header, rows := readCSV(t, filepath.Join(dir, res.DataFile))
	if strings.Join(header, ",") != strings.Join(names, ",") {
		t.Fatalf("data columns != dictionary fields:\n%v\n%v", header, names)
	}
	_, dictRows := readCSV(t, filepath.Join(dir, FileDictCSV))
	if len(dictRows) != len(names) {
		t.Fatalf("CSV dictionary has %d rows, JSON %d fields", len(dictRows), len(names))
	}

	// Data: exactly the destination's rows (projected on the columns), in order.
	destRows, err := d.sim.ExportRows(d.setup.Projects["destination"])
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(destRows) || res.Rows != len(rows) {
		t.Fatalf("data file has %d rows (result says %d), the destination %d", len(rows), res.Rows, len(destRows))
	}
	if res.Records != len(recordIDs(t, d.sim, d.setup.Projects["destination"])) {
		t.Fatalf("result says %d records", res.Records)
	}
	key := func(r messages.Row) string {
		return r["record_id"] + "|" + r["redcap_event_name"] + "|" + r["redcap_repeat_instrument"] + "|" + r["redcap_repeat_instance"]
	}
	byKey := map[string]messages.Row{}
	for _, r := range destRows {
		byKey[key(r)] = r
	}
	for i, rec := range rows {
		got := messages.Row{}
		for j, h := range header {
			got[h] = rec[j]
		}
		want, ok := byKey[key(got)]
		if !ok {
			t.Fatalf("data row %d (%s) is not a destination row", i+2, key(got))
		}
		delete(byKey, key(got))
		for _, h := range header {
			if h == colDAG {
				site := strings.SplitN(got["record_id"], "-", 2)[0]
				if got[h] != site {
					t.Fatalf("row %d: DAG %q for a record of %s", i+2, got[h], site)
				}
				continue
			}
			if got[h] != want[h] {
				t.Fatalf("row %d (%s): column %s differs from the destination", i+2, key(got), h)
			}
		}
	}
	if len(byKey) != 0 {
		t.Fatalf("%d destination rows are missing from the data file", len(byKey))
	}

	// Manifest: every file but itself, sizes and MD5s as on disk.
	_, man := readCSV(t, filepath.Join(dir, FileManifest))
	if len(man) != 5 {
		t.Fatalf("manifest lists %d files, want 5: %v", len(man), man)
	}
	for _, m := range man {
		sum, n, err := fileMD5(filepath.Join(dir, m[0]))
		if err != nil || sum != m[2] || fmt.Sprint(n) != m[1] {
			t.Errorf("manifest %s: md5 %s bytes %s, on disk %s %d (%v)", m[0], m[2], m[1], sum, n, err)
		}
	}

	// Standards mappings: every field of a core instrument with a CDE id has
	// one naming the instrument and the library item; others have none.
	for _, name := range []string{"pegavgpainscl", "dem_sex", "gad2feelnervscl", "dem_race___98"} {
		f := fields[name]
		if len(f.StandardsMappings) != 1 || f.StandardsMappings[0].Instrument.Source != vlmd.SourceHEALCDE || f.StandardsMappings[0].Item.ID != name {
			t.Errorf("field %s: standards mapping %+v", name, f.StandardsMappings)
		}
	}
	if id := fields["pegavgpainscl"].StandardsMappings[0].Instrument.ID; id != "HEALCDE:peg" {
		t.Errorf("PEG's instrument id: %q", id)
	}
	for _, name := range []string{"record_id", "enroll_date", "med_mme", "opioid_mme_daily", "peg_complete", "redcap_event_name"} {
		if len(fields[name].StandardsMappings) != 0 {
			t.Errorf("field %s is outside the core instruments with CDE ids but has a mapping", name)
		}
	}
	if mv := fields["dem_hispanic"].MissingValues; strings.Join(mv, "|") != "98|99|" {
		t.Errorf("dem_hispanic's missing values from the library (98 Prefer not to answer, 99 Unknown): %q", mv)
	}
	warned := strings.Join(res.Warnings, "\n")
	for _, in := range []string{"opioid_mme", "whoqol2"} {
		if !strings.Contains(warned, "protocol instrument "+in+" ") || !strings.Contains(warned, "no HEAL CDE id") {
			t.Errorf("no warning names instrument %s, which has no CDE id: %s", in, warned)
		}
	}
	for _, r := range res.Checklist {
		if r.Status != CDEUsed {
			t.Errorf("checklist %s: %s (every demo site collects every core instrument)", r.Instrument, r.Status)
		}
	}

	// Nothing unreleased: the property of the policy engine over the package.
	noLeak(t, d, dir, header, rows)
}

// noLeak is the policy engine's property (policy/property_test.go) run
// over the package: no value of a field a site's policy does not release,
// drops or transforms appears in any file; no dropped column appears by
// name; every transformed value differs from the site's own.
func noLeak(t *testing.T, d *demoNet, dir string, header []string, rows [][]string) {
	t.Helper()
	var all bytes.Buffer
	_ = filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			b, _ := os.ReadFile(p)
			all.Write(b)
			all.WriteByte('\n')
		}
		return nil
	})
	text := all.String()
	cells := map[string]bool{}
	col := map[string]int{}
	for j, h := range header {
		col[h] = j
	}
	rowKey := func(id, ev, rep, inst string) string { return id + "|" + ev + "|" + rep + "|" + inst }
	byRow := map[string][]string{}
	for _, r := range rows {
		for _, c := range r {
			cells[c] = true
		}
		byRow[rowKey(r[0], r[col[colEvent]], r[col[colRepeat]], r[col[colInstance]])] = r
	}
	checkedValues, checkedTransforms := 0, 0
	for _, s := range demo.Sites {
		st, _ := d.net.Site(s.ID)
		siteRows, err := d.sim.ExportRows(d.setup.Projects[s.ID])
		if err != nil {
			t.Fatal(err)
		}
		c := compileSite(t, d.net, st)
		action := map[string]policy.Decision{}
		for _, dec := range c.Decisions() {
			action[dec.Field] = dec
		}
		for _, r := range siteRows {
			destID := c.DestRecordID(r["record_id"])
			for field, v := range r {
				dec, known := action[checkboxBase(field)]
				if v == "" || strings.HasPrefix(field, "redcap_") || strings.HasSuffix(field, "_complete") {
					continue
				}
				switch {
				case !known || dec.Action == policy.Drop:
					if _, inHeader := col[field]; inHeader && !known {
						t.Fatalf("site %s: column %s, which its policy does not release, is in the data", s.ID, field)
					}
					if dec.Action == policy.Drop {
						if _, inHeader := col[field]; inHeader {
							t.Fatalf("dropped field %s is a column of the data", field)
						}
						if strings.Contains(text, `"`+field+`"`) || strings.Contains(text, ","+field+",") {
							t.Fatalf("dropped field %s is named in the package", field)
						}
					}
					if len(v) >= 8 && strings.Contains(text, v) || len(v) >= 4 && cells[v] {
						t.Fatalf("site %s: a value of field %s (%s) is in the package", s.ID, field, dec.By)
					}
					checkedValues++
				case dec.Action == policy.Shift || dec.Action == policy.Year || dec.Action == policy.Zip3 || dec.Action == policy.Hash:
					if dec.Action == policy.Shift && c.ShiftDays(r["record_id"]) == 0 {
						continue
					}
					out, ok := byRow[rowKey(destID, r[colEvent], r[colRepeat], r[colInstance])]
					if !ok {
						t.Fatalf("site %s record %s: a row of the site is not in the data", s.ID, destID)
					}
					if out[col[dec.Dest]] == v {
						t.Fatalf("site %s record %s: field %s (rule %s) holds the site's own value", s.ID, destID, field, dec.Action)
					}
					if len(v) >= 8 && strings.Contains(text, v) && dec.Action != policy.Shift {
						t.Fatalf("site %s: a value of field %s (rule %s) is in the package", s.ID, field, dec.Action)
					}
					checkedTransforms++
				}
			}
		}
	}
	t.Logf("leak check: %d withheld site values and %d transformed ones checked against the package", checkedValues, checkedTransforms)
	if checkedValues < 100 || checkedTransforms < 100 {
		t.Fatalf("the leak check saw too little: %d withheld values, %d transformed", checkedValues, checkedTransforms)
	}
}

// compileSite compiles a site's policy against its dictionary as the
// pipeline does.
func compileSite(t testing.TB, n *config.Network, st *config.Site) *policy.Compiled {
	t.Helper()
	cl, err := dryrun.SiteClient(st, nil)
	if err != nil {
		t.Fatal(err)
	}
	meta, err := sitemeta.Fetch(context.Background(), cl, st.ID, retry.Policy{MaxElapsed: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.Load(st.Policy)
	if err != nil {
		t.Fatal(err)
	}
	popts, err := dryrun.PolicyOptions(n, st)
	if err != nil {
		t.Fatal(err)
	}
	c, err := policy.Compile(pol, meta, popts)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
