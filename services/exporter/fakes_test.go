package exporter

import (
	"context"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/pipeline/broker"
	"github.com/redcap-relay/relay/services/internal/policy"
	"github.com/redcap-relay/relay/services/internal/redcap"
)

// The exporter's unit tests run against in-memory fakes of the site's REDCap
// and of JetStream; the end-to-end tests (services/e2e) run the real
// simulator over HTTP and a real NATS server.

var testFields = []messages.Field{
	{FieldName: "record_id", FormName: "survey", FieldType: "text", FieldLabel: "ID"},
	{FieldName: "name", FormName: "survey", FieldType: "text", FieldLabel: "Name", Identifier: "y"},
	{FieldName: "score", FormName: "survey", FieldType: "text", FieldLabel: "Score", TextValidationTypeOrShowSlider: "integer"},
}

const testPolicy = `name: unit
approved:
  forms: [survey]
record_id: {mode: namespace}
rules:
  - field: name
    rule: drop
`

// fakeSite is a REDCap project in memory: rows per record and when each
// record last changed (for dateRangeBegin).
type fakeSite struct {
	mu      sync.Mutex
	fields  []messages.Field
	rows    map[string][]messages.Row
	changed map[string]time.Time
	calls   int64
	// failExport makes every record export fail with this error.
	failExport error
	// hide leaves these records out of every answer (a DAG-restricted token,
	// or a server answering incompletely); omitFromList leaves them out of
	// full record-ID lists only, for the next omitAnswers answers.
	hide         map[string]bool
	omitFromList map[string]bool
	omitAnswers  int
	// dropRows drops every n-th row of record exports (1 in n).
	dropEvery, dropped int
	dagRestricted      bool
	// failAll makes every call fail (an unreachable site).
	failAll error
	// files are the records' files, by "<record>/<field>".
	files map[string]fakeFile
	// logs is the project's log (nil: the token has no Logging right).
	logs []redcap.LogEntry
}

type fakeFile struct {
	name, mime string
	data       []byte
}

func newFakeSite(n int, at time.Time) *fakeSite {
	s := &fakeSite{fields: testFields, rows: map[string][]messages.Row{}, changed: map[string]time.Time{}}
	for i := 1; i <= n; i++ {
		s.put(fmt.Sprint(i), fmt.Sprint(i%10), at)
	}
	return s
}

func (s *fakeSite) put(id, score string, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rows[id] = []messages.Row{{"record_id": id, "name": "Person " + id, "score": score, "survey_complete": "2"}}
	s.changed[id] = at
}

func (s *fakeSite) remove(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.rows, id)
	delete(s.changed, id)
}

func (s *fakeSite) call() { s.mu.Lock(); s.calls++; s.mu.Unlock() }

func (s *fakeSite) down() error { s.mu.Lock(); defer s.mu.Unlock(); return s.failAll }

func (s *fakeSite) Calls() int64 { s.mu.Lock(); defer s.mu.Unlock(); return s.calls }

func (s *fakeSite) ExportVersion(context.Context) (string, error) { s.call(); return "14.7.3", nil }
func (s *fakeSite) ExportProjectInfo(context.Context) (messages.ProjectInfo, error) {
	s.call()
	return messages.ProjectInfo{ProjectID: 1, ProjectTitle: "unit"}, nil
}
func (s *fakeSite) ExportMetadata(context.Context, ...string) ([]messages.Field, error) {
	s.call()
	if err := s.down(); err != nil {
		return nil, err
	}
	return s.fields, nil
}
func (s *fakeSite) ExportInstruments(context.Context) ([]messages.Instrument, error) {
	s.call()
	return []messages.Instrument{{InstrumentName: "survey", InstrumentLabel: "Survey"}}, nil
}
func (s *fakeSite) ExportArms(context.Context) ([]messages.Arm, error) { s.call(); return nil, nil }
func (s *fakeSite) ExportFile(_ context.Context, ref redcap.FileRef, w io.Writer) (redcap.FileInfo, error) {
	s.call()
	s.mu.Lock()
	f, ok := s.files[ref.Record+"/"+ref.Field]
	s.mu.Unlock()
	if !ok {
		return redcap.FileInfo{}, &redcap.Error{Site: "alpha", Call: "export file", Status: 400, Kind: redcap.KindPermanent, Message: "There is no file to download for this record"}
	}
	n, err := w.Write(f.data)
	return redcap.FileInfo{Name: f.name, MIME: f.mime, Size: int64(n)}, err
}

func (s *fakeSite) ExportLogging(context.Context, redcap.LogParams) ([]redcap.LogEntry, error) {
	s.call()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.logs == nil {
		return nil, &redcap.Error{Site: "alpha", Call: "export logging", Status: 403, Kind: redcap.KindPermanent, Message: "You do not have Logging privileges"}
	}
	return s.logs, nil
}

// rename renames a record as REDCap does, logging it when the fake keeps a log.
func (s *fakeSite) rename(old, new string, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rows := s.rows[old]
	for _, r := range rows {
		r["record_id"] = new
	}
	s.rows[new], s.changed[new] = rows, at
	delete(s.rows, old)
	delete(s.changed, old)
	if s.logs != nil {
		s.logs = append(s.logs, redcap.LogEntry{Action: "Rename Record (API) " + new, Record: new, Details: "old_record = '" + old + "',\nnew_record = '" + new + "'"})
	}
}

