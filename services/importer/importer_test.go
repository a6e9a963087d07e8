package importer

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
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
	files     map[string]string // "<record>/<field>" -> "<name>:<content>"
	uploads   int
	noRename  bool
	renames   int
	// memoryFor makes batches of more rows than this run out of memory,
	// as REDCap does when a request is too big for its PHP memory limit.
	memoryFor int
	sizes     []int // rows of each import call
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
	d.sizes = append(d.sizes, len(rows))
	if d.memoryFor > 0 && len(rows) > d.memoryFor {
		return redcap.ImportResult{}, &redcap.Error{Site: "destination", Call: "import records", Status: 200, Kind: redcap.KindTransient, Message: "REDCap ran out of server memory"}
	}
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

func (d *fakeDest) ImportFile(_ context.Context, ref redcap.FileRef, name string, r io.Reader, size int64) error {
	b, err := io.ReadAll(io.LimitReader(r, size))
	if err != nil {
		return err
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.files == nil {
		d.files = map[string]string{}
	}
	d.uploads++
	d.files[ref.Record+"/"+ref.Field] = name + ":" + string(b)
	return nil
}

func (d *fakeDest) RenameRecord(_ context.Context, old, new string, _ int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.noRename {
		return &redcap.Error{Site: "destination", Call: "rename record", Status: 403, Kind: redcap.KindPermanent, Message: "You do not have Rename Record privileges"}
	}
	r, ok := d.records[old]
	if !ok {
		return &redcap.Error{Site: "destination", Call: "rename record", Status: 400, Kind: redcap.KindPermanent, Message: "The record '" + old + "' does not exist"}
	}
	delete(d.records, old)
	r["record_id"] = new
	d.records[new] = r
	d.renames++
	return nil
}

func (d *fakeDest) DeleteFile(_ context.Context, ref redcap.FileRef) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.files, ref.Record+"/"+ref.Field)
	return nil
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
	mu        sync.Mutex
	versions  map[string]int64
	audits    []messages.ImportDone
	kept      []messages.DeletedRecord
	objects   map[string]string // the files bucket
	destFiles map[string]string
	letters   []messages.DeadLetter
}

func (s *fakeStore) OpenFile(_ context.Context, object string) (io.ReadCloser, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.objects[object]
	if !ok {
		return nil, errFileGone
	}
	return io.NopCloser(strings.NewReader(b)), nil
}

func (s *fakeStore) DestFile(_ context.Context, key string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.destFiles[key], nil
}

func (s *fakeStore) SetDestFile(_ context.Context, key, sha string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.destFiles == nil {
		s.destFiles = map[string]string{}
	}
	if sha == "" {
		delete(s.destFiles, key)
	} else {
		s.destFiles[key] = sha
	}
	return nil
}

func (s *fakeStore) DeadLetter(_ context.Context, dl messages.DeadLetter) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.letters = append(s.letters, dl)
	return nil
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

func withFiles(m *fakeMsg, files ...messages.FileRef) *fakeMsg {
	var rec messages.RecordCleaned
	json.Unmarshal(m.data, &rec)
	rec.Files = files
	m.data, _ = json.Marshal(rec)
	return m
}

func TestFilesFollowTheirRecordOnceAndAreRemovedWithTheSite(t *testing.T) {
	dest := &fakeDest{}
	im, st := newImporter(t, dest, nil)
	st.objects = map[string]string{"sha256/aa": "%PDF one", "sha256/bb": "%PDF two"}
	pdf := messages.FileRef{Field: "consent_file", Object: "sha256/aa", SHA256: "aa", Size: 8, MIME: "application/pdf"}
	m := withFiles(cleaned("a-1", 1, "1"), pdf)
	im.process(context.Background(), batch(m))
	if m.outcome != "ack" || dest.files["a-1/consent_file"] != "consent_file.pdf:%PDF one" {
		t.Fatalf("after the first import: %q, destination files %v", m.outcome, dest.files)
	}
	if a := st.audits[len(st.audits)-1]; len(a.Files) != 1 || a.Files[0].Size != 8 || a.Files[0].Field != "consent_file" {
		t.Fatalf("audit %+v: want the file's place and size", a)
	}
	// The same file again (a replay, a later unchanged run): not uploaded twice.
	im.process(context.Background(), batch(withFiles(cleaned("a-1", 2, "1"), pdf)))
	if dest.uploads != 1 {
		t.Fatalf("%d uploads of the same file, want 1", dest.uploads)
	}
	// Replaced at the site.
	im.process(context.Background(), batch(withFiles(cleaned("a-1", 3, "1"), messages.FileRef{Field: "consent_file", Object: "sha256/bb", SHA256: "bb", Size: 8, MIME: "application/pdf"})))
	if dest.files["a-1/consent_file"] != "consent_file.pdf:%PDF two" {
		t.Fatalf("a replaced file: destination holds %q", dest.files["a-1/consent_file"])
	}
	// Removed at the site.
	im.process(context.Background(), batch(withFiles(cleaned("a-1", 4, "1"), messages.FileRef{Field: "consent_file"})))
	if _, ok := dest.files["a-1/consent_file"]; ok {
		t.Fatal("a file removed at the site is still at the destination")
	}
	// A file past the bucket's retention: dead-lettered, the rows imported.
	m = withFiles(cleaned("a-2", 1, "5"), messages.FileRef{Field: "consent_file", Object: "sha256/gone", SHA256: "gone", Size: 3})
	im.process(context.Background(), batch(m))
	if m.outcome != "ack" || dest.records["a-2"]["score"] != "5" || len(st.letters) != 1 || !strings.Contains(st.letters[0].Error, "record a-2, field consent_file") {
		t.Fatalf("a missing file: %q, rows %v, letters %+v", m.outcome, dest.records["a-2"], st.letters)
	}
}

