package ops

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/crypto/bcrypt"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/pipeline/broker"
	"github.com/redcap-relay/relay/services/internal/pipeline/router"
	"github.com/redcap-relay/relay/services/internal/pipeline/topology"
)

// The deployment's own NATS config (deploy/nats/nats.conf) is what these
// tests load: the users and permissions compose runs with.
const deployNATSConf = "../../../deploy/nats/nats.conf"

var serviceUsers = []string{"admin", "ticker", "exporter", "transformer", "importer", "checker", "notifier", "verifier"}

// deployConfCopy is the deployment's config in a temporary folder, on any
// free monitoring port (compose fixes it).
func deployConfCopy(t *testing.T) string {
	t.Helper()
	raw, err := os.ReadFile(deployNATSConf)
	if err != nil {
		t.Fatal(err)
	}
	conf := strings.Replace(string(raw), "http_port: 8222", "http_port: -1", 1)
	confPath := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return confPath
}

// natsWithDeployConfig starts an embedded server from the deployment's
// config, with passwords read from secret files the way compose provides
// them, and returns its URL and the passwords.
func natsWithDeployConfig(t *testing.T) (string, map[string]string, jetstream.JetStream) {
	t.Helper()
	confPath := deployConfCopy(t)
	dir := filepath.Dir(confPath)
	pw := map[string]string{}
	for _, u := range serviceUsers {
		pw[u] = "pw-" + u + "-0123456789abcdef"
		// The server gets the bcrypt hash, as compose gives it
		// (secrets/nats/<user>.bcrypt); the clients keep the password.
		f := filepath.Join(dir, u+".bcrypt")
		if err := os.WriteFile(f, []byte(bcryptHash(t, pw[u])+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		env := PasswordEnvPrefix + strings.ToUpper(u)
		t.Setenv(env+"_FILE", f)
		t.Setenv(env, "") // restored after the test
	}
	set, err := PasswordEnvFromFiles()
	if err != nil || len(set) != len(serviceUsers) {
		t.Fatalf("password files: %v %v", set, err)
	}
	srv, _, js := startNATS(t, confPath, "admin", pw["admin"])
	return srv.ClientURL(), pw, js
}

// bcryptHash is what `relay nats hash-password` writes (at the lowest cost:
// the tests connect often).
func bcryptHash(t *testing.T, pw string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(pw), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// With bcrypt hashes in the server's config, nats-server does not warn
// about plaintext passwords (it does with the passwords themselves), and
// the users still log in with their passwords.
func TestDeployConfigHoldsOnlyPasswordHashes(t *testing.T) {
	confPath := deployConfCopy(t)
	dir := filepath.Dir(confPath)
	start := func(hashed bool) string {
		for _, u := range serviceUsers {
			secret := "pw-" + u + "-0123456789abcdef"
			if hashed {
				secret = bcryptHash(t, secret)
			}
			f := filepath.Join(dir, u+".secret")
			if err := os.WriteFile(f, []byte(secret), 0o600); err != nil {
				t.Fatal(err)
			}
			env := PasswordEnvPrefix + strings.ToUpper(u)
			t.Setenv(env+"_FILE", f)
			t.Setenv(env, "")
		}
		if _, err := PasswordEnvFromFiles(); err != nil {
			t.Fatal(err)
		}
		var logs bytes.Buffer
		srv, err := broker.StartEmbedded(broker.EmbeddedOptions{StoreDir: t.TempDir(), Port: -1, ConfigFile: confPath,
			Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		defer func() { srv.Shutdown(); srv.WaitForShutdown() }()
		nc, err := nats.Connect(srv.ClientURL(), nats.UserInfo("exporter", "pw-exporter-0123456789abcdef"))
		if err != nil {
			t.Fatalf("hashed %v: the exporter cannot log in with its password: %v", hashed, err)
		}
		nc.Close()
		if _, err := nats.Connect(srv.ClientURL(), nats.UserInfo("exporter", bcryptHash(t, "pw-exporter-0123456789abcdef"))); err == nil {
			t.Errorf("hashed %v: a hash is accepted as the password", hashed)
		}
		return logs.String()
	}
	if logs := start(true); strings.Contains(logs, "Plaintext passwords") {
		t.Errorf("hashed passwords still warn: %s", logs)
	}
	if logs := start(false); !strings.Contains(logs, "Plaintext passwords") {
		t.Errorf("the control (plain passwords) did not warn, so the check above proves nothing: %s", logs)
	}
}

// connectAs connects with an error handler that collects permission errors.
func connectAs(t *testing.T, url, user, password string) (*nats.Conn, *errorLog) {
	t.Helper()
	el := &errorLog{}
	nc, err := nats.Connect(url, nats.UserInfo(user, password), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { el.add(err) }))
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	return nc, el
}

type errorLog struct {
	mu   sync.Mutex
	errs []error
}

func (l *errorLog) add(err error) { l.mu.Lock(); l.errs = append(l.errs, err); l.mu.Unlock() }

func (l *errorLog) has(sub string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.errs {
		if strings.Contains(strings.ToLower(e.Error()), strings.ToLower(sub)) {
			return true
		}
	}
	return false
}

func streamMsgs(t *testing.T, js jetstream.JetStream, stream, subject string) uint64 {
	t.Helper()
	s, err := js.Stream(ctx(t), stream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx(t), jetstream.WithSubjectFilter(subject))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Subjects[subject]
}

func TestNATSAuthIsRequired(t *testing.T) {
	url, pw, _ := natsWithDeployConfig(t)
	if _, err := nats.Connect(url); err == nil || !strings.Contains(strings.ToLower(err.Error()), "authorization") {
		t.Fatalf("anonymous connect: %v", err)
	}
	if _, err := nats.Connect(url, nats.UserInfo("importer", pw["exporter"])); err == nil {
		t.Fatal("importer connected with the exporter's password")
	}
	_, _, err := Dial(context.Background(), Conn{URL: url, User: "importer", Password: "wrong-password-123", Timeout: 2 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "user/password") {
		t.Fatalf("wrong password: %v", err)
	}
}

// TestServiceUsersPublishOnlyOnTheirSubjects is the permission proof: each
// service's user can store messages on its own subjects, and a publish
// anywhere else is refused by the server and stores nothing.
func TestServiceUsersPublishOnlyOnTheirSubjects(t *testing.T) {
	url, pw, admin := natsWithDeployConfig(t)
	cases := []struct {
		user, subject, stream string
		allowed               bool
	}{
		{"ticker", "relay.export.requested.a", messages.StreamExportRequests, true},
		{"ticker", "relay.records.raw.a", messages.StreamRecordsRaw, false},
		{"exporter", "relay.records.raw.a", messages.StreamRecordsRaw, true},
		{"exporter", "relay.metadata.a", messages.StreamMetadata, true},
		{"exporter", "relay.run.a", messages.StreamAudit, true},
		{"exporter", "relay.dlq.export.a", messages.StreamDLQ, true},
		{"exporter", "relay.records.clean.a", messages.StreamRecordsClean, false}, // the importer's input
		{"exporter", "relay.import.done.a", messages.StreamAudit, false},          // the importer's output
		{"exporter", "relay.dlq.import.a", messages.StreamDLQ, false},
		{"exporter", "$KV.relay_deletion_decisions.a.run", "KV_relay_deletion_decisions", false}, // only an operator decides
		{"admin", "relay.deletions.a", messages.StreamAudit, true},
		{"exporter", "relay.export.requested.a", messages.StreamExportRequests, false},
		{"transformer", "relay.records.clean.a", messages.StreamRecordsClean, true},
		{"transformer", "relay.dlq.transform.a", messages.StreamDLQ, true},
		{"transformer", "relay.records.raw.a", messages.StreamRecordsRaw, false},
		{"transformer", "relay.import.done.a", messages.StreamAudit, false},
		{"importer", "relay.import.done.a", messages.StreamAudit, true},
		{"importer", "relay.dlq.import.a", messages.StreamDLQ, true},
		{"importer", "relay.records.clean.a", messages.StreamRecordsClean, false},
		{"importer", "relay.run.a", messages.StreamAudit, false},
		{"importer", "$O.relay_files.C.x", "OBJ_relay_files", false}, // reads files, never writes them
		{"checker", "relay.protocol.report.a", messages.StreamReports, true},
		{"checker", "relay.dlq.check.a", messages.StreamDLQ, true},
		{"checker", "relay.records.clean.a", messages.StreamRecordsClean, false},
		{"checker", "relay.metadata.a", messages.StreamMetadata, false},
		{"notifier", "relay.run.a", messages.StreamAudit, false},
		{"notifier", "relay.dlq.import.a", messages.StreamDLQ, false},
		{"notifier", "relay.export.requested.a", messages.StreamExportRequests, false},
		{"ticker", "relay.verify.requested.a", messages.StreamExportRequests, true},
		{"verifier", "relay.verify.a", messages.StreamAudit, true},
		{"verifier", "relay.export.requested.a", messages.StreamExportRequests, true}, // repair runs
		{"verifier", "relay.dlq.verify.a", messages.StreamDLQ, true},
		{"verifier", "relay.verify.requested.a", messages.StreamExportRequests, false}, // only the ticker schedules
		{"verifier", "relay.records.clean.a", messages.StreamRecordsClean, false},
		{"verifier", "relay.run.a", messages.StreamAudit, false},
		{"verifier", "$KV.relay_dest_version.a", "KV_relay_dest_version", false}, // reads, never writes
		{"exporter", "relay.verify.a", messages.StreamAudit, false},
	}
	for _, c := range cases {
		nc, errs := connectAs(t, url, c.user, pw[c.user])
		js, _ := jetstream.New(nc)
		before := streamMsgs(t, admin, c.stream, c.subject)
		pctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
		_, err := js.Publish(pctx, c.subject, []byte(`{"v":1}`), jetstream.WithMsgID(c.user+"."+c.subject))
		cancel()
		after := streamMsgs(t, admin, c.stream, c.subject)
		switch {
		case c.allowed && (err != nil || after != before+1):
			t.Errorf("%s publishing on %s: %v (stored %d→%d), want stored", c.user, c.subject, err, before, after)
		case !c.allowed && (err == nil || after != before):
			t.Errorf("%s publishing on %s: stored %d→%d, err %v; want refused", c.user, c.subject, before, after, err)
		case !c.allowed:
			nc.Flush()
			if !errs.has("permissions violation") {
				t.Errorf("%s on %s: refused (%v) but the server reported no permissions violation", c.user, c.subject, err)
			}
			t.Logf("refused as expected: %s publishing on %s: %v", c.user, c.subject, err)
		}
	}
}

// TestServiceUsersCannotReadOrManageOtherStreams: no service user can read
// PHI from RECORDS_RAW directly, delete streams, or take another service's
// deliveries.
func TestServiceUsersCannotReadOrManageOtherStreams(t *testing.T) {
	url, pw, _ := natsWithDeployConfig(t)
	for _, c := range []struct{ user, subject string }{
		{"checker", "$JS.API.STREAM.MSG.GET.RECORDS_RAW"},
		{"importer", "$JS.API.DIRECT.GET.RECORDS_RAW"},
		{"transformer", "$JS.API.STREAM.DELETE.RECORDS_CLEAN"},
		{"exporter", "$JS.API.STREAM.PURGE.AUDIT"},
		{"importer", "$JS.API.CONSUMER.CREATE.RECORDS_RAW"},
		{"ticker", "$JS.API.CONSUMER.DELETE.RECORDS_CLEAN.importer"},
		{"notifier", "$JS.API.STREAM.MSG.GET.RECORDS_RAW"},
		{"notifier", "$JS.API.CONSUMER.CREATE.RECORDS_RAW.x.relay.records.raw.a"},
		{"notifier", "$JS.API.CONSUMER.DELETE.RECORDS_CLEAN.importer"},
		{"notifier", "$JS.API.CONSUMER.MSG.NEXT.RECORDS_CLEAN.importer"},
		{"notifier", "$JS.API.STREAM.PURGE.DLQ"},
	} {
		nc, errs := connectAs(t, url, c.user, pw[c.user])
		_, err := nc.Request(c.subject, []byte(`{"seq":1}`), 500*time.Millisecond)
		nc.Flush()
		if err == nil || !errs.has("permissions violation") {
			t.Errorf("%s request on %s: %v; want a permissions violation", c.user, c.subject, err)
		}
	}
	nc, errs := connectAs(t, url, "transformer", pw["transformer"])
	if _, err := nc.Subscribe(topology.Export.DeliverSubject(), func(*nats.Msg) {}); err != nil {
		t.Fatal(err)
	}
	nc.Flush()
	time.Sleep(200 * time.Millisecond)
	if !errs.has("permissions violation for subscription") {
		t.Errorf("transformer subscribed to the exporter's deliveries without a permissions violation")
	}
}

// TestServiceUsersCanDoTheirWork runs, under each service's user, the same
// NATS calls the service makes: bound push subscriptions with manual acks,
// pull fetches, KV and object-store reads and writes.
func TestServiceUsersCanDoTheirWork(t *testing.T) {
	url, pw, admin := natsWithDeployConfig(t)
	c := ctx(t)
	mustPub := func(js jetstream.JetStream, subject string) {
		t.Helper()
		if _, err := js.Publish(c, subject, []byte(`{"v":1}`)); err != nil {
			t.Fatalf("publish %s: %v", subject, err)
		}
	}
	as := func(user string) (*nats.Conn, jetstream.JetStream, *errorLog) {
		nc, el := connectAs(t, url, user, pw[user])
		js, err := broker.JetStream(nc)
		if err != nil {
			t.Fatal(err)
		}
		return nc, js, el
	}
	// ticker → exporter: push consumer bound by watermill-nats' calls.
	_, tjs, _ := as("ticker")
	mustPub(tjs, messages.ExportRequestedSubject("a"))
	enc, ejs, eerr := as("exporter")
	pushConsume(t, enc, messages.StreamExportRequests, topology.Export.Consumer, messages.SubjectExportRequested+".*")
	for _, b := range []string{messages.BucketSiteState, messages.BucketLeases, messages.BucketMetadata} {
		kv, err := ejs.KeyValue(c, b)
		if err != nil {
			t.Fatalf("exporter KV %s: %v", b, err)
		}
		if _, err := kv.Put(c, "a", []byte("x")); err != nil {
			t.Fatalf("exporter put %s: %v", b, err)
		}
		if _, err := kv.Get(c, "a"); err != nil {
			t.Fatalf("exporter get %s: %v", b, err)
		}
	}
	leases, _ := ejs.KeyValue(c, messages.BucketLeases)
	if _, err := leases.Create(c, "b", []byte("run")); err != nil {
		t.Fatalf("exporter lease: %v", err)
	}
	if err := leases.Delete(c, "b"); err != nil {
		t.Fatalf("exporter lease delete: %v", err)
	}
	obs, err := ejs.ObjectStore(c, messages.BucketRecordIDs)
	if err != nil {
		t.Fatalf("exporter object store: %v", err)
	}
	for i := 0; i < 2; i++ { // the second put replaces (purges) the first's chunks
		if _, err := obs.PutBytes(c, "a", []byte(strings.Repeat("id,", 50000))); err != nil {
			t.Fatalf("exporter object put: %v", err)
		}
	}
	if b, err := obs.GetBytes(c, "a"); err != nil || len(b) != 150000 {
		t.Fatalf("exporter object get: %d %v", len(b), err)
	}
	dels, err := ejs.ObjectStore(c, messages.BucketDeletions)
	if err != nil {
		t.Fatalf("exporter deletions store: %v", err)
	}
	for i := 0; i < 2; i++ {
		if _, err := dels.PutBytes(c, "a", []byte(`{"v":1}`)); err != nil {
			t.Fatalf("exporter deletions put: %v", err)
		}
	}
	if _, err := dels.GetBytes(c, "a"); err != nil {
		t.Fatalf("exporter deletions get: %v", err)
	}
	if err := dels.Delete(c, "a"); err != nil {
		t.Fatalf("exporter deletions delete: %v", err)
	}
	adminDecisions, _ := admin.KeyValue(c, messages.BucketDeletionDecisions)
	if _, err := adminDecisions.Put(c, "a.run", []byte(`{"v":1}`)); err != nil {
		t.Fatalf("admin decision put: %v", err)
	}
	decisions, err := ejs.KeyValue(c, messages.BucketDeletionDecisions)
	if err != nil {
		t.Fatalf("exporter decisions KV: %v", err)
	}
	if _, err := decisions.Get(c, "a.run"); err != nil {
		t.Fatalf("exporter decision get: %v", err)
	}
	files, err := ejs.ObjectStore(c, messages.BucketFiles)
	if err != nil {
		t.Fatalf("exporter files bucket: %v", err)
	}
	if _, err := files.GetInfo(c, "sha256/ab"); err == nil {
		t.Fatal("an object that was never stored")
	}
	if _, err := files.PutBytes(c, "sha256/ab", []byte(strings.Repeat("%PDF", 100000))); err != nil {
		t.Fatalf("exporter stores a file: %v", err)
	}
	mustPub(ejs, messages.RecordsRawSubject("a"))
	mustPub(ejs, messages.MetadataSubject("a"))
	mustPub(ejs, messages.RunSubject("a"))

	// transformer
	tnc, trjs, terr := as("transformer")
	pushConsume(t, tnc, messages.StreamRecordsRaw, topology.Transform.Consumer, messages.SubjectRecordsRaw+".*")
	meta, err := trjs.KeyValue(c, messages.BucketMetadata)
	if err != nil {
		t.Fatalf("transformer KV: %v", err)
	}
	if _, err := meta.Get(c, "a"); err != nil {
		t.Fatalf("transformer metadata get: %v", err)
	}
	mustPub(trjs, messages.RecordsCleanSubject("a"))

	// importer: pull consumer, versions watch and put.
	_, ijs, ierr := as("importer")
	pullConsume(t, ijs, messages.StreamRecordsClean, topology.Import.Consumer)
	vers, err := ijs.KeyValue(c, messages.BucketDestVersion)
	if err != nil {
		t.Fatalf("importer KV: %v", err)
	}
	if _, err := vers.Put(c, "YS0x", []byte("1")); err != nil {
		t.Fatalf("importer version put: %v", err)
	}
	w, err := vers.WatchAll(c, jetstream.IgnoreDeletes())
	if err != nil {
		t.Fatalf("importer watch: %v", err)
	}
	n := 0
	for e := range w.Updates() {
		if e == nil {
			break
		}
		n++
	}
	w.Stop()
	if n != 1 {
		t.Fatalf("importer watch saw %d versions", n)
	}
	imeta, _ := ijs.KeyValue(c, messages.BucketMetadata)
	if _, err := imeta.Put(c, messages.DestinationMetadataKey, []byte("{}")); err != nil {
		t.Fatalf("importer destination snapshot: %v", err)
	}
	kept, err := ijs.ObjectStore(c, messages.BucketDeletedRecords)
	if err != nil {
		t.Fatalf("importer deleted-records store: %v", err)
	}
	if _, err := kept.PutBytes(c, "a/a-1", []byte(`{"v":1}`)); err != nil {
		t.Fatalf("importer keeps a deleted record: %v", err)
	}
	ifiles, err := ijs.ObjectStore(c, messages.BucketFiles)
	if err != nil {
		t.Fatalf("importer files bucket: %v", err)
	}
	if b, err := ifiles.GetBytes(c, "sha256/ab"); err != nil || len(b) != 400000 {
		t.Fatalf("importer reads a file: %d bytes, %v", len(b), err)
	}
	destFiles, err := ijs.KeyValue(c, messages.BucketDestFiles)
	if err != nil {
		t.Fatalf("importer destination files KV: %v", err)
	}
	if _, err := destFiles.Put(c, "a", []byte("ab")); err != nil {
		t.Fatalf("importer records an upload: %v", err)
	}
	mustPub(ijs, messages.ImportDoneSubject("a"))
	// The destination check: the exporter asks, the importer answers.
	inc, _ := connectAs(t, url, "importer", pw["importer"])
	sub, err := inc.QueueSubscribe(messages.SubjectDestinationCheck, topology.Importer, func(m *nats.Msg) { m.Respond([]byte(`{"v":1}`)) })
	if err != nil {
		t.Fatalf("importer answers destination checks: %v", err)
	}
	inc.Flush()
	if _, err := enc.Request(messages.SubjectDestinationCheck, []byte(`{"v":1}`), 5*time.Second); err != nil {
		t.Fatalf("exporter's destination check: %v", err)
	}
	sub.Unsubscribe()

	// checker
	_, cjs, cerr := as("checker")
	pullConsume(t, cjs, messages.StreamMetadata, topology.Check.Consumer)
	mustPub(cjs, messages.ProtocolReportSubject("a"))

	// verifier: the ticker's request, the run events and its own results
	// on AUDIT, the sites' state and the imported versions, the backlog.
	mustPub(tjs, messages.VerifyRequestedSubject("a"))
	vnc, vjs, verr := as("verifier")
	pushConsume(t, vnc, messages.StreamExportRequests, topology.Verify.Consumer, messages.SubjectVerifyRequested+".*")
	mustPub(vjs, messages.VerifySubject("a"))
	mustPub(vjs, messages.ExportRequestedSubject("a"))
	audit, err := vjs.Stream(c, messages.StreamAudit)
	if err != nil {
		t.Fatalf("verifier AUDIT: %v", err)
	}
	if _, err := audit.GetLastMsgForSubject(c, messages.VerifySubject("a")); err != nil {
		t.Fatalf("verifier reads its last result: %v", err)
	}
	for _, b := range []string{messages.BucketSiteState, messages.BucketDestVersion} {
		kv, err := vjs.KeyValue(c, b)
		if err != nil {
			t.Fatalf("verifier KV %s: %v", b, err)
		}
		if _, err := kv.Get(c, "a"); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
			t.Fatalf("verifier get %s: %v", b, err)
		}
	}
	for _, st := range []topology.Stage{topology.Export, topology.Transform, topology.Import} {
		if _, err := broker.Backlog(c, vjs, st); err != nil {
			t.Fatalf("verifier reads the %s backlog: %v", st.Name, err)
		}
	}
	// The repair's export request is the exporter's to take.
	pushConsume(t, enc, messages.StreamExportRequests, topology.Export.Consumer, messages.SubjectExportRequested+".*")

	for name, el := range map[string]*errorLog{"exporter": eerr, "transformer": terr, "importer": ierr, "checker": cerr, "verifier": verr} {
		if el.has("permissions violation") {
			t.Errorf("%s hit a permissions violation doing its own work: %v", name, el.errs)
		}
	}
	// Everything was consumed and acked.
	lag, err := Lag(c, admin)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range lag {
		if l.Lag != 0 {
			t.Errorf("stage %s lag %d after its user consumed", l.Stage, l.Lag)
		}
	}
}

// pushConsume binds the provisioned push durable as watermill-nats does
// (legacy JetStream API, Bind + ManualAck, queue group) and acks one message.
func pushConsume(t *testing.T, nc *nats.Conn, stream, durable, subject string) {
	t.Helper()
	js, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *nats.Msg, 1)
	sub, err := js.QueueSubscribe(subject, durable, func(m *nats.Msg) { got <- m }, nats.ManualAck(), nats.Bind(stream, durable), nats.Durable(durable))
	if err != nil {
		t.Fatalf("%s subscribe: %v", durable, err)
	}
	defer sub.Unsubscribe()
	select {
	case m := <-got:
		if err := m.AckSync(); err != nil {
			t.Fatalf("%s ack: %v", durable, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("%s received nothing", durable)
	}
}

func pullConsume(t *testing.T, js jetstream.JetStream, stream, durable string) {
	t.Helper()
	c := ctx(t)
	cons, err := js.Consumer(c, stream, durable)
	if err != nil {
		t.Fatalf("%s bind: %v", durable, err)
	}
	b, err := cons.Fetch(10, jetstream.FetchMaxWait(2*time.Second))
	if err != nil {
		t.Fatalf("%s fetch: %v", durable, err)
	}
	n := 0
	for m := range b.Messages() {
		n++
		if err := m.DoubleAck(c); err != nil {
			t.Fatalf("%s ack: %v", durable, err)
		}
	}
	if n == 0 {
		t.Fatalf("%s fetched nothing: %v", durable, b.Error())
	}
	if err := b.Error(); err != nil && !errors.Is(err, nats.ErrTimeout) && !errors.Is(err, context.DeadlineExceeded) {
		t.Logf("%s fetch ended: %v", durable, err)
	}
}

// TestNotifierUserReadsTheStatus: under the notifier's user the whole
// status read (runs, counts, dead letters, reports, state, lag) works
// without a permissions violation, RECORDS_RAW aside.
func TestNotifierUserReadsTheStatus(t *testing.T) {
	url, pw, admin := natsWithDeployConfig(t)
	run := messages.RunID("alpha", time.Now().Add(-time.Second))
	runEvent(t, admin, messages.RunEvent{Site: "alpha", RunID: run, Phase: messages.PhaseStarted})
	runEvent(t, admin, messages.RunEvent{Site: "alpha", RunID: run, Phase: messages.PhaseExported, Exported: 2})
	publishClean(t, admin, "alpha", run, 2)
	if err := router.DeadLetter(ctx(t), admin, nil, messages.DeadLetter{Stage: messages.StageImport, Site: "alpha", RunID: run, RecordID: "alpha-2", Error: "rejected", MsgID: "m2"}); err != nil {
		t.Fatal(err)
	}
	r := messages.ProtocolReport{V: 1, Site: "alpha", RunID: run, Status: messages.ProtocolConformant, CheckedAt: time.Now()}
	if err := broker.Publish(ctx(t), admin, messages.ProtocolReportSubject("alpha"), r.MsgID(), broker.Route{Site: "alpha"}, r); err != nil {
		t.Fatal(err)
	}
	if kv, err := admin.KeyValue(ctx(t), messages.BucketSiteState); err == nil {
		kv.Put(ctx(t), "alpha", []byte(`{"records":2}`))
	}
	nc, errs := connectAs(t, url, "notifier", pw["notifier"])
	js, err := broker.JetStream(nc)
	if err != nil {
		t.Fatal(err)
	}
	st, err := Collect(ctx(t), js, StatusOptions{SkipRaw: true})
	if err != nil {
		t.Fatal(err)
	}
	nc.Flush()
	// The client deletes its ordered consumers when done (each refusal
	// would be an ERROR line in the server's log): nothing may be refused.
	time.Sleep(200 * time.Millisecond)
	errs.mu.Lock()
	for _, e := range errs.errs {
		t.Errorf("the notifier's status read hit a permissions violation: %v", e)
	}
	errs.mu.Unlock()
	a := siteOf(t, st, "alpha")
	if a.Result() != ResultPartial || a.Counts.Cleaned != 2 || a.Counts.DeadLettered != 1 || a.Protocol == nil || a.State == nil || len(st.Lag) != len(topology.Stages) || st.Lag[0].Missing {
		t.Fatalf("status as the notifier: %s %+v protocol %v state %v lag %+v notes %v", a.Result(), a.Counts, a.Protocol, a.State, st.Lag, a.Notes)
	}
}
