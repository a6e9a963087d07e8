package backup

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/ops"
	"github.com/redcap-relay/relay/services/internal/pipeline/app"
	"github.com/redcap-relay/relay/services/internal/pipeline/broker"
	"github.com/redcap-relay/relay/services/internal/pipeline/exportreq"
	"github.com/redcap-relay/relay/services/internal/pipeline/topology"
	"github.com/redcap-relay/relay/services/internal/tools/demo"
	"github.com/redcap-relay/relay/services/internal/tools/redcapsim"
)

var storeKey = []byte("0123456789abcdef0123456789abcdef0123456789abcdef")

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// natsServer starts an embedded server with an encrypted store.
func natsServer(t *testing.T, o broker.EmbeddedOptions) (*server.Server, *nats.Conn, jetstream.JetStream) {
	t.Helper()
	o.StoreDir, o.Port, o.Key = t.TempDir(), -1, string(storeKey)
	srv, err := broker.StartEmbedded(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	nc, err := broker.Connect(testCtx(t), srv.ClientURL(), broker.ConnectOptions{Name: t.Name()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := broker.JetStream(nc)
	return srv, nc, js
}

// seeded is a provisioned store holding a little of everything: records,
// site state, a consumer part-way through its stream.
func seeded(t *testing.T) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	ctx := testCtx(t)
	_, nc, js := natsServer(t, broker.EmbeddedOptions{})
	if err := broker.Provision(ctx, js, config.DefaultStreams()); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 200; i++ {
		if _, err := js.Publish(ctx, messages.RecordsCleanSubject("wake"), bytes.Repeat([]byte{byte(i)}, 4096)); err != nil {
			t.Fatal(err)
		}
	}
	kv, _ := js.KeyValue(ctx, messages.BucketSiteState)
	if _, err := kv.Put(ctx, "wake", []byte(`{"cursor":"2026-05-01T02:00:00Z"}`)); err != nil {
		t.Fatal(err)
	}
	return nc, js
}

func writeBackup(t *testing.T, nc *nats.Conn, js jetstream.JetStream, key []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "relay.backup")
	if _, err := WriteFile(testCtx(t), nc, js, path, Options{Key: key, Relay: "test"}); err != nil {
		t.Fatal(err)
	}
	return path
}

// pipelineStreams lists the pipeline's streams a server holds.
func pipelineStreams(t *testing.T, js jetstream.JetStream) []string {
	t.Helper()
	var out []string
	for _, name := range topology.StreamNames() {
		if _, err := js.Stream(testCtx(t), name); err == nil {
			out = append(out, name)
		}
	}
	return out
}

// The file says what it holds; a JetStream snapshot is plain, the file is
// not: no record byte appears in it.
func TestBackupIsEncryptedAndComplete(t *testing.T) {
	nc, js := seeded(t)
	path := writeBackup(t, nc, js, storeKey)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("2026-05-01T02:00:00Z")) || bytes.Contains(raw, []byte(`"subjects"`)) {
		t.Error("the encrypted backup holds plain text of the store")
	}
	sum, err := Inspect(path, storeKey)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]uint64{}
	for _, ss := range sum.Streams {
		got[ss.Name] = ss.Msgs
	}
	if len(sum.Streams) != len(Streams()) || got[messages.StreamRecordsClean] != 200 || got["KV_relay_site_state"] != 1 || !sum.Encrypted || sum.Relay != "test" {
		t.Errorf("summary: %+v", sum)
	}
	if _, err := os.Stat(path + ".partial"); !os.IsNotExist(err) {
		t.Errorf("partial file left: %v", err)
	}
	plain := writeBackup(t, nc, js, nil)
	if raw, _ := os.ReadFile(plain); !bytes.Contains(raw, []byte(messages.StreamRecordsClean)) {
		t.Error("a plain backup should be readable (it is what JetStream sends)")
	}
}

