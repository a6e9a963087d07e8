package importer

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/pipeline/router"
	"github.com/redcap-relay/relay/services/internal/redcap"
)

// The importer's unit tests run against in-memory fakes of the destination
// and of JetStream; services/e2e runs it against the simulator and NATS.

// fakeMsg is one delivery.
type fakeMsg struct {
	data    []byte
	site    string
	outcome string // "", "ack", "retry", "dead"
	letter  messages.DeadLetter
}

func (m *fakeMsg) Data() []byte        { return m.data }
func (m *fakeMsg) Site() string        { return m.site }
func (m *fakeMsg) Run() string         { return "run" }
func (m *fakeMsg) Attempt() int        { return 1 }
func (m *fakeMsg) Ack()                { m.settle("ack") }
func (m *fakeMsg) Retry(time.Duration) { m.settle("retry") }
func (m *fakeMsg) settle(outcome string) {
	if m.outcome == "" {
		m.outcome = outcome
	}
}
func (m *fakeMsg) DeadLetter(_ context.Context, dl messages.DeadLetter) {
	m.letter = dl
	m.settle("dead")
}

func cleaned(id string, version int64, score string) *fakeMsg {
	rec := messages.RecordCleaned{V: messages.V, Site: "alpha", RunID: "run", DestRecordID: id, Version: version,
		Rows: []messages.Row{{"record_id": id, "score": score}}}
	b, _ := json.Marshal(rec)
	return &fakeMsg{data: b, site: "alpha"}
}

func deletion(id string, version int64) *fakeMsg {
	b, _ := json.Marshal(messages.RecordCleaned{V: messages.V, Site: "alpha", RunID: "run", DestRecordID: id, Version: version, Deleted: true})
	return &fakeMsg{data: b, site: "alpha"}
}

// fakeDest is the destination REDCap in memory. It rejects scores it is
// told to, the way REDCap names bad records in a 400.
type fakeDest struct {
	mu      sync.Mutex
	records map[string]messages.Row
	reject  map[string]bool // score values REDCap refuses
	calls   int
	// anonymous makes rejections name no record (halving must find them).
	anonymous bool
}

func (d *fakeDest) ExportVersion(context.Context) (string, error) { return "14.7.3", nil }
func (d *fakeDest) ExportProjectInfo(context.Context) (messages.ProjectInfo, error) {
	return messages.ProjectInfo{}, nil
}
func (d *fakeDest) ExportMetadata(context.Context, ...string) ([]messages.Field, error) {
	return nil, nil
}
func (d *fakeDest) ExportInstruments(context.Context) ([]messages.Instrument, error) { return nil, nil }
func (d *fakeDest) ExportArms(context.Context) ([]messages.Arm, error)               { return nil, nil }
func (d *fakeDest) ExportEvents(context.Context) ([]messages.Event, error)           { return nil, nil }
func (d *fakeDest) ExportFormEventMapping(context.Context) ([]messages.FormEvent, error) {
	return nil, nil
}
func (d *fakeDest) ExportRepeating(context.Context) ([]messages.RepeatingForm, error) {
	return nil, nil
}

func (d *fakeDest) ImportRecords(_ context.Context, rows []messages.Row, _ redcap.ImportParams) (redcap.ImportResult, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls++
	var problems []redcap.Problem
	for _, r := range rows {
		if d.reject[r["score"]] {
			p := redcap.Problem{Record: r["record_id"], Field: "score", Message: "This field must be a whole number"}
			if d.anonymous {
				p.Record = ""
			}
			problems = append(problems, p)
		}
	}
	if len(problems) > 0 {
		return redcap.ImportResult{}, &redcap.Error{Site: "destination", Call: "import records", Status: 400, Kind: redcap.KindPermanent, Problems: problems}
	}
	var res redcap.ImportResult
	for _, r := range rows {
		d.records[r["record_id"]] = r
		res.IDs = append(res.IDs, r["record_id"])
	}
	res.Count = len(res.IDs)
	return res, nil
}

func (d *fakeDest) ExportRecords(_ context.Context, p redcap.ExportParams) ([]messages.Row, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	var out []messages.Row
	for _, id := range p.Records {
		if r, ok := d.records[id]; ok {
			out = append(out, r)
		}
	}
	return out, nil
}

func (d *fakeDest) DeleteRecords(_ context.Context, ids []string) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, id := range ids {
		if _, ok := d.records[id]; !ok {
			return 0, &redcap.Error{Site: "destination", Call: "delete records", Status: 400, Kind: redcap.KindPermanent,
				Message: "One or more of the records provided cannot be deleted because they do not exist in the project. The following records do not exist: " + id}
		}
		delete(d.records, id)
		n++
	}
	return n, nil
}

// fakeStore keeps versions, audits and deleted records in memory.
type fakeStore struct {
	mu       sync.Mutex
	versions map[string]int64
	audits   []messages.ImportDone
	kept     []messages.DeletedRecord
}

func (s *fakeStore) KeepDeleted(_ context.Context, rec messages.DeletedRecord) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.kept = append(s.kept, rec)
	return nil
}

func (s *fakeStore) Versions(context.Context) (map[string]int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int64{}
	for k, v := range s.versions {
		out[k] = v
	}
	return out, nil
}

func (s *fakeStore) SetVersions(_ context.Context, upd map[string]int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, v := range upd {
		s.versions[k] = v
	}
	return nil
}

func (s *fakeStore) Audit(_ context.Context, _ string, a messages.ImportDone) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.audits = append(s.audits, a)
	return nil
}

func (s *fakeStore) PutSnapshot(context.Context, string, *messages.MetadataSnapshot) error {
	return nil
}

