package e2e

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/redcap"
	"github.com/redcap-relay/relay/services/internal/tools/redcapsim"
)

// BenchmarkFilesThroughThePipeline moves kept files from a zero-latency
// site to the destination through the whole pipeline (download into the
// object store, reference in the record, upload after the rows): MB/s is
// the size of the files over the time from the export request until the
// pipeline drained. Each iteration replaces every file, so each is
// transferred again. Target: >= 50 MB/s on the 2-core machine.
//
//	go test -run '^$' -bench FilesThroughThePipeline -benchtime 3x ./services/e2e
func BenchmarkFilesThroughThePipeline(b *testing.B) {
	const records, size = 8, 8 << 20
	n := newNet(b, netOpts{sites: []string{"alpha"}, records: records, policy: filesPolicy,
		siteFieldsExtra: []messages.Field{consentPDF, photo, docTitle, docFile},
		destExtra: []messages.Field{{FieldName: "consent_file", FormName: "survey", FieldType: "file", FieldLabel: "Consent"},
			{FieldName: "doc_file", FormName: "docs", FieldType: "file", FieldLabel: "Scan"}},
		repeating: []messages.RepeatingForm{{FormName: "docs"}}})
	admin := n.addToken(n.sites["alpha"], "alpha-admin", redcapsim.FullRights())
	site, err := redcap.New(redcap.Options{Site: "alpha-admin", URL: n.simURL, Token: admin, CallsPerMinute: -1})
	if err != nil {
		b.Fatal(err)
	}
	n.start(pipeline...)
	ctx := context.Background()
	at := time.Now()
	b.SetBytes(records * size)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		for r := 1; r <= records; r++ {
			f := pdf(fmt.Sprintf("scan %d of record %d", i, r), size)
			if err := site.ImportFile(ctx, redcap.FileRef{Record: fmt.Sprint(r), Field: "consent_pdf"}, "scan.pdf", bytes.NewReader(f), int64(len(f))); err != nil {
				b.Fatal(err)
			}
		}
		at = at.Add(time.Hour)
		b.StartTimer()
		if ev := n.sync(false, at)["alpha"]; ev.Phase != messages.PhaseExported {
			b.Fatalf("run %d: %+v", i, ev)
		}
	}
	b.StopTimer()
	if d := n.dlqTotal(); d != 0 {
		b.Fatalf("%d dead letters", d)
	}
}
