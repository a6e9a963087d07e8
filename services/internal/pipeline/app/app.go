// Package app assembles services into a process: `relay all` (every service
// plus an embedded NATS server), and one service per process for compose.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/redcap-relay/relay/services/exporter"
	"github.com/redcap-relay/relay/services/importer"
	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/pipeline/broker"
	"github.com/redcap-relay/relay/services/internal/pipeline/sitekit"
	"github.com/redcap-relay/relay/services/internal/pipeline/telemetry"
	"github.com/redcap-relay/relay/services/internal/pipeline/topology"
	"github.com/redcap-relay/relay/services/ticker"
	"github.com/redcap-relay/relay/services/transformer"
	"github.com/redcap-relay/relay/services/verifier"
)

// Service names, as used on the command line.
const (
	Ticker      = topology.Ticker
	Exporter    = topology.Exporter
	Transformer = topology.Transformer
	Importer    = topology.Importer
	Checker     = topology.Checker
	Verifier    = topology.Verifier
)

// All lists every service in pipeline order, then the notifier (operator.go).
var All = append(append([]string(nil), topology.Services...), Notifier)

// DefaultDataDir is where `relay all` keeps its embedded JetStream store
// when neither --data nor the network file's nats.store_dir says.
const DefaultDataDir = ".relay-data"

// EmbeddedURLFile, in the data folder, holds the client URL of a running
// embedded server, so the operator's tools find it without copying it from
// the banner.
const EmbeddedURLFile = "nats.url"

// ReadEmbeddedURL reads the URL a running embedded server wrote into dir.
func ReadEmbeddedURL(dir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(dir, EmbeddedURLFile))
	if err != nil {
		return "", err
	}
	u := strings.TrimSpace(string(b))
	if u == "" {
		return "", fmt.Errorf("%s is empty", filepath.Join(dir, EmbeddedURLFile))
	}
	return u, nil
}

// Options configures a process.
type Options struct {
	Network *config.Network
	// Embedded starts an in-process NATS server storing in DataDir; else
	// the services connect to Network.NATS.URL.
	Embedded bool
	DataDir  string
	NATSPort int // embedded server port (-1 = any free port)
	Logger   *slog.Logger
	// TransformerParallel is messages handled at once by the transformer.
	TransformerParallel int
	MetricsAddr         string
	// Services are the services this process will run: Start checks
	// that every secret they read can be read, and refuses to start with
	// the full list otherwise.
	Services []string
	// Web is the dashboard's settings, for the web service.
	Web WebOptions
	// NoProvision skips creating streams, consumers and buckets: a
	// deployment whose service NATS users may not manage JetStream (compose)
	// provisions once with an admin user (`relay provision`).
	NoProvision bool
}

// Stack is a connected (and provisioned) broker.
type Stack struct {
	Server *server.Server // nil when external
	NC     *nats.Conn
	JS     jetstream.JetStream
	URL    string
	Kit    *sitekit.Kit
	opts   Options

	urlFile string // the embedded server's URL file, removed on Close

	mu       sync.Mutex
	running  []chan struct{} // one per Run call, closed when it returns
	notReady string          // why /readyz fails ("" once connected)
}

// Needs is what the named services read of the network file's secrets.
func Needs(services ...string) config.Needs {
	var n config.Needs
	for _, s := range services {
		switch s {
		case Exporter:
			n.SiteTokens, n.PseudonymKey, n.NATSPassword = true, true, true
		case Transformer:
			n.PseudonymKey, n.NATSPassword = true, true
		case Importer:
			n.DestinationToken, n.NATSPassword = true, true
		case Checker:
			n.SiteTokens, n.NATSPassword = true, true
		case Verifier:
			// It exports the sites and the destination and applies the
			// policies, like `relay verify`.
			n.SiteTokens, n.DestinationToken, n.PseudonymKey, n.NATSPassword = true, true, true, true
		case Ticker:
			n.NATSPassword = true
		case Notifier:
			n.AlertSecrets, n.NATSPassword = true, true
		}
	}
	return n
}

func (s *Stack) setNotReady(why string) {
	s.mu.Lock()
	s.notReady = why
	s.mu.Unlock()
}

// ready is the /readyz check: connected to NATS and provisioned.
func (s *Stack) ready() error {
	s.mu.Lock()
	why := s.notReady
	s.mu.Unlock()
	if why != "" {
		return errors.New(why)
	}
	if s.NC == nil || !s.NC.IsConnected() {
		return errors.New("NATS is not connected")
	}
	return nil
}

