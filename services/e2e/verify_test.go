package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/pipeline/app"
	"github.com/redcap-relay/relay/services/internal/pipeline/broker"
	"github.com/redcap-relay/relay/services/internal/pipeline/sitekit"
	"github.com/redcap-relay/relay/services/internal/redcap"
	"github.com/redcap-relay/relay/services/internal/tools/redcapsim"
	"github.com/redcap-relay/relay/services/internal/tools/redcapsim/faults"
	"github.com/redcap-relay/relay/services/verifier"
)

// `relay verify` and `--repair`, end to end: the simulator over HTTP, a
// real NATS server, the whole pipeline running.

func (n *testNet) verify(repair bool, sites ...string) *verifier.Report {
	n.t.Helper()
	if len(sites) == 0 {
		sites = n.opts.sites
	}
	log, _ := testLogger(n.t)
	return verifier.Run(context.Background(), verifier.Options{Kit: sitekit.New(n.network, log), JS: n.stack.JS, Sites: sites,
		Repair: repair, RepairTimeout: 2 * time.Minute, Logger: log})
}

func (n *testNet) exportRequests() uint64 {
	st, err := n.stack.JS.Stream(context.Background(), messages.StreamExportRequests)
	if err != nil {
		n.t.Fatal(err)
	}
	info, err := st.Info(context.Background())
	if err != nil {
		n.t.Fatal(err)
	}
	return info.State.LastSeq
}

func siteResult(t *testing.T, rep *verifier.Report, site string) messages.VerifyResult {
	t.Helper()
	for _, r := range rep.Sites {
		if r.Site == site {
			return r
		}
	}
	t.Fatalf("no result for site %s", site)
	return messages.VerifyResult{}
}

func TestVerifyFindsExactlyTheFourDifferencesAndRepairFixesThem(t *testing.T) {
	sites := []string{"alpha", "beta", "gamma"}
	n := newNet(t, netOpts{sites: sites, records: 20, deletions: true})
	n.start(pipeline...)
	n.sync(false, time.Now())
	if rep := n.verify(false); rep.ExitCode() != verifier.ExitEqual {
		b, _ := json.MarshalIndent(rep, "", "  ")
		t.Fatalf("after a sync, verify: %s", b)
	}

	// At the destination: a value changed by hand, a record deleted, a
	// record added in a site's namespace. At a site: a record changed
	// without a change-log entry.
	if err := n.sim.ImportRows(n.dest, []messages.Row{{"record_id": "alpha-3", "score": "9"}}, true); err != nil {
		t.Fatal(err)
	}
	if err := n.sim.DeleteRecord(n.dest, "beta-4"); err != nil {
		t.Fatal(err)
	}
	if err := n.sim.ImportRows(n.dest, []messages.Row{{"record_id": "gamma-999", "score": "1", "survey_complete": "2"}}, false); err != nil {
		t.Fatal(err)
	}
	if err := n.sim.SetValuesSilently(n.sites["beta"], "7", []messages.Row{{"record_id": "7", "mood": "1", "weight": "99.5"}}); err != nil {
		t.Fatal(err)
	}

	rep := n.verify(false)
	if rep.ExitCode() != verifier.ExitDifferences {
		t.Fatalf("exit %d, want 1 (differences)", rep.ExitCode())
	}
	a, b, g := siteResult(t, rep, "alpha"), siteResult(t, rep, "beta"), siteResult(t, rep, "gamma")
	type seen struct {
		Missing, Stale, Extra []string
		Fields                map[string]int
	}
	got := map[string]seen{
		"alpha": {a.Missing, a.Stale, a.Extra, a.Fields},
		"beta":  {b.Missing, b.Stale, b.Extra, b.Fields},
		"gamma": {g.Missing, g.Stale, g.Extra, g.Fields},
	}
	want := map[string]seen{
		"alpha": {nil, []string{"alpha-3"}, nil, map[string]int{"score": 1}},
		"beta":  {[]string{"beta-4"}, []string{"beta-7"}, nil, map[string]int{"mood": 1, "weight": 1}},
		"gamma": {nil, nil, []string{"gamma-999"}, nil},
	}
	if !reflect.DeepEqual(got, want) {
		out, _ := json.MarshalIndent(rep, "", "  ")
		t.Fatalf("verify found %+v\nwant exactly %+v\n%s", got, want, out)
	}
	if a.Counts.Records != 20 || a.Counts.Equal != 19 || b.Counts.Equal != 18 || g.Counts.Extra != 1 || g.Counts.Equal != 20 {
		t.Fatalf("counts alpha %+v beta %+v gamma %+v", a.Counts, b.Counts, g.Counts)
	}
	// Never a value: the JSON names fields and IDs only.
	out, _ := json.Marshal(rep)
	for _, v := range []string{"99.5", "Person "} {
		if strings.Contains(string(out), v) {
			t.Fatalf("the report holds a value (%q): %s", v, out)
		}
	}
	// The results are on AUDIT for relay status.
	var last messages.VerifyResult
	if !broker.LastJSON(context.Background(), n.stack.JS, messages.StreamAudit, messages.VerifySubject("beta"), &last) || last.Counts.Missing != 1 {
		t.Fatalf("beta's result on AUDIT: %+v", last)
	}

	before := n.exportRequests()
	rep = n.verify(true)
	if rep.ExitCode() != verifier.ExitEqual {
		out, _ := json.MarshalIndent(rep, "", "  ")
		t.Fatalf("after --repair: exit %d\n%s", rep.ExitCode(), out)
	}
	for _, s := range sites {
		r := siteResult(t, rep, s)
		if r.Repair == nil || r.Repair.Error != "" || len(r.Repair.Runs) != 1 {
			t.Fatalf("site %s repair: %+v", s, r.Repair)
		}
	}
	if got := n.exportRequests() - before; got != 3 {
		t.Fatalf("the repair published %d export requests, want one per site (3)", got)
	}
	n.assertEqual(n.expected())
	if n.dlqTotal() != 0 {
		t.Fatalf("%d dead letters after the repair", n.dlqTotal())
	}

	before = n.exportRequests()
	rep = n.verify(true)
	if rep.ExitCode() != verifier.ExitEqual || n.exportRequests() != before {
		t.Fatalf("a second --repair: exit %d, published %d requests; want 0 and none", rep.ExitCode(), n.exportRequests()-before)
	}
	for _, r := range rep.Sites {
		if r.Repair != nil {
			t.Fatalf("site %s: a second repair did something: %+v", r.Site, r.Repair)
		}
	}
}

