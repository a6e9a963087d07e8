package router

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/pipeline/broker"
	"github.com/redcap-relay/relay/services/internal/pipeline/topology"
)

// Pulled batches are a fair share of the backlog (every worker gets a
// call to make) and stop at the byte limit, however big the batch size.
func TestBatchesShareTheBacklogAndStopAtTheByteLimit(t *testing.T) {
	srv, err := broker.StartEmbedded(broker.EmbeddedOptions{StoreDir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	nc, err := broker.Connect(ctx, srv.ClientURL(), broker.ConnectOptions{Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := broker.JetStream(nc)
	streams := config.DefaultStreams()
	if err := broker.Provision(ctx, js, streams); err != nil {
		t.Fatal(err)
	}
	body := bytes.Repeat([]byte("x"), 1000)
	const total = 400
	for i := 0; i < total; i++ {
		if _, err := js.Publish(ctx, messages.RecordsCleanSubject("alpha"), body); err != nil {
			t.Fatal(err)
		}
	}
	var mu sync.Mutex
	var sizes []int
	seen := 0
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go RunBatch(runCtx, js, topology.Import, streams, BatchOptions{Workers: 4, Batch: 5000, MaxBytes: 50_000, Linger: 10 * time.Millisecond},
		func(_ context.Context, batch []Msg) {
			for _, m := range batch {
				m.Ack()
			}
			mu.Lock()
			defer mu.Unlock()
			sizes = append(sizes, len(batch))
			if seen += len(batch); seen == total {
				stop()
			}
		})
	<-runCtx.Done()
	if ctx.Err() != nil {
		t.Fatalf("only %d of %d messages handled", seen, total)
	}
	for i, n := range sizes {
		if n > 51 { // 50 KB of 1 KB bodies, and the one that crossed the line
			t.Fatalf("batch %d held %d messages of 1 KB: over the 50 KB limit (batches %v)", i+1, n, sizes)
		}
	}
	// A backlog of 100 messages and 4 workers: no batch takes more than 25.
	// (First let the stopped workers' open pulls expire, or they would be
	// handed messages nobody reads.)
	time.Sleep(1500 * time.Millisecond)
	sizes = nil
	for i := 0; i < 100; i++ {
		if _, err := js.Publish(ctx, messages.RecordsCleanSubject("alpha"), []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	seen = 0
	runCtx, stop = context.WithCancel(ctx)
	go RunBatch(runCtx, js, topology.Import, streams, BatchOptions{Workers: 4, Batch: 5000, Linger: 10 * time.Millisecond},
		func(_ context.Context, batch []Msg) {
			for _, m := range batch {
				m.Ack()
			}
			mu.Lock()
			defer mu.Unlock()
			sizes = append(sizes, len(batch))
			if seen += len(batch); seen == 100 {
				stop()
			}
		})
	<-runCtx.Done()
	if ctx.Err() != nil {
		t.Fatalf("only %d of 100 messages handled", seen)
	}
	if sizes[0] > 25 {
		t.Fatalf("the first batch took %d of a backlog of 100 with 4 workers (batches %v); want a fair share, at most 25", sizes[0], sizes)
	}
	t.Logf("batches %v", sizes)
}
