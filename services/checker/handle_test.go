package checker

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/protocol"
	"github.com/redcap-relay/relay/services/internal/redcap"
)

// Unit tests of the checker's decisions, without NATS or HTTP: deliveries
// and the site's REDCap are in-memory fakes.

type fakeMsg struct {
	data    []byte
	site    string
	attempt int
	outcome string
	letter  messages.DeadLetter
}

func (m *fakeMsg) Data() []byte        { return m.data }
func (m *fakeMsg) Site() string        { return m.site }
func (m *fakeMsg) Run() string         { return "run" }
func (m *fakeMsg) Attempt() int        { return m.attempt }
func (m *fakeMsg) Ack()                { m.outcome = "ack" }
func (m *fakeMsg) Retry(time.Duration) { m.outcome = "retry" }
func (m *fakeMsg) DeadLetter(_ context.Context, dl messages.DeadLetter) {
	m.letter, m.outcome = dl, "dead"
}

type fakeRecords struct{ err error }

func (f fakeRecords) ExportRecords(context.Context, redcap.ExportParams) ([]messages.Row, error) {
	return nil, f.err
}

func unitService(t *testing.T, records Records) (*service, *[]*messages.ProtocolReport) {
	t.Helper()
	p, err := protocol.HEALAdult()
	if err != nil {
		t.Fatal(err)
	}
	var published []*messages.ProtocolReport
	net := &config.Network{Sites: []config.Site{{ID: "alpha", Name: "Alpha"}}}
	s, err := newService(Deps{Network: net, Protocol: p, ReportsDir: t.TempDir(), MaxTries: 3,
		NewClient: func(*config.Site) (Records, error) { return records, nil },
		Publish: func(_ context.Context, r *messages.ProtocolReport) error {
			published = append(published, r)
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	return s, &published
}

// healSnapshot is a site whose project is the protocol's own library.
func healSnapshot(t *testing.T) []byte {
	t.Helper()
	p, _ := protocol.HEALAdult()
	var fields []messages.Field
	for _, in := range p.Instruments {
		fields = append(fields, in.Fields...)
	}
	snap := messages.MetadataSnapshot{V: messages.V, Site: "alpha", RunID: "run", Fields: append([]messages.Field{
		{FieldName: "record_id", FormName: fields[0].FormName, FieldType: "text", FieldLabel: "ID"}}, fields...),
		Instruments: protocol.InstrumentsOf(fields)}
	snap.ComputeHash()
	b, err := json.Marshal(snap)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestASnapshotItCannotReadIsDeadLettered(t *testing.T) {
	s, published := unitService(t, fakeRecords{})
	for _, c := range []struct{ name, body, site string }{
		{"not JSON", `{"v":1,`, "alpha"},
		{"another contract version", `{"v":7,"fields":[{}]}`, "alpha"},
		{"another site's subject", `{"v":1,"site":"beta","fields":[{"field_name":"x"}]}`, "alpha"},
		{"no dictionary", `{"v":1,"site":"alpha"}`, "alpha"},
	} {
		m := &fakeMsg{data: []byte(c.body), site: c.site, attempt: 1}
		s.handle(context.Background(), m)
		if m.outcome != "dead" || m.letter.Error == "" || m.letter.Site != "alpha" {
			t.Errorf("%s: ended %q with %+v, want dead-lettered with the reason", c.name, m.outcome, m.letter)
		}
	}
	if len(*published) != 0 {
		t.Fatalf("%d reports published for unreadable snapshots", len(*published))
	}
}

func TestCompletionThatCannotBeReadIsRetriedThenReportedWithout(t *testing.T) {
	transient := &redcap.Error{Site: "alpha", Call: "export records", Status: 503, Kind: redcap.KindTransient, Message: "Service Unavailable"}
	s, published := unitService(t, fakeRecords{err: transient})
	body := healSnapshot(t)
	m := &fakeMsg{data: body, site: "alpha", attempt: 1}
	s.handle(context.Background(), m)
	if m.outcome != "retry" || len(*published) != 0 {
		t.Fatalf("first attempt ended %q, want retried later", m.outcome)
	}
	m = &fakeMsg{data: body, site: "alpha", attempt: 3}
	s.handle(context.Background(), m)
	if m.outcome != "ack" || len(*published) != 1 {
		t.Fatalf("last attempt ended %q with %d reports, want the report without completion", m.outcome, len(*published))
	}
	r := (*published)[0]
	found := false
	for _, f := range r.Findings {
		found = found || f.Kind == "completion_unavailable"
	}
	if !found || r.SiteName != "Alpha" {
		t.Fatalf("report %+v: want a completion_unavailable note and the site's name", r.Findings)
	}
	if _, err := os.Stat(filepath.Join(s.dir, "alpha.json")); err != nil {
		t.Fatalf("report not written: %v", err)
	}
}

func TestAPermanentCompletionErrorIsNotRetried(t *testing.T) {
	s, published := unitService(t, fakeRecords{err: &redcap.Error{Site: "alpha", Call: "export records", Status: 403, Kind: redcap.KindPermanent, Message: "You do not have permissions to use the API"}})
	m := &fakeMsg{data: healSnapshot(t), site: "alpha", attempt: 1}
	s.handle(context.Background(), m)
	if m.outcome != "ack" || len(*published) != 1 {
		t.Fatalf("a revoked token ended %q with %d reports, want the report (without completion) at once", m.outcome, len(*published))
	}
	if (*published)[0].Infos == 0 {
		t.Fatal("the report does not say completion could not be measured")
	}
}