// Bad input is refused before anything is created: another store key, a
// newer format, a damaged or truncated file, a missing key.
func TestRestoreRefusesBadFilesAndTouchesNothing(t *testing.T) {
	nc, js := seeded(t)
	path := writeBackup(t, nc, js, storeKey)
	raw, _ := os.ReadFile(path)
	_, nc2, js2 := natsServer(t, broker.EmbeddedOptions{})
	write := func(name string, b []byte) string {
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	damaged := append([]byte(nil), raw...)
	damaged[len(damaged)/2] ^= 0xff
	for _, c := range []struct {
		name string
		file string
		key  []byte
		want string
	}{
		{"another key", path, []byte("another deployment's store key 0123456789"), "made with another key"},
		{"no key", path, nil, "the backup is encrypted"},
		{"newer format", write("newer", newerFormat(t, raw)), storeKey, "backup format 2 (written by relay test) is newer than this relay reads (format 1)"},
		{"damaged", write("damaged", damaged), storeKey, "damaged"},
		{"truncated", write("truncated", raw[:len(raw)-300]), storeKey, "truncated"},
		{"not a backup", write("other", []byte("hello, not a backup at all")), storeKey, "not a relay backup"},
	} {
		_, err := RestoreFile(testCtx(t), nc2, js2, c.file, RestoreOptions{Key: c.key})
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "nothing was restored") {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
		if left := pipelineStreams(t, js2); len(left) > 0 {
			t.Fatalf("%s: the refused restore created %v", c.name, left)
		}
	}
}

// newerFormat rewrites the file's plain description to format 2.
func newerFormat(t *testing.T, raw []byte) []byte {
	n := binary.BigEndian.Uint32(raw[8:12])
	var about map[string]any
	if err := json.Unmarshal(raw[12:12+n], &about); err != nil {
		t.Fatal(err)
	}
	about["format"] = 2
	ad, _ := json.Marshal(about)
	out := append([]byte(magic), binary.BigEndian.AppendUint32(nil, uint32(len(ad)))...)
	return append(append(out, ad...), raw[12+n:]...)
}

// Streams that exist are refused (with --replace, deleted first when no
// service reads them).
func TestRestoreRefusesExistingStreams(t *testing.T) {
	nc, js := seeded(t)
	path := writeBackup(t, nc, js, storeKey)
	_, err := RestoreFile(testCtx(t), nc, js, path, RestoreOptions{Key: storeKey})
	if err == nil || !strings.Contains(err.Error(), "these streams exist: KV_relay_site_state (1 messages)") || !strings.Contains(err.Error(), "--replace") {
		t.Fatalf("restore over existing streams: %v", err)
	}
	kv, _ := js.KeyValue(testCtx(t), messages.BucketSiteState)
	if _, err := kv.Put(testCtx(t), "pitt", []byte("{}")); err != nil { // changed after the backup
		t.Fatal(err)
	}
	if _, err := RestoreFile(testCtx(t), nc, js, path, RestoreOptions{Key: storeKey, Replace: true}); err != nil {
		t.Fatal(err)
	}
	if keys, _ := kv.Keys(testCtx(t)); len(keys) != 1 || keys[0] != "wake" {
		t.Errorf("site state after restore --replace: %v, want the backup's [wake]", keys)
	}
}

// A disk that fills up while writing leaves no backup that looks complete
// and says so; a restore that reaches the server's store limit is rolled
// back: the store is never half restored.
func TestFullDisksAreReportedAndNothingIsLeftHalfDone(t *testing.T) {
	nc, js := seeded(t)
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skip("no /dev/full here")
	}
	defer full.Close()
	_, err = Write(testCtx(t), nc, js, full, Options{Key: storeKey})
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("backup onto a full disk: %v", err)
	}
	if msg := fileErr(err, "/backups/relay.backup").Error(); !strings.Contains(msg, "the disk is full") || !strings.Contains(msg, "no backup was written") {
		t.Errorf("message: %s", msg)
	}
	path := writeBackup(t, nc, js, storeKey)

	// A server whose max_file_store holds the first streams' caps but not
	// all of them: the restore fails part-way and is rolled back.
	_, nc2, js2 := natsServer(t, broker.EmbeddedOptions{MaxFileStore: 6 << 30})
	_, err = RestoreFile(testCtx(t), nc2, js2, path, RestoreOptions{Key: storeKey})
	if err == nil || !strings.Contains(err.Error(), "max_file_store") || !strings.Contains(err.Error(), "removed again: nothing is restored") {
		t.Fatalf("restore beyond the store limit: %v", err)
	}
	if left := pipelineStreams(t, js2); len(left) > 0 {
		t.Errorf("a failed restore left %v behind", left)
	}
}