// Start starts the embedded server if asked, connects and provisions.
func Start(ctx context.Context, o Options) (*Stack, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	SoftMemoryLimit(o.Logger, 0)
	s := &Stack{opts: o, URL: o.Network.NATS.URL, Kit: sitekit.New(o.Network, o.Logger), notReady: "starting"}
	if ps := o.Network.CheckSecretsOf(Needs(o.Services...)); len(ps) > 0 {
		return nil, &config.Error{Path: o.Network.Path(), Problems: ps}
	}
	if o.MetricsAddr != "" {
		// Up before NATS, so an orchestrator sees "not ready: cannot reach
		// NATS" rather than a dead port.
		go func() {
			if err := telemetry.Serve(ctx, o.MetricsAddr, o.Logger, s.ready); err != nil {
				o.Logger.Error("metrics endpoint", "addr", o.MetricsAddr, "err", err)
			}
		}()
	}
	if o.Embedded {
		dir := o.DataDir
		if dir == "" {
			dir = o.Network.NATS.StoreDir
		}
		if dir == "" {
			dir = DefaultDataDir
		}
		port := o.NATSPort
		if port == 0 {
			port = -1
		}
		eo := broker.EmbeddedOptions{StoreDir: filepath.Join(dir, "jetstream"), Port: port, Logger: o.Logger}
		var err error
		if eo.SyncAlways, eo.SyncInterval, err = o.Network.NATS.Sync(); err != nil {
			return nil, fmt.Errorf("%s: nats.sync_interval %w", o.Network.Path(), err)
		}
		srv, err := broker.StartEmbedded(eo)
		if err != nil {
			return nil, err
		}
		s.Server, s.URL = srv, srv.ClientURL()
		s.urlFile = filepath.Join(dir, EmbeddedURLFile)
		if err := os.WriteFile(s.urlFile, []byte(s.URL+"\n"), 0o600); err != nil {
			o.Logger.Warn("the embedded server's URL is not written for the operator's tools", "file", s.urlFile, "err", err)
		}
	}
	if s.URL == "" {
		return nil, fmt.Errorf("%s: nats.url is empty: give the NATS server URL, or run `relay all` for an embedded one", o.Network.Path())
	}
	var password string
	if o.Network.NATS.User != "" {
		p, err := o.Network.NATS.Password.Read()
		if err != nil {
			s.Close()
			return nil, fmt.Errorf("nats.password: %w", err)
		}
		password = p
	}
	s.setNotReady("connecting to NATS")
	nc, err := broker.Connect(ctx, s.URL, broker.ConnectOptions{Name: "relay", User: o.Network.NATS.User, Password: password, CAFile: o.Network.NATS.CAFile, Logger: o.Logger,
		OnAttempt: func(n int, err error) { s.setNotReady(fmt.Sprintf("cannot reach NATS (attempt %d: %v)", n, err)) }})
	if err != nil {
		s.Close()
		return nil, err
	}
	s.NC = nc
	if s.JS, err = broker.JetStream(nc); err != nil {
		s.Close()
		return nil, err
	}
	if !o.NoProvision {
		s.setNotReady("provisioning streams")
		if err := broker.Provision(ctx, s.JS, o.Network.Streams); err != nil {
			s.Close()
			return nil, err
		}
	}
	s.setNotReady("")
	return s, nil
}

// Close waits for Run to return (its context must be done), disconnects
// and stops the embedded server.
func (s *Stack) Close() {
	s.mu.Lock()
	running := s.running
	s.mu.Unlock()
	for _, r := range running {
		select {
		case <-r:
		case <-time.After(time.Minute):
			s.opts.Logger.Warn("services did not stop within a minute; closing anyway")
		}
	}
	if s.urlFile != "" {
		_ = os.Remove(s.urlFile)
	}
	if s.NC != nil {
		s.NC.Drain()
	}
	if s.Server != nil {
		s.Server.Shutdown()
		s.Server.WaitForShutdown()
	}
}

// Run runs the named services until ctx ends or one fails.
func (s *Stack) Run(ctx context.Context, names ...string) error {
	done := make(chan struct{})
	defer close(done)
	s.mu.Lock()
	s.running = append(s.running, done)
	s.mu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, len(names)+1)
	run := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil && ctx.Err() == nil {
				errs <- fmt.Errorf("%s: %w", name, err)
				cancel()
			}
		}()
	}
	for _, name := range names {
		f, err := s.service(name)
		if err != nil {
			return err
		}
		run(name, f)
	}
	go func() { wg.Wait(); close(errs) }()
	var first error
	for err := range errs {
		if first == nil {
			first = err
		}
	}
	if first != nil {
		return first
	}
	return ctx.Err()
}

// service is the named service's Run bound to this stack.
func (s *Stack) service(name string) (func(context.Context) error, error) {
	o, net, log := s.opts, s.opts.Network, s.opts.Logger
	switch name {
	case Ticker:
		return func(ctx context.Context) error {
			return ticker.Run(ctx, ticker.Deps{JS: s.JS, Network: net, Logger: log})
		}, nil
	case Exporter:
		return func(ctx context.Context) error {
			return exporter.Run(ctx, exporter.Deps{NC: s.NC, JS: s.JS, Streams: net.Streams, Sites: exporter.KitSites(s.Kit),
				Logger: log, Parallel: exporter.Parallelism(len(net.Sites))})
		}, nil
	case Transformer:
		return func(ctx context.Context) error {
			return transformer.Run(ctx, transformer.Deps{NC: s.NC, JS: s.JS, Streams: net.Streams, Policies: s.Kit,
				Logger: log, Parallel: o.TransformerParallel})
		}, nil
	case Importer:
		return func(ctx context.Context) error {
			dest, err := s.Kit.Destination()
			if err != nil {
				return err
			}
			return importer.Run(ctx, importer.Deps{NC: s.NC, JS: s.JS, Streams: net.Streams, Destination: dest, Settings: net.Destination, Logger: log})
		}, nil
	case Checker:
		return func(ctx context.Context) error { return runChecker(ctx, s, o) }, nil
	case Verifier:
		return func(ctx context.Context) error {
			return verifier.Serve(ctx, verifier.ServiceDeps{NC: s.NC, JS: s.JS, Streams: net.Streams, Kit: s.Kit, Logger: log})
		}, nil
	case Notifier:
		return s.runNotifier, nil
	case Web:
		return s.runWeb, nil
	}
	return nil, fmt.Errorf("unknown service %q (services: %v)", name, All)
}
