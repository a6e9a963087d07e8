package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
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
)

// File-upload fields, end to end: kept files reach the destination
// byte-identical (a signed consent PDF, a 20 MB scan, a repeating
// instrument's own files), replaced and removed files follow the site, a
// file over the policy's cap is dead-lettered while its record's other
// fields are imported, and a file field the policy does not approve never
// leaves the site: in no stream, bucket, dead letter or log line.

var (
	consentPDF = messages.Field{FieldName: "consent_pdf", FormName: "survey", FieldType: "file", FieldLabel: "Signed consent"}
	photo      = messages.Field{FieldName: "photo", FormName: "survey", FieldType: "file", FieldLabel: "Photo"}
	docTitle   = messages.Field{FieldName: "doc_title", FormName: "docs", FieldType: "text", FieldLabel: "Document"}
	docFile    = messages.Field{FieldName: "doc_file", FormName: "docs", FieldType: "file", FieldLabel: "Scan"}
)

const filesPolicy = `name: e2e-files
approved:
  forms: [survey, docs]
record_id: {mode: namespace}
dates: drop
free_text: drop
rules:
  - field: name
    rule: drop
  - field: consent_pdf
    rule: keep
    justification: the IRB approved transferring signed consent forms
    max_size: 25MB
    types: [application/pdf]
  - field: doc_file
    rule: keep
    justification: the IRB approved transferring scanned CRFs
    max_size: 1MB
rename:
  consent_pdf: consent_file
`

func sum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

func pdf(label string, size int) []byte {
	b := []byte("%PDF-1.4\n% " + label + "\n")
	for len(b) < size {
		b = append(b, fmt.Sprintf("%% filler %d of %s\n", len(b), label)...)
	}
	return b[:max(size, len(b))]
}

