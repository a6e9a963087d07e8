package transformer

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/pipeline/retry"
	"github.com/redcap-relay/relay/services/internal/policy"
)

// The transformer's unit tests give it the metadata snapshot and the policy
// in memory; services/e2e runs it on NATS.

var snap = func() *messages.MetadataSnapshot {
	s := &messages.MetadataSnapshot{V: messages.V, Site: "alpha", Fields: []messages.Field{
		{FieldName: "record_id", FormName: "survey", FieldType: "text"},
		{FieldName: "email", FormName: "survey", FieldType: "text", TextValidationTypeOrShowSlider: "email"},
		{FieldName: "score", FormName: "survey", FieldType: "text", TextValidationTypeOrShowSlider: "integer"},
		{FieldName: "visit", FormName: "survey", FieldType: "text", TextValidationTypeOrShowSlider: "date_ymd"},
	}, Instruments: []messages.Instrument{{InstrumentName: "survey"}}}
	s.ComputeHash()
	return s
}()

type policies struct{ calls int }

func (p *policies) Policy(site string, s *messages.MetadataSnapshot) (*policy.Compiled, error) {
	p.calls++
	pol, err := policy.Parse("p.yaml", []byte("name: t\napproved: {forms: [survey]}\nrecord_id: {mode: namespace}\nrules:\n  - {field: email, rule: drop}\n  - {field: visit, rule: year}\n"))
	if err != nil {
		return nil, err
	}
	return policy.Compile(pol, s, policy.Options{Site: site, Namespace: site})
}

func newT(load func(context.Context, string) (*messages.MetadataSnapshot, error)) (*Transformer, *policies) {
	p := &policies{}
	return New(Deps{Policies: p, Snapshots: load}), p
}

func record(id, email string) messages.RecordExported {
	return messages.RecordExported{V: messages.V, Site: "alpha", RunID: "r", RecordID: id, Version: 1, MetadataHash: snap.Hash,
		Rows: []messages.Row{{"record_id": id, "email": email, "score": "3"}}}
}

func TestTransformAppliesThePolicyOnce(t *testing.T) {
	loads := 0
	tr, pols := newT(func(_ context.Context, key string) (*messages.MetadataSnapshot, error) {
		loads++
		if key != messages.MetadataKey("alpha", snap.Hash) {
			t.Fatalf("asked for snapshot %s", key)
		}
		return snap, nil
	})
	for i := 0; i < 3; i++ {
		out, err := tr.Transform(context.Background(), record("7", "p@example.org"))
		if err != nil {
			t.Fatal(err)
		}
		if out.DestRecordID != "alpha-7" || out.Rows[0]["score"] != "3" {
			t.Fatalf("cleaned %+v", out)
		}
		if _, ok := out.Rows[0]["email"]; ok {
			t.Fatal("the dropped e-mail reached the cleaned record")
		}
	}
	if loads != 1 {
		t.Fatalf("the snapshot was read %d times for three records, want once (cached by its hash)", loads)
	}
	if pols.calls != 3 {
		t.Fatalf("policy asked %d times", pols.calls)
	}
}

func TestAMissingSnapshotIsPermanentAndAnUnreachableOneIsNot(t *testing.T) {
	tr, _ := newT(func(context.Context, string) (*messages.MetadataSnapshot, error) {
		return nil, jetstream.ErrKeyNotFound
	})
	_, err := tr.Transform(context.Background(), record("1", "x"))
	if !retry.IsPermanent(err) || !strings.Contains(err.Error(), "was the bucket purged") {
		t.Fatalf("a purged snapshot: %v, want a permanent error naming it", err)
	}
	tr, _ = newT(func(context.Context, string) (*messages.MetadataSnapshot, error) {
		return nil, errors.New("nats: timeout")
	})
	if _, err := tr.Transform(context.Background(), record("1", "x")); err == nil || retry.IsPermanent(err) {
		t.Fatalf("NATS restarting: %v, want a transient error (retried, never dead-lettered)", err)
	}
}

func TestARecordThePolicyCannotTransformIsPermanent(t *testing.T) {
	tr, _ := newT(func(context.Context, string) (*messages.MetadataSnapshot, error) { return snap, nil })
	rec := record("1", "x")
	rec.Rows[0]["visit"] = "zz-secret-1999"
	_, err := tr.Transform(context.Background(), rec)
	if err == nil || !retry.IsPermanent(err) {
		t.Fatalf("a broken record: %v, want a permanent error (dead-lettered)", err)
	}
	if strings.Contains(err.Error(), "zz-secret") {
		t.Fatalf("the error quotes a value: %v", err)
	}
}
