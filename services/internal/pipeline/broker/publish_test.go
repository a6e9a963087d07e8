package broker

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A publish whose ack never comes (the server killed between storing and
// answering) must fail the batch within PublishAckTimeout, not block the
// exporter's run until its run timeout. A plain subscriber that never
// answers loses every ack, deterministically.
func TestBatchFailsWhenAcksAreLost(t *testing.T) {
	defer func(d, e time.Duration) { PublishAckTimeout, ElectionWait = d, e }(PublishAckTimeout, ElectionWait)
	PublishAckTimeout, ElectionWait = 300*time.Millisecond, time.Second

	ctx, nc := testConn(t)
	sink, err := nc.SubscribeSync("blackhole.>") // takes the message, never acks
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Unsubscribe()
	js, _ := JetStream(nc)

	b := NewBatch(js)
	var addErr error
	for i := 0; i < 2048 && addErr == nil; i++ {
		addErr = b.Add(ctx, "blackhole.site", "", Route{Site: "site"}, map[string]int{"n": i})
	}
	if !errors.Is(addErr, jetstream.ErrAsyncPublishTimeout) {
		t.Fatalf("Add with 2,048 unacked messages: err = %v, want a publish ack timeout", addErr)
	}
	if ctx.Err() != nil {
		t.Fatal("the batch waited out the test's context instead of PublishAckTimeout")
	}

	b = NewBatch(js)
	if err := b.Add(ctx, "blackhole.site", "", Route{Site: "site"}, map[string]int{"n": 1}); err != nil {
		t.Fatal(err)
	}
	if err := b.Wait(ctx); !errors.Is(err, jetstream.ErrAsyncPublishTimeout) {
		t.Fatalf("Wait on an unacked message: err = %v, want a publish ack timeout", err)
	}
}

// A publish no stream answers (the stream deleted, or lost by the NATS
// server's recovery after a crash) says what to run, sync and async.
func TestPublishWithoutStreamNamesTheRemedy(t *testing.T) {
	defer func(e time.Duration) { ElectionWait = e }(ElectionWait)
	ElectionWait = time.Second // "no responders" is retried as an election first
	ctx, nc := testConn(t)
	js, _ := JetStream(nc)
	err := Publish(ctx, js, "relay.records.raw.site", "id-1", Route{Site: "site"}, map[string]int{"n": 1})
	if err == nil || !strings.Contains(err.Error(), "relay provision") || !strings.Contains(err.Error(), "relay.records.raw.site") {
		t.Errorf("sync publish without a stream: %v", err)
	}
	b := NewBatch(js)
	if err := b.Add(ctx, "relay.records.raw.site", "id-2", Route{Site: "site"}, map[string]int{"n": 2}); err != nil {
		t.Fatal(err)
	}
	if err := b.Wait(ctx); err == nil || !strings.Contains(err.Error(), "relay provision") {
		t.Errorf("async publish without a stream: %v", err)
	}
}

// testConn starts an embedded server and connects to it; both end with the test.
func testConn(t *testing.T) (context.Context, *nats.Conn) {
	t.Helper()
	srv, err := StartEmbedded(EmbeddedOptions{StoreDir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	nc, err := Connect(ctx, srv.ClientURL(), ConnectOptions{Name: t.Name()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return ctx, nc
}