// The Jepsen case: records the broker acknowledged are lost before the
// importer took them. The pipeline's bookkeeping says they were sent;
// verify finds every one, repair brings them back.
func TestVerifyFindsRecordsTheBrokerLostAndRepairBringsThemBack(t *testing.T) {
	if testing.Short() {
		t.Skip("broker loss: -short")
	}
	n := newNet(t, netOpts{sites: []string{"alpha"}, records: 30})
	n.start(pipeline...)
	t0 := time.Now()
	n.sync(false, t0)

	// The importer stops; a run exports 10 changed records and the
	// transformers clean them into RECORDS_CLEAN; then the stream loses them.
	n.stopServices()
	n.runServices(app.Exporter, app.Transformer)
	pid := n.sites["alpha"]
	for i := 1; i <= 10; i++ {
		if err := n.sim.ImportRows(pid, []messages.Row{{"record_id": strconv.Itoa(i), "score": "10", "weight": "77.5"}}, false); err != nil {
			t.Fatal(err)
		}
	}
	run := requestRun(t, n, "alpha", t0.Add(3*time.Second))
	ctx := context.Background()
	waitFor(t, time.Minute, "the run to export and the records to be cleaned", func() bool {
		ev := n.lastRunEvent("alpha")
		return ev.RunID == run && ev.Phase == messages.PhaseExported &&
			broker.CountSubject(ctx, n.stack.JS, messages.StreamRecordsClean, messages.RecordsCleanSubject("alpha")) >= 40
	})
	st, err := n.stack.JS.Stream(ctx, messages.StreamRecordsClean)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Purge(ctx, jetstream.WithPurgeSubject(messages.RecordsCleanSubject("alpha"))); err != nil {
		t.Fatal(err)
	}
	n.stopServices()
	n.runServices(pipeline...)

	rep := n.verify(false)
	r := siteResult(t, rep, "alpha")
	if r.Counts.Stale != 10 || r.Counts.Missing != 0 || r.Fields["weight"] != 10 {
		out, _ := json.MarshalIndent(r, "", "  ")
		t.Fatalf("verify after the loss: %s\nwant the 10 lost records stale", out)
	}
	rep = n.verify(true)
	if rep.ExitCode() != verifier.ExitEqual {
		out, _ := json.MarshalIndent(rep, "", "  ")
		t.Fatalf("after --repair: %s", out)
	}
	n.assertEqual(n.expected())
}