func (s *fakeSite) GenerateNextRecordName(context.Context) (string, error) {
	s.call()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dagRestricted {
		return "12-1", nil
	}
	return fmt.Sprint(len(s.rows) + 1), nil
}

func (s *fakeSite) ExportDAGs(context.Context) ([]messages.DAG, error) {
	s.call()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dagRestricted {
		return nil, &redcap.Error{Site: "alpha", Call: "export DAGs", Status: 403, Kind: redcap.KindPermanent,
			Message: "You do not have permission to export or import Data Access Groups because you are assigned to a Data Access Group."}
	}
	return []messages.DAG{{Name: "A", Unique: "a", ID: 1}}, nil
}
func (s *fakeSite) ExportEvents(context.Context) ([]messages.Event, error) { s.call(); return nil, nil }
func (s *fakeSite) ExportFormEventMapping(context.Context) ([]messages.FormEvent, error) {
	s.call()
	return nil, nil
}
func (s *fakeSite) ExportRepeating(context.Context) ([]messages.RepeatingForm, error) {
	s.call()
	return nil, nil
}

func (s *fakeSite) ExportRecordIDs(_ context.Context, _ string, since time.Time) ([]string, error) {
	s.call()
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for id, at := range s.changed {
		if s.hide[id] {
			continue
		}
		if since.IsZero() || !at.Before(since) {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids, nil
}

func (s *fakeSite) ExportRecords(_ context.Context, p redcap.ExportParams) ([]messages.Row, error) {
	s.call()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failExport != nil {
		return nil, s.failExport
	}
	ids := p.Records
	listing := len(p.Fields) == 1 && p.Fields[0] == "record_id"
	if len(ids) == 0 {
		for id := range s.rows {
			ids = append(ids, id)
		}
		sort.Strings(ids)
		if listing && s.omitAnswers > 0 {
			s.omitAnswers--
			var kept []string
			for _, id := range ids {
				if !s.omitFromList[id] {
					kept = append(kept, id)
				}
			}
			ids = kept
		}
	}
	var out []messages.Row
	for _, id := range ids {
		if s.hide[id] {
			continue
		}
		for _, r := range s.rows[id] {
			if s.dropEvery > 0 {
				if s.dropped++; s.dropped%s.dropEvery == 0 {
					continue
				}
			}
			row := messages.Row{}
			for k, v := range r {
				if len(p.Fields) == 0 || slices.Contains(p.Fields, k) || strings.HasSuffix(k, "_complete") {
					row[k] = v
				}
			}
			out = append(out, row)
		}
	}
	return out, nil
}

// fakeSites is the network: sites by ID, each with its fake project.
type fakeSites struct {
	sites  map[string]*config.Site
	redcap map[string]*fakeSite
	policy string
}

func (f *fakeSites) Site(id string) (*config.Site, error) {
	if s, ok := f.sites[id]; ok {
		return s, nil
	}
	return nil, fmt.Errorf("unknown site %q", id)
}

func (f *fakeSites) Client(site string) (REDCap, error) { return f.redcap[site], nil }

func (f *fakeSites) Policy(site string, snap *messages.MetadataSnapshot) (*policy.Compiled, error) {
	p, err := policy.Parse("policy.yaml", []byte(f.policy))
	if err != nil {
		return nil, err
	}
	return policy.Compile(p, snap, policy.Options{Site: site, Namespace: site})
}

// fakeStore is JetStream in memory.
type fakeStore struct {
	mu        sync.Mutex
	deletions map[string]messages.DeletionState
	dest      *messages.MetadataSnapshot // the destination's dictionary (default: the site's)
	objects   map[string][]byte          // the files bucket
	putErr    error
	letters   []messages.DeadLetter
	destErr   error
	decisions map[string]*messages.DeletionDecision
	state     map[string]messages.SiteState
	known     map[string]Known
	snaps     map[string]*messages.MetadataSnapshot
	published []messages.RecordExported
	events    []messages.RunEvent
	leased    map[string]string
	// failWait makes the next Publisher's Wait fail (a lost ack).
	failWait error
}

func newFakeStore() *fakeStore {
	return &fakeStore{deletions: map[string]messages.DeletionState{}, decisions: map[string]*messages.DeletionDecision{}, state: map[string]messages.SiteState{}, known: map[string]Known{}, snaps: map[string]*messages.MetadataSnapshot{}, leased: map[string]string{}}
}

func (f *fakeStore) Lease(_ context.Context, site, run string) (func(), error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if cur, ok := f.leased[site]; ok && cur != run {
		return nil, ErrSiteBusy
	}
	f.leased[site] = run
	return func() { f.mu.Lock(); delete(f.leased, site); f.mu.Unlock() }, nil
}

func (f *fakeStore) State(_ context.Context, site string) (messages.SiteState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state[site], nil
}

func (f *fakeStore) SaveState(_ context.Context, site string, st messages.SiteState) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.state[site] = st
	return nil
}

func (f *fakeStore) Known(_ context.Context, site string) (Known, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	k := Known{}
	for id, h := range f.known[site] {
		k[id] = h
	}
	return k, nil
}

func (f *fakeStore) SaveKnown(_ context.Context, site string, k Known) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.known[site] = k
	return nil
}