// The round trip on a running network: a full sync of the demo sites,
// a backup, the store wiped, the backup restored: relay status shows the
// same history, and the next incremental run of every site publishes
// nothing (cursors and record-ID sets came back). A restore into the
// running stack is refused.
func TestBackupWipeRestoreKeepsTheHistoryAndTheCursors(t *testing.T) {
	ctx := testCtx(t)
	sim, err := redcapsim.New(redcapsim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	url, err := sim.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	setup, err := demo.Build(sim, url, demo.Options{Dir: t.TempDir(), Scale: 0.1, Seed: 7})
	if err != nil {
		t.Fatal(err)
	}
	net, err := config.Load(setup.NetworkFile)
	if err != nil {
		t.Fatal(err)
	}
	sites := net.SiteIDs()
	log := slog.New(slog.DiscardHandler)

	stack, stop := startStack(t, net, t.TempDir(), false, log)
	runs := requestRuns(t, stack.JS, sites, true)
	waitRuns(t, stack.JS, runs)
	before, err := ops.GetStatus(ctx, stack.JS, sites)
	if err != nil {
		t.Fatal(err)
	}
	rawBefore := lastSeq(t, stack.JS, messages.StreamRecordsRaw)
	path := writeBackup(t, stack.NC, stack.JS, storeKey)
	if _, err := RestoreFile(ctx, stack.NC, stack.JS, path, RestoreOptions{Key: storeKey, Replace: true}); err == nil || !strings.Contains(err.Error(), "the pipeline is running") {
		t.Fatalf("restore into the running stack: %v", err)
	}
	stop()

	wiped, stop2 := startStack(t, net, t.TempDir(), true, log) // a new, empty store
	defer stop2()
	if len(pipelineStreams(t, wiped.JS)) != 0 {
		t.Fatal("the new store is not empty")
	}
	if _, err := RestoreFile(ctx, wiped.NC, wiped.JS, path, RestoreOptions{Key: storeKey}); err != nil {
		t.Fatal(err)
	}
	if err := broker.Provision(ctx, wiped.JS, net.Streams); err != nil {
		t.Fatal(err)
	}
	after, err := ops.GetStatus(ctx, wiped.JS, sites)
	if err != nil {
		t.Fatal(err)
	}
	if b, a := statusJSON(before), statusJSON(after); b != a {
		t.Errorf("relay status differs after the restore:\nbefore %s\nafter  %s", b, a)
	}
	go wiped.Run(wiped.runCtx, app.All...)
	for _, ev := range waitRuns(t, wiped.JS, requestRuns(t, wiped.JS, sites, false)) {
		if ev.Full || ev.Exported != 0 || ev.Deleted != 0 {
			t.Errorf("site %s: the incremental run after the restore published %d records and %d deletions (full %v), want none", ev.Site, ev.Exported, ev.Deleted, ev.Full)
		}
	}
	if got := lastSeq(t, wiped.JS, messages.StreamRecordsRaw); got != rawBefore {
		t.Errorf("RECORDS_RAW grew from sequence %d to %d after the restore", rawBefore, got)
	}
}

type runningStack struct {
	*app.Stack
	runCtx context.Context
}

// startStack starts an embedded server on dir and connects; with
// noRun the services are not started (and nothing is provisioned).
func startStack(t *testing.T, net *config.Network, dir string, noRun bool, log *slog.Logger) (*runningStack, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := app.Start(ctx, app.Options{Network: net, Embedded: true, DataDir: dir, NATSPort: -1, Logger: log, NoProvision: noRun, Services: app.All})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	if !noRun {
		go func() { st.Run(ctx, app.All...); close(done) }()
	} else {
		close(done)
	}
	stopped := false
	return &runningStack{st, ctx}, func() {
		if !stopped {
			stopped = true
			cancel()
			<-done
			st.Close()
		}
	}
}

func requestRuns(t *testing.T, js jetstream.JetStream, sites []string, full bool) map[string]string {
	t.Helper()
	runs := map[string]string{}
	for _, s := range sites {
		req := exportreq.New(s, time.Now(), full, "backup test")
		if err := exportreq.Publish(testCtx(t), js, req); err != nil {
			t.Fatal(err)
		}
		runs[s] = req.RunID
	}
	return runs
}

// waitRuns waits until every run has ended and the pipeline drained.
func waitRuns(t *testing.T, js jetstream.JetStream, runs map[string]string) map[string]messages.RunEvent {
	t.Helper()
	ctx := testCtx(t)
	done := map[string]messages.RunEvent{}
	for ctx.Err() == nil {
		for site, run := range runs {
			var ev messages.RunEvent
			if broker.LastJSON(ctx, js, messages.StreamAudit, messages.RunSubject(site), &ev) && ev.RunID == run &&
				(ev.Phase == messages.PhaseExported || ev.Phase == messages.PhaseFailed) {
				if ev.Phase == messages.PhaseFailed {
					t.Fatalf("site %s: run failed: %s", site, ev.Error)
				}
				done[site] = ev
			}
		}
		if len(done) == len(runs) && broker.Drained(ctx, js) {
			return done
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("runs did not finish: %d of %d", len(done), len(runs))
	return nil
}

func lastSeq(t *testing.T, js jetstream.JetStream, stream string) uint64 {
	st, err := js.Stream(testCtx(t), stream)
	if err != nil {
		t.Fatal(err)
	}
	return st.CachedInfo().State.LastSeq
}

// statusJSON is relay status without its clock.
// statusJSON is what a restore must keep of relay status: everything but
// the consumers' live readers (who is connected, their open pulls and last
// delivery), which belong to the running processes, not to the store.
func statusJSON(s *ops.Status) string {
	c := *s
	c.At = time.Time{}
	c.Lag = append([]ops.StageLag(nil), s.Lag...)
	for i := range c.Lag {
		c.Lag[i].Waiting, c.Lag[i].Connected, c.Lag[i].LastDelivered, c.Lag[i].LastAcked = 0, false, nil, nil
	}
	b, _ := json.Marshal(c)
	return fmt.Sprint(string(b))
}

// An upgrade after a restore: the restored store restarts (a new image),
// and provisioning changes a consumer's ack wait and says so. (JetStream's
// answer to that update shows the old settings; provisioning reads the
// consumer back.)
func TestReprovisionAfterARestoreAndARestart(t *testing.T) {
	ctx := testCtx(t)
	nc, js := seeded(t)
	path := writeBackup(t, nc, js, storeKey)
	o := broker.EmbeddedOptions{StoreDir: t.TempDir(), Port: -1, Key: string(storeKey)}
	connect := func() (*server.Server, jetstream.JetStream) {
		srv, err := broker.StartEmbedded(o)
		if err != nil {
			t.Fatal(err)
		}
		nc, err := broker.Connect(ctx, srv.ClientURL(), broker.ConnectOptions{Name: t.Name()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		js, _ := broker.JetStream(nc)
		return srv, js
	}
	srv, js2 := connect()
	if _, err := RestoreFile(ctx, js2.Conn(), js2, path, RestoreOptions{Key: storeKey}); err != nil {
		t.Fatal(err)
	}
	srv.Shutdown()
	srv.WaitForShutdown()
	srv, js3 := connect()
	defer srv.Shutdown()
	s := config.DefaultStreams()
	s.ImportAckWait = config.Duration(90 * time.Second)
	changes, err := broker.ProvisionChanges(ctx, js3, s)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range changes {
		got = append(got, c.String())
	}
	want := []string{"consumer RECORDS_CLEAN/importer: ack_wait 1m0s -> 1m30s", "bucket KV_relay_leases: created none -> max_bytes 16MiB"}
	if strings.Join(got, "; ") != strings.Join(want, "; ") {
		t.Errorf("changes after a restore and a restart: %v, want %v", got, want)
	}
	info, err := broker.ConsumerInfo(ctx, js3, topology.Import)
	if err != nil || info.Config.AckWait != 90*time.Second || info.NumPending != 200 {
		t.Errorf("importer after provisioning: %v, ack wait %v, %d pending (want 1m30s, 200)", err, info.Config.AckWait, info.NumPending)
	}
}