func newImporter(t *testing.T, dest *fakeDest, versions map[string]int64) (*Importer, *fakeStore) {
	t.Helper()
	if dest.records == nil {
		dest.records = map[string]messages.Row{}
	}
	st := &fakeStore{versions: versions}
	if st.versions == nil {
		st.versions = map[string]int64{}
	}
	im, err := New(context.Background(), Deps{Destination: dest, Store: st, Streams: config.DefaultStreams(),
		Settings: config.Destination{BatchSize: 100, Concurrency: 1}})
	if err != nil {
		t.Fatal(err)
	}
	return im, st
}

func batch(ms ...*fakeMsg) []router.Msg {
	out := make([]router.Msg, len(ms))
	for i, m := range ms {
		out[i] = m
	}
	return out
}

func TestLatestVersionWinsWithinABatchAndAcrossBatches(t *testing.T) {
	dest := &fakeDest{}
	im, st := newImporter(t, dest, map[string]int64{"a-3": 500})
	older, newer := cleaned("a-1", 100, "1"), cleaned("a-1", 200, "2")
	stale := cleaned("a-3", 400, "7") // older than what the destination has
	im.process(context.Background(), batch(newer, older, cleaned("a-2", 100, "5"), stale))
	if dest.records["a-1"]["score"] != "2" || dest.records["a-2"]["score"] != "5" {
		t.Fatalf("destination %v: want a-1 at its newest version and a-2", dest.records)
	}
	if _, ok := dest.records["a-3"]; ok {
		t.Fatal("an older version of a-3 was imported over a newer one")
	}
	for _, m := range []*fakeMsg{older, newer, stale} {
		if m.outcome != "ack" {
			t.Fatalf("a delivery ended %q, want acked", m.outcome)
		}
	}
	if st.versions["a-1"] != 200 || st.versions["a-3"] != 500 {
		t.Fatalf("versions %v", st.versions)
	}
	if dest.calls != 1 {
		t.Fatalf("%d import calls for one batch, want 1", dest.calls)
	}
}

func TestRejectedRecordsAreDeadLetteredAndTheRestImported(t *testing.T) {
	for _, anonymous := range []bool{false, true} {
		dest := &fakeDest{reject: map[string]bool{"bad": true}, anonymous: anonymous}
		im, st := newImporter(t, dest, nil)
		var ms []*fakeMsg
		for i := 0; i < 9; i++ {
			score := fmt.Sprint(i)
			if i == 4 {
				score = "bad"
			}
			ms = append(ms, cleaned(fmt.Sprintf("a-%d", i), 1, score))
		}
		im.process(context.Background(), batch(ms...))
		for i, m := range ms {
			want := "ack"
			if i == 4 {
				want = "dead"
			}
			if m.outcome != want {
				t.Fatalf("anonymous=%v: record a-%d ended %q, want %s", anonymous, i, m.outcome, want)
			}
		}
		if len(dest.records) != 8 {
			t.Fatalf("anonymous=%v: %d records imported, want 8", anonymous, len(dest.records))
		}
		if dl := ms[4].letter; dl.RecordID != "a-4" || dl.Error == "" || (!anonymous && len(dl.Details) != 1) {
			t.Fatalf("anonymous=%v: dead letter %+v, want REDCap's reason for a-4", anonymous, dl)
		}
		var audited []string
		for _, a := range st.audits {
			audited = append(audited, a.Records...)
		}
		sort.Strings(audited)
		if len(audited) != 8 {
			t.Fatalf("anonymous=%v: audit %v", anonymous, audited)
		}
	}
}

func TestDeletingARecordAlreadyGoneCountsAsDeleted(t *testing.T) {
	dest := &fakeDest{}
	im, st := newImporter(t, dest, nil)
	im.process(context.Background(), batch(cleaned("a-1", 1, "1")))
	gone, present := deletion("a-9", 2), deletion("a-1", 2)
	im.process(context.Background(), batch(gone, present))
	if gone.outcome != "ack" || present.outcome != "ack" {
		t.Fatalf("deletions ended %q and %q, want both acked", gone.outcome, present.outcome)
	}
	if len(dest.records) != 0 {
		t.Fatalf("destination still holds %v", dest.records)
	}
	var deleted []string
	for _, a := range st.audits {
		deleted = append(deleted, a.Deleted...)
	}
	sort.Strings(deleted)
	if fmt.Sprint(deleted) != "[a-1 a-9]" {
		t.Fatalf("audited deletions %v, want a-1 and a-9", deleted)
	}
	if len(st.kept) != 1 || st.kept[0].DestRecordID != "a-1" || st.kept[0].Rows[0]["score"] != "1" {
		t.Fatalf("kept %+v: want a-1's destination rows kept before it was deleted (and nothing for a-9, which was not there)", st.kept)
	}
}

func TestMalformedMessagesAreDeadLettered(t *testing.T) {
	dest := &fakeDest{}
	im, _ := newImporter(t, dest, nil)
	bad := &fakeMsg{data: []byte(`{"v":1,"site":"alpha"`), site: "alpha"}
	other := &fakeMsg{data: []byte(`{"v":99,"dest_record_id":"x"}`), site: "alpha"}
	im.process(context.Background(), batch(bad, other))
	if bad.outcome != "dead" || other.outcome != "dead" || bad.letter.Error == "" {
		t.Fatalf("malformed deliveries ended %q/%q (%+v)", bad.outcome, other.outcome, bad.letter)
	}
}

func TestARecordAnotherWorkerImportsIsHandedBack(t *testing.T) {
	dest := &fakeDest{}
	im, _ := newImporter(t, dest, nil)
	im.claim("a-1")
	m := cleaned("a-1", 1, "1")
	im.process(context.Background(), batch(m))
	if m.outcome != "retry" || len(dest.records) != 0 {
		t.Fatalf("a record being imported by another worker ended %q", m.outcome)
	}
}
