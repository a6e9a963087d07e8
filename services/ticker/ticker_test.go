package ticker

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/pipeline/broker"
)

// Two tickers running at once (a rolling restart, a mistaken replica)
// still produce exactly one export request per site and tick.
func TestTwoTickersOneRequestPerTick(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	js := embeddedJetStream(t)
	netw := testNetwork(t, "@every 1s")
	if err := broker.Provision(ctx, js, netw.Streams); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{}, 2)
	for i := 0; i < 2; i++ {
		go func() { Run(ctx, Deps{JS: js, Network: netw}); done <- struct{}{} }()
	}
	time.Sleep(3500 * time.Millisecond)
	cancel()
	<-done
	<-done

	runs := map[string]int{}
	err := broker.EachJSON(context.Background(), js, messages.StreamExportRequests, messages.ExportRequestedSubject("site-a"), func(b []byte) {
		var r messages.ExportRequested
		if err := json.Unmarshal(b, &r); err != nil {
			t.Error(err)
		}
		runs[r.RunID]++
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(runs) < 2 {
		t.Fatalf("got %d ticks in 3.5s with @every 1s, want at least 2: %v", len(runs), runs)
	}
	for run, n := range runs {
		if n != 1 {
			t.Errorf("run %s requested %d times, want once", run, n)
		}
	}

	// verify_every (weekly by default): one verification request for the
	// window, whatever the ticks and tickers, after the window's first export.
	var verify []messages.VerifyRequested
	err = broker.EachJSON(context.Background(), js, messages.StreamExportRequests, messages.VerifyRequestedSubject("site-a"), func(b []byte) {
		var r messages.VerifyRequested
		if err := json.Unmarshal(b, &r); err != nil {
			t.Error(err)
		}
		verify = append(verify, r)
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(verify) != 1 {
		t.Fatalf("%d verification requests, want 1 per window: %+v", len(verify), verify)
	}
	v := verify[0]
	if want := messages.VerifyWindow(v.RequestedAt, 7*24*time.Hour); !v.Window.Equal(want) || v.Repair || runs[messages.RunID("site-a", v.RequestedAt)] != 1 {
		t.Fatalf("verification request %+v: want window %s, no repair, at the tick of an export", v, want)
	}
}

// verify_every: 0 turns the scheduled verification off.
func TestNoVerificationWhenVerifyEveryIsZero(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	js := embeddedJetStream(t)
	netw := testNetwork(t, "@every 1s")
	off := config.Duration(0)
	netw.Sites[0].VerifyEvery = &off
	if err := broker.Provision(ctx, js, netw.Streams); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { Run(ctx, Deps{JS: js, Network: netw}); close(done) }()
	time.Sleep(2500 * time.Millisecond)
	cancel()
	<-done
	if n := broker.CountSubject(context.Background(), js, messages.StreamExportRequests, messages.VerifyRequestedSubject("site-a")); n != 0 {
		t.Fatalf("%d verification requests with verify_every 0", n)
	}
	if n := broker.CountSubject(context.Background(), js, messages.StreamExportRequests, messages.ExportRequestedSubject("site-a")); n < 1 {
		t.Fatal("no export request: the test proves nothing")
	}
}

// embeddedJetStream starts a NATS server for the test and connects to it.
func embeddedJetStream(t *testing.T) jetstream.JetStream {
	t.Helper()
	srv, err := broker.StartEmbedded(broker.EmbeddedOptions{StoreDir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := broker.Connect(context.Background(), srv.ClientURL(), broker.ConnectOptions{Name: "test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := broker.JetStream(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

func testNetwork(t *testing.T, schedule string) *config.Network {
	t.Helper()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "tok"), []byte("ABCDEF0123456789ABCDEF0123456789"), 0o600)
	os.WriteFile(filepath.Join(dir, "policy.yaml"), []byte("name: x\n"), 0o600)
	body := "destination:\n  url: http://127.0.0.1:1/api/\n  token: {file: tok}\nsites:\n  - id: site-a\n    url: http://127.0.0.1:1/api/\n    token: {file: tok}\n    policy: policy.yaml\n    schedule: \"" + schedule + "\"\n"
	p := filepath.Join(dir, "network.yaml")
	os.WriteFile(p, []byte(body), 0o600)
	n, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