func renamedRecord(old, new string, version int64, score string) *fakeMsg {
	m := cleaned(new, version, score)
	var rec messages.RecordCleaned
	json.Unmarshal(m.data, &rec)
	rec.RenamedFrom = old
	m.data, _ = json.Marshal(rec)
	return m
}

func TestARenameAtTheSiteIsARenameAtTheDestination(t *testing.T) {
	dest := &fakeDest{}
	im, st := newImporter(t, dest, nil)
	im.process(context.Background(), batch(cleaned("a-1", 1, "3")))
	m := renamedRecord("a-1", "a-100", 2, "3")
	im.process(context.Background(), batch(m))
	if m.outcome != "ack" || dest.renames != 1 || dest.records["a-100"]["score"] != "3" {
		t.Fatalf("rename: %q, %d renames, destination %v", m.outcome, dest.renames, dest.records)
	}
	if _, ok := dest.records["a-1"]; ok {
		t.Fatal("the old ID is still at the destination")
	}
	if a := st.audits[len(st.audits)-1]; len(a.Renamed) != 1 || a.Renamed[0] != "a-1 -> a-100" {
		t.Fatalf("audit %+v: want the rename", a)
	}
	if len(st.kept) != 0 {
		t.Fatal("a rename deleted (and kept) a record")
	}

	// Without the Rename right: created anew, the old one deleted (and kept).
	dest2 := &fakeDest{noRename: true}
	im2, st2 := newImporter(t, dest2, nil)
	im2.process(context.Background(), batch(cleaned("a-1", 1, "3")))
	im2.process(context.Background(), batch(renamedRecord("a-1", "a-100", 2, "3")))
	if _, ok := dest2.records["a-1"]; ok || dest2.records["a-100"]["score"] != "3" || len(st2.kept) != 1 || st2.kept[0].DestRecordID != "a-1" {
		t.Fatalf("without the rename right: destination %v, kept %+v", dest2.records, st2.kept)
	}
}

// A batch REDCap runs out of memory on is imported in halves (nothing
// dead-lettered, nothing lost), and the batches after it are smaller.
func TestAnOutOfMemoryAnswerHalvesTheBatch(t *testing.T) {
	dest := &fakeDest{memoryFor: 30}
	im, st := newImporter(t, dest, nil)
	im.overloadPause = time.Millisecond
	var ms []*fakeMsg
	for i := 0; i < 100; i++ {
		ms = append(ms, cleaned(fmt.Sprintf("a-%d", i), 1, fmt.Sprint(i)))
	}
	im.process(context.Background(), batch(ms...))
	if len(dest.records) != 100 || len(st.letters) != 0 {
		t.Fatalf("%d of 100 records imported, %d dead-lettered; want all imported", len(dest.records), len(st.letters))
	}
	for _, m := range ms {
		if m.outcome != "ack" {
			t.Fatalf("a delivery ended %q", m.outcome)
		}
	}
	if got := im.sizer.Size(); got > 50 {
		t.Fatalf("next batch %d records after REDCap ran out of memory on 100; want at most 50", got)
	}
	t.Logf("import calls by rows: %v; next batch %d", dest.sizes, im.sizer.Size())
}
