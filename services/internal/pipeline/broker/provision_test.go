package broker

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/pipeline/topology"
)

// cursor is what a stage's durable consumer remembers.
type cursor struct {
	AckFloor, Delivered, Pending uint64
	AckPending                   int
}

func cursorOf(t *testing.T, ctx context.Context, js jetstream.JetStream, st topology.Stage) cursor {
	t.Helper()
	info, err := ConsumerInfo(ctx, js, st)
	if err != nil {
		t.Fatalf("consumer %s: %v", st.Consumer, err)
	}
	return cursor{info.AckFloor.Stream, info.Delivered.Stream, info.NumPending, info.NumAckPending}
}

// streamStates is every pipeline stream's message count, sequences and bytes.
func streamStates(t *testing.T, ctx context.Context, js jetstream.JetStream) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, name := range topology.StreamNames() {
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatalf("stream %s: %v", name, err)
		}
		s := st.CachedInfo().State
		out[name] = fmt.Sprintf("msgs=%d first=%d last=%d bytes=%d", s.Msgs, s.FirstSeq, s.LastSeq, s.Bytes)
	}
	return out
}

// seed publishes records into RECORDS_CLEAN (1 MiB each), state into the
// site-state bucket, and has the importer's pull consumer take 10 and
// acknowledge the first 6 of them: a deployment in the middle of its work.
func seed(t *testing.T, ctx context.Context, js jetstream.JetStream, records int) {
	t.Helper()
	payload := bytes.Repeat([]byte("x"), 1<<20)
	for i := 0; i < records; i++ {
		if _, err := js.Publish(ctx, messages.RecordsCleanSubject("wake"), payload, jetstream.WithMsgID(fmt.Sprint("r", i))); err != nil {
			t.Fatal(err)
		}
	}
	kv, err := js.KeyValue(ctx, messages.BucketSiteState)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "wake", []byte(`{"cursor":"2026-05-01T02:00:00Z"}`)); err != nil {
		t.Fatal(err)
	}
	cons, err := js.Consumer(ctx, topology.Import.Stream, topology.Import.Consumer)
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(10, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for m := range batch.Messages() {
		if n < 6 {
			if err := m.DoubleAck(ctx); err != nil {
				t.Fatal(err)
			}
		}
		n++
	}
	if n != 10 {
		t.Fatalf("fetched %d messages, want 10", n)
	}
}

