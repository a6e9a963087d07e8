package broker

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/pipeline/telemetry"
)

// A stream's fill level is read from the server, logged as a warning
// before the stream is full and as an error when it is; a full stream that
// discards new messages then refuses the next record.
func TestStreamFillIsWarnedBeforeTheStreamIsFull(t *testing.T) {
	srv, err := StartEmbedded(EmbeddedOptions{StoreDir: t.TempDir(), Port: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	ctx, nc := connectTo(t, srv.ClientURL())
	js, _ := JetStream(nc)
	s := config.DefaultStreams()
	s.MaxBytes.RecordsClean = 8 << 20
	if err := Provision(ctx, js, s); err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	w := &telemetry.FillWatcher{Log: log, Source: func() ([]telemetry.StreamUsage, error) { return StreamUsage(srv) }, WarnAt: 0.8}
	check := w.Check
	payload := bytes.Repeat([]byte("x"), 1<<20)
	publish := func() error {
		_, err := js.Publish(ctx, messages.RecordsCleanSubject("wake"), payload)
		return err
	}
	for i := 0; i < 5; i++ {
		if err := publish(); err != nil {
			t.Fatal(err)
		}
	}
	usage, err := StreamUsage(srv)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, u := range usage {
		if u.Stream == messages.StreamRecordsClean {
			found = u.Msgs == 5 && u.MaxBytes == 8<<20 && u.Fill() > 0.6 && u.Fill() < 0.7
		}
	}
	if !found {
		t.Fatalf("usage of RECORDS_CLEAN after 5 MiB: %+v", usage)
	}
	check()
	if logs.Len() != 0 {
		t.Errorf("a stream at 63%% was reported: %s", logs.String())
	}
	publish()
	publish() // 7 MiB: 88%
	check()
	if !strings.Contains(logs.String(), "level=WARN msg=\"stream is filling up") || !strings.Contains(logs.String(), "stream=RECORDS_CLEAN") {
		t.Errorf("no warning at 88%%: %s", logs.String())
	}
	logs.Reset()
	check()
	if logs.Len() != 0 {
		t.Errorf("warned twice for one crossing: %s", logs.String())
	}
	payload = payload[:64<<10] // smaller records fill the rest
	var refused error
	for i := 0; i < 40 && refused == nil; i++ {
		refused = publish()
	}
	if refused == nil || !strings.Contains(refused.Error(), "maximum bytes") {
		t.Errorf("a full RECORDS_CLEAN (discard new) took more: %v", refused)
	}
	check()
	if !strings.Contains(logs.String(), "level=ERROR msg=\"stream is full") {
		t.Errorf("no error when full: %s", logs.String())
	}
}

func connectTo(t *testing.T, url string) (context.Context, *nats.Conn) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20e9)
	t.Cleanup(cancel)
	nc, err := Connect(ctx, url, ConnectOptions{Name: t.Name()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return ctx, nc
}