// A destination restored from an old backup: records missing and stale in
// numbers. Verify does not need the records in the stream (replay does).
func TestVerifyRepairsADestinationRestoredFromAnOldBackup(t *testing.T) {
	if testing.Short() {
		t.Skip("restore: -short")
	}
	n := newNet(t, netOpts{sites: []string{"alpha", "beta"}, records: 60})
	n.start(pipeline...)
	n.sync(false, time.Now())
	// The "backup": 15 of alpha's records gone, 20 of beta's older.
	for i := 1; i <= 15; i++ {
		if err := n.sim.DeleteRecord(n.dest, "alpha-"+strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	var old []messages.Row
	for i := 21; i <= 40; i++ {
		old = append(old, messages.Row{"record_id": "beta-" + strconv.Itoa(i), "score": "0", "mood": "1"})
	}
	if err := n.sim.ImportRows(n.dest, old, true); err != nil {
		t.Fatal(err)
	}
	rep := n.verify(false)
	a, b := siteResult(t, rep, "alpha"), siteResult(t, rep, "beta")
	if a.Counts.Missing != 15 || a.Counts.Stale != 0 || b.Counts.Missing != 0 || b.Counts.Stale == 0 || b.Counts.Stale > 20 {
		t.Fatalf("alpha %+v beta %+v", a.Counts, b.Counts)
	}
	if rep = n.verify(true); rep.ExitCode() != verifier.ExitEqual {
		out, _ := json.MarshalIndent(rep, "", "  ")
		t.Fatalf("after --repair: %s", out)
	}
	n.assertEqual(n.expected())
}

// A site that cannot be reached: that site is an error (exit 2) with the
// reason, the others are still verified.
func TestVerifyAnUnreachableSiteIsAnErrorTheOthersAreVerified(t *testing.T) {
	n := newNet(t, netOpts{sites: []string{"alpha", "beta"}, records: 10, siteExtra: "    retry_for: 2s\n"})
	n.start(pipeline...)
	n.sync(false, time.Now())
	if err := n.faults.Set(n.sites["alpha"], faults.Faults{Outage: true}); err != nil {
		t.Fatal(err)
	}
	rep := n.verify(false)
	a, b := siteResult(t, rep, "alpha"), siteResult(t, rep, "beta")
	if rep.ExitCode() != verifier.ExitError || a.Status != messages.VerifyError || !strings.Contains(a.Error, "alpha") {
		t.Fatalf("exit %d, alpha %s %q; want 2 and alpha's reason", rep.ExitCode(), a.Status, a.Error)
	}
	if b.Status != messages.VerifyEqual || b.Counts.Equal != 10 {
		t.Fatalf("beta: %+v", b)
	}
}

// A destination token without the export right: a clear error naming the
// destination and the right.
func TestVerifyNamesTheDestinationRightThatIsMissing(t *testing.T) {
	n := newNet(t, netOpts{sites: []string{"alpha"}, records: 5})
	n.start(pipeline...)
	n.sync(false, time.Now())
	tok := readToken(t, n, "destination")
	n.sim.RevokeToken(tok)
	if err := n.sim.AddToken(n.dest, tok, redcapsim.Rights{Import: true, Delete: true, Metadata: true, DAGs: true, Rename: true}, ""); err != nil {
		t.Fatal(err)
	}
	r := siteResult(t, n.verify(false), "alpha")
	if r.Status != messages.VerifyError || !strings.Contains(r.Error, "destination") || !strings.Contains(r.Error, "API Export") {
		t.Fatalf("verify with a destination token that may not export: %s %q", r.Status, r.Error)
	}
}

// A site whose policy changed since its last sync: verify says the
// destination reflects the older policy version and how many records
// differ because of it.
func TestVerifySaysTheDestinationReflectsAnOlderPolicy(t *testing.T) {
	n := newNet(t, netOpts{sites: []string{"alpha"}, records: 20})
	n.start(pipeline...)
	n.sync(false, time.Now())
	if err := os.WriteFile(filepath.Join(n.dir, "policy.yaml"), []byte(testPolicy+"recode: {mood: {\"3\": \"2\"}}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := siteResult(t, n.verify(false), "alpha")
	// mood is 3 in records 2, 5, 8, 11, 14, 17 and 20.
	if !r.Policy.Changed || r.Policy.Destination == "" || r.Policy.Destination == r.Policy.Current ||
		r.Policy.StaleByPolicy != 7 || r.Counts.Stale != 7 || r.Fields["mood"] != 7 {
		out, _ := json.MarshalIndent(r, "", "  ")
		t.Fatalf("verify after a policy change: %s", out)
	}
}

// Files are compared by SHA-256: a destination file replaced by hand is
// found (the record stale, the field named) and the repair uploads the
// site's file again, although the importer's bookkeeping says it is there.
func TestVerifyComparesFilesBySHA256AndRepairRestoresThem(t *testing.T) {
	n := newNet(t, netOpts{sites: []string{"alpha"}, records: 3, policy: filesPolicy,
		siteFieldsExtra: []messages.Field{consentPDF, photo, docTitle, docFile},
		destExtra: []messages.Field{{FieldName: "consent_file", FormName: "survey", FieldType: "file", FieldLabel: "Consent"},
			{FieldName: "doc_file", FormName: "docs", FieldType: "file", FieldLabel: "Scan"}},
		repeating: []messages.RepeatingForm{{FormName: "docs"}}})
	pid := n.sites["alpha"]
	admin := n.addToken(pid, "alpha-admin", redcapsim.FullRights())
	site, err := redcap.New(redcap.Options{Site: "alpha-admin", URL: n.simURL, Token: admin, CallsPerMinute: -1})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := n.sim.ImportRows(pid, []messages.Row{{"record_id": "1", "redcap_repeat_instrument": "docs", "redcap_repeat_instance": "1", "doc_title": "CRF page 1"}}, false); err != nil {
		t.Fatal(err)
	}
	consent := pdf("consent of jane roe", 30_000)
	for _, u := range []struct {
		rec, field string
		inst       int
		b          []byte
	}{{"1", "consent_pdf", 0, consent}, {"2", "consent_pdf", 0, pdf("second consent", 10_000)}, {"1", "doc_file", 1, []byte("PNG page one")}} {
		if err := site.ImportFile(ctx, redcap.FileRef{Record: u.rec, Field: u.field, Instance: u.inst}, "f.pdf", bytes.NewReader(u.b), int64(len(u.b))); err != nil {
			t.Fatal(err)
		}
	}
	n.start(pipeline...)
	n.sync(false, time.Now())
	r := siteResult(t, n.verify(false), "alpha")
	if r.Status != messages.VerifyEqual || r.Files.Compared != 3 || r.Files.Equal != 3 {
		out, _ := json.MarshalIndent(r, "", "  ")
		t.Fatalf("after the sync: %s", out)
	}
	dest, err := sitekit.New(n.network, nil).Destination()
	if err != nil {
		t.Fatal(err)
	}
	other := pdf("a different file put there by hand", 5_000)
	if err := dest.ImportFile(ctx, redcap.FileRef{Record: "alpha-1", Field: "consent_file"}, "x.pdf", bytes.NewReader(other), int64(len(other))); err != nil {
		t.Fatal(err)
	}
	r = siteResult(t, n.verify(false), "alpha")
	if r.Status != messages.VerifyDifferences || r.Files.Differ != 1 || r.Fields["consent_file"] != 1 || len(r.Stale) != 1 || r.Stale[0] != "alpha-1" {
		out, _ := json.MarshalIndent(r, "", "  ")
		t.Fatalf("after a destination file was replaced: %s", out)
	}
	if r = siteResult(t, n.verify(true), "alpha"); r.Status != messages.VerifyEqual || r.Files.Equal != 3 {
		out, _ := json.MarshalIndent(r, "", "  ")
		t.Fatalf("after --repair: %s", out)
	}
	var buf bytes.Buffer
	if _, err := dest.ExportFile(ctx, redcap.FileRef{Record: "alpha-1", Field: "consent_file"}, &buf); err != nil || sum(buf.Bytes()) != sum(consent) {
		t.Fatalf("the destination's consent after the repair: %v", err)
	}
}
