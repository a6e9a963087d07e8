package checker

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/pipeline/topology"
	"github.com/redcap-relay/relay/services/internal/protocol"
	"github.com/redcap-relay/relay/services/internal/tools/redcapsim"
)

func startJS(t *testing.T) jetstream.JetStream {
	t.Helper()
	ns, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go ns.Start()
	if !ns.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats not ready")
	}
	t.Cleanup(ns.Shutdown)
	nc, err := nats.Connect(ns.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for name, subj := range map[string]string{
		messages.StreamMetadata: messages.SubjectMetadata + ".*",
		messages.StreamReports:  messages.SubjectProtocolReport + ".*",
		messages.StreamDLQ:      messages.SubjectDLQ + ".>",
	} {
		if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{subj}, Storage: jetstream.FileStorage}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := js.CreateOrUpdateConsumer(ctx, messages.StreamMetadata, jetstream.ConsumerConfig{
		Durable: topology.Check.Consumer, FilterSubject: messages.SubjectMetadata + ".*", AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second,
	}); err != nil {
		t.Fatal(err)
	}
	return js
}

// simSite creates a project at the simulator from a snapshot and returns
// its token.
func simSite(t *testing.T, sim *redcapsim.Server, m *messages.MetadataSnapshot, n int, rights redcapsim.Rights) string {
	t.Helper()
	id, err := sim.CreateProject(redcapsim.ProjectSpec{Title: m.Site, Fields: m.Fields, Arms: m.Arms, Events: m.Events,
		FormEventMapping: m.FormEventMapping, Instruments: m.Instruments, Longitudinal: true})
	if err != nil {
		t.Fatal(err)
	}
	tok := fmt.Sprintf("%032X", id*7919)
	if err := sim.AddToken(id, tok, rights, ""); err != nil {
		t.Fatal(err)
	}
	return tok
}