func TestFilesReachTheDestinationAsTheSiteHasThem(t *testing.T) {
	n := newNet(t, netOpts{sites: []string{"alpha"}, records: 5, policy: filesPolicy,
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
	upload := func(rec, field string, instance int, name string, b []byte) {
		t.Helper()
		if err := site.ImportFile(ctx, redcap.FileRef{Record: rec, Field: field, Instance: instance}, name, bytes.NewReader(b), int64(len(b))); err != nil {
			t.Fatalf("upload %s/%s: %v", rec, field, err)
		}
	}
	if err := n.sim.ImportRows(pid, []messages.Row{
		{"record_id": "1", "redcap_repeat_instrument": "docs", "redcap_repeat_instance": "1", "doc_title": "CRF page 1"},
		{"record_id": "1", "redcap_repeat_instrument": "docs", "redcap_repeat_instance": "2", "doc_title": "CRF page 2"},
		{"record_id": "4", "redcap_repeat_instrument": "docs", "redcap_repeat_instance": "1", "doc_title": "big scan"},
	}, false); err != nil {
		t.Fatal(err)
	}
	consent1, scan20 := pdf("consent of jane roe", 40_000), pdf("twenty megabyte scan", 20<<20)
	page1, page2, big := []byte("PNG page one"), []byte("PNG page two"), pdf("too big for doc_file", 2<<20)
	faceJPEG := []byte("\xff\xd8 face-of-participant-3 JPEG")
	upload("1", "consent_pdf", 0, "jane_roe_consent.pdf", consent1)
	upload("2", "consent_pdf", 0, "consent.pdf", scan20)
	upload("3", "photo", 0, "participant3_face.jpg", faceJPEG)
	upload("1", "doc_file", 1, "page1.png", page1)
	upload("1", "doc_file", 2, "page2.png", page2)
	upload("4", "doc_file", 1, "big.pdf", big)

	n.start(pipeline...)
	t0 := time.Now()
	ev := n.sync(false, t0)["alpha"]
	if ev.Phase != messages.PhaseExported {
		t.Fatalf("run: %+v", ev)
	}
	dest, err := sitekit.New(n.network, nil).Destination()
	if err != nil {
		t.Fatal(err)
	}
	destFile := func(rec, field string, instance int) (string, error) {
		var buf bytes.Buffer
		_, err := dest.ExportFile(ctx, redcap.FileRef{Record: rec, Field: field, Instance: instance}, &buf)
		return sum(buf.Bytes()), err
	}
	for _, c := range []struct {
		rec, field string
		instance   int
		want       []byte
	}{
		{"alpha-1", "consent_file", 0, consent1},
		{"alpha-2", "consent_file", 0, scan20},
		{"alpha-1", "doc_file", 1, page1},
		{"alpha-1", "doc_file", 2, page2},
	} {
		if got, err := destFile(c.rec, c.field, c.instance); err != nil || got != sum(c.want) {
			t.Fatalf("%s %s #%d at the destination: %s %v; want the site's file (%s)", c.rec, c.field, c.instance, got, err, sum(c.want))
		}
	}
	// Over the cap: dead-lettered with the reason; the record is imported.
	if _, err := destFile("alpha-4", "doc_file", 1); err == nil {
		t.Fatal("the file over the policy's max_size reached the destination")
	}
	dls := n.deadLetters(messages.StageExport, "alpha")
	if len(dls) != 1 || !strings.Contains(dls[0].Error, "record alpha-4, field doc_file, instance 1") || !strings.Contains(dls[0].Error, "max_size") {
		t.Fatalf("dead letters %+v: want alpha-4's scan, over max_size", dls)
	}
	if n.destination()["alpha-4"]["score"] == "" {
		t.Fatalf("record 4's other fields were not imported (destination %v, import dead letters %+v)", n.destination()["alpha-4"], n.deadLetters(messages.StageImport, "alpha"))
	}
	// The unapproved photo never left the site.
	n.assertNowhere(t, "participant3_face", "face-of-participant-3", sum(faceJPEG))

	// Replaced at the site (same file name, new content) and removed.
	time.Sleep(1100 * time.Millisecond) // REDCap's log has one-second resolution
	consent1b := pdf("consent of jane roe, re-signed", 41_000)
	upload("1", "consent_pdf", 0, "jane_roe_consent.pdf", consent1b)
	if err := site.DeleteFile(ctx, redcap.FileRef{Record: "2", Field: "consent_pdf"}); err != nil {
		t.Fatal(err)
	}
	n.sync(false, t0.Add(2*time.Second))
	if got, err := destFile("alpha-1", "consent_file", 0); err != nil || got != sum(consent1b) {
		t.Fatalf("a replaced file at the destination: %s %v", got, err)
	}
	if _, err := destFile("alpha-2", "consent_file", 0); err == nil {
		t.Fatal("a file removed at the site is still at the destination")
	}
}

// assertNowhere fails if any of the strings is in a message of the
// pipeline's streams, the files bucket or the logs.
func (n *testNet) assertNowhere(t *testing.T, needles ...string) {
	t.Helper()
	ctx := context.Background()
	for _, stream := range []string{messages.StreamRecordsRaw, messages.StreamRecordsClean, messages.StreamDLQ, messages.StreamAudit, messages.StreamMetadata} {
		broker.EachJSON(ctx, n.stack.JS, stream, ">", func(b []byte) {
			for _, s := range needles {
				if bytes.Contains(b, []byte(s)) {
					t.Fatalf("%q is in a message of %s", s, stream)
				}
			}
		})
	}
	obs, err := n.stack.JS.ObjectStore(ctx, messages.BucketFiles)
	if err != nil {
		t.Fatal(err)
	}
	infos, _ := obs.List(ctx)
	for _, in := range infos {
		b, err := obs.GetBytes(ctx, in.Name)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range needles {
			if strings.Contains(in.Name, s) || bytes.Contains(b, []byte(s)) {
				t.Fatalf("%q is in the files bucket (%s)", s, in.Name)
			}
		}
	}
	for _, s := range needles {
		if strings.Contains(n.logs.String(), s) {
			t.Fatalf("%q is in the logs", s)
		}
	}
}

var _ = jetstream.ErrObjectNotFound

// The importer is SIGKILLed after a record's rows reached the destination
// and before its file did: after the restart the file is there, uploaded
// once.
func TestAFileSurvivesAnImporterKilledBetweenRowsAndFile(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the relay binary; skipped with -short")
	}
	n := newNet(t, netOpts{sites: []string{"alpha"}, records: 2, policy: filesPolicy,
		siteFieldsExtra: []messages.Field{consentPDF, photo, docTitle, docFile},
		destExtra: []messages.Field{{FieldName: "consent_file", FormName: "survey", FieldType: "file", FieldLabel: "Consent"},
			{FieldName: "doc_file", FormName: "docs", FieldType: "file", FieldLabel: "Scan"}},
		repeating: []messages.RepeatingForm{{FormName: "docs"}},
		timing:    timing{ExportAckWait: 2 * time.Minute, TransformAckWait: 6 * time.Second, ImportAckWait: 6 * time.Second, CheckAckWait: time.Minute}})
	pid := n.sites["alpha"]
	admin := n.addToken(pid, "alpha-admin", redcapsim.FullRights())
	ctx := context.Background()
	site, _ := redcap.New(redcap.Options{Site: "alpha-admin", URL: n.simURL, Token: admin, CallsPerMinute: -1})
	consent := pdf("consent", 300_000)
	if err := site.ImportFile(ctx, redcap.FileRef{Record: "1", Field: "consent_pdf"}, "c.pdf", bytes.NewReader(consent), int64(len(consent))); err != nil {
		t.Fatal(err)
	}
	// The test looks at the destination through a door without faults; the
	// importer's calls are slow (2 s each), so the kill lands between the
	// rows and the file.
	direct, err := n.sim.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	destTok := n.tokenOf("destination")
	look, _ := redcap.New(redcap.Options{Site: "look", URL: direct, Token: destTok, CallsPerMinute: -1})
	if err := n.faults.Set(n.dest, faults.Faults{Latency: faults.Duration(2 * time.Second)}); err != nil {
		t.Fatal(err)
	}
	n.start()
	n.writeNetwork(n.stack.URL)
	n.runServices(app.Exporter, app.Transformer)
	imp := n.spawn(t, app.Importer)
	run := requestRun(t, n, "alpha", time.Now())
	hasFile := func() bool {
		var buf bytes.Buffer
		_, err := look.ExportFile(ctx, redcap.FileRef{Record: "alpha-1", Field: "consent_file"}, &buf)
		return err == nil && sum(buf.Bytes()) == sum(consent)
	}
	waitFor(t, 2*time.Minute, "record 1's rows at the destination", func() bool {
		_, ok := n.destination()["alpha-1"]
		return ok
	})
	imp.kill(t)
	if hasFile() {
		t.Fatal("the file was uploaded before the kill: the test did not land between the rows and the file")
	}
	n.faults.Clear(n.dest)
	n.spawn(t, app.Importer)
	n.waitRuns(map[string]string{"alpha": run}, 2*time.Minute)
	waitFor(t, time.Minute, "the file at the destination", hasFile)
	logs, err := look.ExportLogging(ctx, redcap.LogParams{Record: "alpha-1"})
	if err != nil {
		t.Fatal(err)
	}
	uploads := 0
	for _, l := range logs {
		if strings.HasPrefix(l.Action, "Upload document") && strings.Contains(l.Details, "consent_file") {
			uploads++
		}
	}
	if uploads != 1 {
		t.Fatalf("the file was uploaded %d times, want once (log: %+v)", uploads, logs)
	}
}

// tokenOf reads a token file the harness wrote.
func (n *testNet) tokenOf(name string) string {
	b, err := os.ReadFile(filepath.Join(n.dir, "secrets", name+".token"))
	if err != nil {
		n.t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}