func (f *fakeStore) Snapshot(_ context.Context, key string) (*messages.MetadataSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.snaps[key], nil
}

func (f *fakeStore) PublishSnapshot(_ context.Context, snap *messages.MetadataSnapshot) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	cp := *snap
	f.snaps[messages.MetadataKey(snap.Site, snap.Hash)] = &cp
	return nil
}

func (f *fakeStore) Deletions(_ context.Context, site string) (messages.DeletionState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.deletions[site], nil
}

func (f *fakeStore) SaveDeletions(_ context.Context, site string, st messages.DeletionState) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deletions[site] = st
	return nil
}

func (f *fakeStore) Decision(_ context.Context, site, run string) (*messages.DeletionDecision, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.decisions[messages.DeletionDecisionKey(site, run)], nil
}

func (f *fakeStore) Destination(context.Context, string, time.Time) (*messages.MetadataSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.destErr != nil {
		return nil, f.destErr
	}
	if f.dest == nil {
		return &messages.MetadataSnapshot{Fields: testFields}, nil
	}
	return f.dest, nil
}

func (f *fakeStore) HasFile(_ context.Context, object string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.objects[object]
	return ok, nil
}

func (f *fakeStore) PutFile(_ context.Context, object string, r io.Reader, size int64) error {
	if f.putErr != nil {
		return f.putErr
	}
	b, err := io.ReadAll(io.LimitReader(r, size))
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.objects == nil {
		f.objects = map[string][]byte{}
	}
	f.objects[object] = b
	return nil
}

func (f *fakeStore) DeadLetter(_ context.Context, dl messages.DeadLetter) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.letters = append(f.letters, dl)
	return nil
}

func (f *fakeStore) Publisher() Publisher { return &fakePublisher{store: f} }

func (f *fakeStore) RunEvent(_ context.Context, ev messages.RunEvent) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.events = append(f.events, ev)
	return nil
}

func (f *fakeStore) RawBacklog(context.Context) (uint64, error) { return 0, nil }

// take returns and forgets what was published.
func (f *fakeStore) take() []messages.RecordExported {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.published
	f.published = nil
	return out
}

func (f *fakeStore) lastEvent() messages.RunEvent {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.events[len(f.events)-1]
}

// fakePublisher stores a run's messages only when the run waits for them,
// as JetStream acks them.
type fakePublisher struct {
	store   *fakeStore
	pending []messages.RecordExported
}

func (p *fakePublisher) Add(_ context.Context, _, _ string, _ broker.Route, v any) error {
	p.pending = append(p.pending, v.(messages.RecordExported))
	return nil
}

func (p *fakePublisher) Wait(context.Context) error {
	p.store.mu.Lock()
	defer p.store.mu.Unlock()
	if err := p.store.failWait; err != nil {
		p.store.failWait = nil
		return err
	}
	p.store.published = append(p.store.published, p.pending...)
	p.pending = nil
	return nil
}

// unit is one exporter with one site "alpha" on fakes, and a clock.
type unit struct {
	t     *testing.T
	site  *fakeSite
	sites *fakeSites
	store *fakeStore
	exp   *Exporter
	now   time.Time
}

func newUnit(t *testing.T, records int, mutate func(*config.Site)) *unit {
	t.Helper()
	u := &unit{t: t, now: time.Date(2026, 11, 1, 2, 0, 0, 0, time.UTC), store: newFakeStore()}
	u.site = newFakeSite(records, u.now.Add(-time.Hour))
	st := config.Site{ID: "alpha", Namespace: "alpha", BatchSize: 7, ExportConcurrency: 2, FullEvery: config.Duration(7 * 24 * time.Hour),
		Overlap: config.Duration(time.Minute), TimeZone: "UTC", ServerTimeZone: "UTC",
		DeletionDelay: config.DeletionDelay{Mode: config.DelayRun}, MaxDeletionsPerRun: config.Limit{Percent: 2, AtLeast: 5},
		RetryFor: config.Duration(2 * time.Second)}
	if mutate != nil {
		mutate(&st)
	}
	u.sites = &fakeSites{sites: map[string]*config.Site{"alpha": &st}, redcap: map[string]*fakeSite{"alpha": u.site}, policy: testPolicy}
	u.exp = New(Deps{Sites: u.sites, Store: u.store, Streams: config.DefaultStreams(), Now: func() time.Time { return u.now }})
	return u
}

// runAt requests and runs an export at the given time.
func (u *unit) runAt(at time.Time, full bool) error {
	u.t.Helper()
	u.now = at
	req := messages.ExportRequested{V: messages.V, Site: "alpha", RunID: messages.RunID("alpha", at), Full: full, RequestedAt: at}
	return u.exp.Export(context.Background(), req)
}