// Network writes a network file for the given sites (id -> token) and loads it.
func Network(t *testing.T, url string, tokens map[string]string, reports string) *config.Network {
	t.Helper()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte("version: 1\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "dest.token"), []byte("DDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDD"), 0o600)
	y := fmt.Sprintf("destination:\n  url: %s\n  token: {file: dest.token}\nreports_dir: %s\nsites:\n", url, reports)
	for _, id := range []string{"site-a", "site-b", "site-c"} {
		tok, ok := tokens[id]
		if !ok {
			continue
		}
		os.WriteFile(filepath.Join(dir, id+".token"), []byte(tok), 0o600)
		y += fmt.Sprintf("  - id: %s\n    name: Site %s\n    url: %s\n    token: {file: %s.token}\n    policy: policy.yaml\n    namespace: %s\n", id, id, url, id, strings.ReplaceAll(id, "-", "_"))
	}
	path := filepath.Join(dir, "network.yaml")
	os.WriteFile(path, []byte(y), 0o600)
	n, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestCheckerService(t *testing.T) {
	js := startJS(t)
	p, err := protocol.HEALAdult()
	if err != nil {
		t.Fatal(err)
	}
	sim, err := redcapsim.New(redcapsim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	addr, err := sim.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := addr // the simulator answers with its API URL

	a := protocol.SiteSnapshot(p, "site-a")
	b := protocol.SiteSnapshot(p, "site-b")
	var keep []messages.Field
	for _, f := range b.Fields {
		if f.FieldName != "phq_down" {
			keep = append(keep, f)
		}
	}
	b.Fields = keep
	tokA := simSite(t, sim, a, 1, redcapsim.FullRights())
	tokB := simSite(t, sim, b, 2, redcapsim.FullRights())
	idA, _ := sim.ProjectIDForToken(tokA)
	if err := sim.ImportRows(idA, []messages.Row{
		{"record_id": "1", "redcap_event_name": "baseline_arm_1", "phq2_complete": "2", "phq_interest": "1", "phq_down": "0"},
		{"record_id": "2", "redcap_event_name": "baseline_arm_1", "phq2_complete": "1", "phq_interest": "2"},
		{"record_id": "2", "redcap_event_name": "month_3_arm_1", "phq2_complete": "0"},
		{"record_id": "3", "redcap_event_name": "baseline_arm_1", "demographics_complete": "2", "dem_age": "40"},
	}, false); err != nil {
		t.Fatal(err)
	}

	reports := t.TempDir()
	n := Network(t, url, map[string]string{"site-a": tokA, "site-b": tokB}, reports)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Deps{JS: js, Network: n, Protocol: p, RetryDelay: 100 * time.Millisecond})
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})

	pub := func(site string, body []byte) {
		if _, err := js.Publish(ctx, messages.MetadataSubject(site), body); err != nil {
			t.Fatal(err)
		}
	}
	for _, m := range []*messages.MetadataSnapshot{a, b} {
		m.RunID = m.Site + "-run1"
		body, _ := json.Marshal(m)
		pub(m.Site, body)
	}
	pub("site-x", []byte(`{"v":1,"site":"site-x","fields":`)) // truncated
	pub("site-y", []byte(`{"v":99,"site":"site-y","fields":[{"field_name":"a"}]}`))

	got := map[string]*messages.ProtocolReport{}
	rc, err := js.OrderedConsumer(ctx, messages.StreamReports, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for len(got) < 2 && time.Now().Before(deadline) {
		msg, err := rc.Next(jetstream.FetchMaxWait(time.Second))
		if err != nil {
			continue
		}
		var r messages.ProtocolReport
		if err := json.Unmarshal(msg.Data(), &r); err != nil {
			t.Fatal(err)
		}
		if msg.Subject() != messages.ProtocolReportSubject(r.Site) {
			t.Errorf("report for %s on %s", r.Site, msg.Subject())
		}
		got[r.Site] = &r
	}
	ra, rb := got["site-a"], got["site-b"]
	if ra == nil || rb == nil {
		t.Fatalf("reports: %v", got)
	}
	if ra.Status != messages.ProtocolConformant || *ra.Score != 100 || ra.SiteName != "Site site-a" || ra.RunID != "site-a-run1" {
		t.Errorf("site-a: %s %v %q %q", ra.Status, *ra.Score, ra.SiteName, ra.RunID)
	}
	if rb.Status != messages.ProtocolDeviations || rb.Errors != 1 {
		t.Errorf("site-b: %s errors %d", rb.Status, rb.Errors)
	}
	// completion from the site's status fields only
	cells := map[string]messages.ProtocolCompletion{}
	for _, c := range ra.Completion {
		cells[c.Form+"@"+c.Event] = c
		if len(c.Items) > 0 {
			t.Errorf("item values were fetched: %+v", c.Items)
		}
	}
	if c := cells["phq2@baseline_arm_1"]; c.Records != 3 || c.Complete != 1 || c.Unverified != 1 || c.Blank != 1 {
		t.Errorf("phq2 at baseline: %+v", c)
	}
	if c := cells["phq2@month_3_arm_1"]; c.Records != 1 || c.Incomplete != 1 {
		t.Errorf("phq2 at month 3: %+v", c)
	}
	if c := cells["demographics@baseline_arm_1"]; c.Complete != 1 {
		t.Errorf("demographics at baseline: %+v", c)
	}
	for _, f := range []string{"site-a.json", "site-a.csv", "site-b.json", "site-b.csv", "index.html"} {
		if _, err := os.Stat(filepath.Join(reports, f)); err != nil {
			t.Error(err)
		}
	}
	// the two unreadable snapshots are dead-lettered
	dc, err := js.OrderedConsumer(ctx, messages.StreamDLQ, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	dead := map[string]messages.DeadLetter{}
	for len(dead) < 2 && time.Now().Before(deadline) {
		msg, err := dc.Next(jetstream.FetchMaxWait(time.Second))
		if err != nil {
			continue
		}
		var d messages.DeadLetter
		json.Unmarshal(msg.Data(), &d)
		if msg.Subject() != messages.DLQSubject(messages.StageCheck, d.Site) || d.Stage != messages.StageCheck {
			t.Errorf("dead letter %s: %+v", msg.Subject(), d)
		}
		dead[d.Site] = d
	}
	if len(dead) != 2 || dead["site-x"].Error == "" || dead["site-y"].Error == "" {
		t.Fatalf("dead letters: %+v", dead)
	}
	t.Logf("site-x: %s", dead["site-x"].Error)
	t.Logf("site-y: %s", dead["site-y"].Error)
	// everything is acked
	time.Sleep(200 * time.Millisecond)
	cons, _ := js.Consumer(ctx, messages.StreamMetadata, topology.Check.Consumer)
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.NumAckPending != 0 || info.NumPending != 0 {
		t.Errorf("consumer: %d ack pending, %d pending", info.NumAckPending, info.NumPending)
	}
}
