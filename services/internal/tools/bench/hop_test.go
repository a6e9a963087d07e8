package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/pipeline/app"
	"github.com/redcap-relay/relay/services/internal/pipeline/broker"
	"github.com/redcap-relay/relay/services/internal/policy"
	"github.com/redcap-relay/relay/services/internal/redcap"
	"github.com/redcap-relay/relay/services/internal/tools/demo"
)

// benchSnapshot is the longitudinal bench site's metadata.
func benchSnapshot(site string) *messages.MetadataSnapshot {
	d := Design(3)
	s := &messages.MetadataSnapshot{V: messages.V, Site: site, Fields: d.Fields, Events: d.Events, FormEventMapping: d.FEM,
		Arms: []messages.Arm{{ArmNum: 1, Name: "Arm 1"}}, Project: messages.ProjectInfo{IsLongitudinal: 1}}
	s.ComputeHash()
	return s
}

// benchRecords makes n exported records of the longitudinal site (1-3 rows each).
func benchRecords(site, metaHash string, n int) []messages.RecordExported {
	p := demo.Generate(Design(3), n, 7)
	var out []messages.RecordExported
	for _, rec := range redcap.GroupRecords(p.Rows, "record_id") {
		out = append(out, messages.RecordExported{V: messages.V, Site: site, RunID: "bench-run", RecordID: rec.ID, Version: 1,
			Hash: messages.HashRows(rec.Rows), MetadataHash: metaHash, Rows: rec.Rows, ExportedAt: time.Now().UTC()})
	}
	return out
}

// BenchmarkTransformRecord is the transformer's work on one record without
// NATS: decode the RECORDS_RAW body, apply the bench policy (40 fields,
// identifiers dropped, dates shifted, ZIP cut, ages capped), encode the
// RECORDS_CLEAN body.
func BenchmarkTransformRecord(b *testing.B) {
	snap := benchSnapshot("site3")
	pol, err := policy.Parse("bench.yaml", []byte(PolicyYAML))
	if err != nil {
		b.Fatal(err)
	}
	c, err := policy.Compile(pol, snap, policy.Options{Site: "site3", Namespace: "site3", Key: []byte("bench-key")})
	if err != nil {
		b.Fatal(err)
	}
	var bodies [][]byte
	for _, r := range benchRecords("site3", snap.Hash, 200) {
		body, _ := json.Marshal(r)
		bodies = append(bodies, body)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		var rec messages.RecordExported
		if err := json.Unmarshal(bodies[i%len(bodies)], &rec); err != nil {
			b.Fatal(err)
		}
		out, err := c.Apply(rec)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := json.Marshal(out); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPipelineHop is one watermill hop of the real pipeline: b.N
// records published to RECORDS_RAW, the transformer service (embedded NATS,
// file store) consuming, transforming, publishing to RECORDS_CLEAN and
// acking; timed until RECORDS_CLEAN holds them all.
func BenchmarkPipelineHop(b *testing.B) {
	dir := b.TempDir()
	os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte(PolicyYAML), 0o600)
	os.WriteFile(filepath.Join(dir, "dest.token"), []byte("0123456789ABCDEF0123456789ABCDEF\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "site.token"), []byte("0123456789ABCDEF0123456789ABCDEF\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "key"), []byte("bench-key\n"), 0o600)
	y := fmt.Sprintf("nats: {url: \"\"}\ndestination: {url: \"http://127.0.0.1:9/api/\", token: {file: %[1]s/dest.token}}\npseudonym_key: {file: %[1]s/key}\nsites:\n  - id: site3\n    url: http://127.0.0.1:9/api/\n    token: {file: %[1]s/site.token}\n    policy: %[1]s/policy.yaml\n", dir)
	os.WriteFile(filepath.Join(dir, "network.yaml"), []byte(y), 0o600)
	net, err := config.Load(filepath.Join(dir, "network.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	st, err := app.Start(ctx, app.Options{Network: net, Embedded: true, DataDir: filepath.Join(dir, "nats"), NATSPort: -1, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	snap := benchSnapshot("site3")
	kv, err := st.JS.KeyValue(ctx, messages.BucketMetadata)
	if err != nil {
		b.Fatal(err)
	}
	sb, _ := json.Marshal(snap)
	if _, err := kv.Put(ctx, messages.MetadataKey("site3", snap.Hash), sb); err != nil {
		b.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- st.Run(rctx, app.Transformer) }()
	defer func() { cancel(); <-done }()
	recs := benchRecords("site3", snap.Hash, 2000)

	b.ResetTimer()
	start := time.Now()
	batch := broker.NewBatch(st.JS)
	for i := 0; i < b.N; i++ {
		m := recs[i%len(recs)]
		m.Version = int64(1 + i/len(recs)) // a new version: not a duplicate
		if err := batch.Add(ctx, messages.RecordsRawSubject("site3"), m.MsgID(), broker.Route{Site: "site3", Run: m.RunID, Record: m.RecordID}, m); err != nil {
			b.Fatal(err)
		}
	}
	if err := batch.Wait(ctx); err != nil {
		b.Fatal(err)
	}
	for {
		n := 0
		if s, err := st.JS.Stream(ctx, messages.StreamRecordsClean); err == nil {
			if info, err := s.Info(ctx); err == nil {
				n = int(info.State.Msgs)
			}
		}
		if n >= b.N {
			break
		}
		if time.Since(start) > 5*time.Minute {
			b.Fatalf("only %d of %d records transformed", n, b.N)
		}
		time.Sleep(5 * time.Millisecond)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
}
