package ops

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/pipeline/broker"
)

// testStreams are the network defaults with short windows.
var testStreams = func() config.Streams {
	s := config.DefaultStreams()
	s.AuditMaxAge, s.DLQMaxAge = config.Duration(720*time.Hour), config.Duration(720*time.Hour)
	return s
}()

// startNATS starts an embedded server (optionally from a config file),
// connects as admin (when a password is given) and provisions every stream.
func startNATS(t *testing.T, configFile, user, password string) (*server.Server, *nats.Conn, jetstream.JetStream) {
	t.Helper()
	srv, err := broker.StartEmbedded(broker.EmbeddedOptions{StoreDir: t.TempDir(), Port: -1, ConfigFile: configFile})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	nc, js := dial(t, srv.ClientURL(), user, password)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := broker.Provision(ctx, js, testStreams); err != nil {
		t.Fatal(err)
	}
	return srv, nc, js
}

func dial(t *testing.T, url, user, password string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, js, err := Dial(context.Background(), Conn{URL: url, User: user, Password: password, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc, js
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return c
}