// An upgrade: provision with today's settings, change a retention, a byte
// cap and a consumer's ack wait, provision again. Every message, every
// bucket value and the consumer's cursor stay; the changes are reported;
// a third run changes nothing.
func TestReprovisionKeepsEveryMessageAndCursor(t *testing.T) {
	ctx, nc := testConn(t)
	js, _ := JetStream(nc)
	today := config.DefaultStreams()
	if _, err := ProvisionChanges(ctx, js, today); err != nil {
		t.Fatal(err)
	}
	seed(t, ctx, js, 12)
	before, cur := streamStates(t, ctx, js), cursorOf(t, ctx, js, topology.Import)
	if cur.AckFloor != 6 || cur.Pending != 2 || cur.AckPending != 4 {
		t.Fatalf("seeded cursor %+v, want ack floor 6, 2 pending, 4 awaiting ack", cur)
	}

	next := today
	next.CleanMaxAge = config.Duration(60 * 24 * time.Hour)
	next.ImportAckWait = config.Duration(90 * time.Second)
	next.MaxBytes.RecordsClean = 16 << 30
	changes, err := ProvisionChanges(ctx, js, next)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range changes {
		got = append(got, c.String())
	}
	want := []string{
		"stream RECORDS_CLEAN: max_age 720h0m0s -> 1440h0m0s",
		"stream RECORDS_CLEAN: max_bytes 8GiB -> 16GiB",
		"consumer RECORDS_CLEAN/importer: ack_wait 1m0s -> 1m30s",
		"bucket OBJ_relay_files: max_age 720h0m0s -> 1440h0m0s", // files last as long as the records that refer to them
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("changes:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if after := streamStates(t, ctx, js); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("streams changed by re-provisioning:\nbefore %v\nafter  %v", before, after)
	}
	if after := cursorOf(t, ctx, js, topology.Import); after != cur {
		t.Errorf("importer cursor %+v after re-provisioning, was %+v", after, cur)
	}
	info, _ := ConsumerInfo(ctx, js, topology.Import)
	if info.Config.AckWait != 90*time.Second {
		t.Errorf("ack wait %s, want 1m30s", info.Config.AckWait)
	}
	kv, _ := js.KeyValue(ctx, messages.BucketSiteState)
	if e, err := kv.Get(ctx, "wake"); err != nil || !strings.Contains(string(e.Value()), "2026-05-01") {
		t.Errorf("site state after re-provisioning: %v", err)
	}

	again, err := ProvisionChanges(ctx, js, next)
	if err != nil || len(again) != 0 {
		t.Errorf("a second run with the same settings changed %v (err %v), want nothing", again, err)
	}
}

// A consumer setting JetStream cannot update in place (a release that
// changes the importer's max waiting) is migrated by recreating the
// consumer at its ack floor: what it acknowledged in order is not delivered
// again, everything after it is.
func TestReprovisionMigratesAConsumerSettingThatCannotBeUpdated(t *testing.T) {
	ctx, nc := testConn(t)
	js, _ := JetStream(nc)
	s := config.DefaultStreams()
	if err := Provision(ctx, js, s); err != nil {
		t.Fatal(err)
	}
	seed(t, ctx, js, 12)

	i := stageIndex(t, topology.Import.Name)
	defer func(old int) { topology.Stages[i].MaxWaiting = old }(topology.Stages[i].MaxWaiting)
	topology.Stages[i].MaxWaiting = 128
	changes, err := ProvisionChanges(ctx, js, s)
	if err != nil {
		t.Fatal(err)
	}
	if len(changes) != 2 || changes[0].Setting != "max_waiting" || changes[1].Setting != "recreated" {
		t.Fatalf("changes %v, want max_waiting and recreated", changes)
	}
	info, err := ConsumerInfo(ctx, js, topology.Stages[i])
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.MaxWaiting != 128 || info.NumPending != 6 || info.Config.OptStartSeq != 7 {
		t.Errorf("migrated consumer: max waiting %d, %d pending from sequence %d; want 128, 6 (7..12), 7",
			info.Config.MaxWaiting, info.NumPending, info.Config.OptStartSeq)
	}
	if again, err := ProvisionChanges(ctx, js, s); err != nil || len(again) != 0 {
		t.Errorf("provisioning after the migration changed %v (err %v), want nothing", again, err)
	}
}

func stageIndex(t *testing.T, name string) int {
	for i, st := range topology.Stages {
		if st.Name == name {
			return i
		}
	}
	t.Fatalf("no stage %s", name)
	return -1
}

// A byte cap below what a stream holds is refused before anything changes:
// JetStream would otherwise drop or refuse messages the moment it applied it.
func TestReprovisionRefusesACapBelowWhatAStreamHolds(t *testing.T) {
	ctx, nc := testConn(t)
	js, _ := JetStream(nc)
	s := config.DefaultStreams()
	if err := Provision(ctx, js, s); err != nil {
		t.Fatal(err)
	}
	seed(t, ctx, js, 10) // 10 MiB
	before := streamStates(t, ctx, js)
	small := s
	small.MaxBytes.RecordsClean = 8 << 20
	err := Provision(ctx, js, small)
	if err == nil || !strings.Contains(err.Error(), "streams.max_bytes.RECORDS_CLEAN 8MiB") || !strings.Contains(err.Error(), "raise the cap") {
		t.Fatalf("cap below the stream's size: %v", err)
	}
	if after := streamStates(t, ctx, js); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("a refused provisioning changed the streams:\nbefore %v\nafter  %v", before, after)
	}
}

// Caps whose sum does not fit in the server's max_file_store are refused
// with the setting to change.
func TestProvisionNamesMaxFileStoreWhenTheCapsDoNotFit(t *testing.T) {
	srv, err := StartEmbedded(EmbeddedOptions{StoreDir: t.TempDir(), Port: -1, MaxFileStore: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	nc, err := Connect(ctx, srv.ClientURL(), ConnectOptions{Name: t.Name()})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := JetStream(nc)
	err = Provision(ctx, js, config.DefaultStreams())
	if err == nil || !strings.Contains(err.Error(), "max_file_store") || !strings.Contains(err.Error(), "streams.max_bytes") {
		t.Fatalf("caps above max_file_store: %v", err)
	}
}

// Every stream and bucket is provisioned with a byte cap.
func TestEveryStreamHasAByteCap(t *testing.T) {
	ctx, nc := testConn(t)
	js, _ := JetStream(nc)
	s := config.DefaultStreams()
	if err := Provision(ctx, js, s); err != nil {
		t.Fatal(err)
	}
	for _, name := range topology.StreamNames() {
		st, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := st.CachedInfo().Config.MaxBytes, s.MaxBytesOf(name); got <= 0 || got != want {
			t.Errorf("stream %s: max bytes %d, want %d", name, got, want)
		}
	}
}
