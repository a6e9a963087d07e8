package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/ops"
	"github.com/redcap-relay/relay/services/internal/pipeline/app"
)

// This file is the one shape every command shares: the network-file flag,
// the NATS connection flags of the operator tools, logging, the base
// context, and exit statuses.

// defaultNetworkFile is $RELAY_NETWORK or network.yaml.
func defaultNetworkFile() string { return envOr("RELAY_NETWORK", "network.yaml") }

// addNetworkFlag adds -n/--network to a command.
func addNetworkFlag(fs *pflag.FlagSet, p *string) {
	fs.StringVarP(p, "network", "n", defaultNetworkFile(), "network file (env RELAY_NETWORK)")
}

func envOr(k, d string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return d
}

// loadNetwork reads and validates the network file and applies the NATS
// environment overrides (RELAY_NATS_URL, _USER, _PASSWORD_FILE, _CA_FILE),
// so every command sees the same connection settings.
func loadNetwork(path string) (*config.Network, error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil, missingNetwork(path)
	}
	n, err := config.Load(path)
	if err != nil {
		var ce *config.Error
		if errors.As(err, &ce) {
			return nil, fmt.Errorf("%w\n(run `relay config validate -n %s` for the full list)", err, path)
		}
		return nil, err
	}
	applyNATSEnv(n)
	return n, nil
}

// missingNetwork is the one line a service or provisioning stops with when
// its network file is not there (a missing ./config in docker-compose).
func missingNetwork(path string) error {
	return fmt.Errorf("network file %s does not exist: put the network file there (docker-compose: ./config/network.yaml, or the folder RELAY_CONFIG_DIR names, with policies/ and the protocol beside it), or give another with -n / RELAY_NETWORK", path)
}

// applyNATSEnv lets a deployment give each service its own NATS user while
// all services share one read-only network file (compose sets the variables
// per container; the password file is a secret).
func applyNATSEnv(n *config.Network) {
	if v := os.Getenv("RELAY_NATS_URL"); v != "" {
		n.NATS.URL = v
	}
	if v := os.Getenv("RELAY_NATS_USER"); v != "" {
		n.NATS.User = v
	}
	if v := os.Getenv("RELAY_NATS_PASSWORD_FILE"); v != "" {
		n.NATS.Password = config.Secret{File: v}
	}
	if v := os.Getenv("RELAY_NATS_CA_FILE"); v != "" {
		n.NATS.CAFile = v
	}
}

// noProvision is RELAY_PROVISION=false: the service's NATS user may not
// create streams, so `relay provision` (admin user) did it beforehand.
func noProvision() bool {
	v := strings.ToLower(os.Getenv("RELAY_PROVISION"))
	return v == "false" || v == "0" || v == "no"
}

// commandContext ends on SIGINT/SIGTERM (compose stops services cleanly)
// and, when timeout > 0, after timeout.
func commandContext(timeout time.Duration) (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	if timeout <= 0 {
		return ctx, stop
	}
	tctx, cancel := context.WithTimeout(ctx, timeout)
	return tctx, func() { cancel(); stop() }
}

// logFlags are the logging flags of every long-running command.
type logFlags struct {
	level string
	json  bool
}

func (f *logFlags) add(fs *pflag.FlagSet) {
	fs.StringVar(&f.level, "log-level", envOr("RELAY_LOG_LEVEL", "info"), "debug, info, warn or error (env RELAY_LOG_LEVEL)")
	fs.BoolVar(&f.json, "log-json", os.Getenv("RELAY_LOG_JSON") != "", "log as JSON lines (env RELAY_LOG_JSON)")
}

func (f *logFlags) logger() *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(f.level))
	opts := &slog.HandlerOptions{Level: lvl}
	if f.json {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

// exitError ends a command with a chosen exit status (relay check: 1 means
// deviations found, 2 that the check could not run).
type exitError struct {
	code int
	err  error
}

func exitWith(code int, err error) error { return &exitError{code: code, err: err} }

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }
func (e *exitError) ExitCode() int { return e.code }

// natsFlags are the connection flags of every command that talks to NATS
// without running a service (status, sync, replay, dlq, provision, ...): a
// NATS URL and user directly, the network file's nats section, or the URL
// file an embedded server (`relay all`, `relay demo --serve`) writes.
type natsFlags struct {
	network, url, user, passwordFile, caFile, data string
	json                                           bool
}

func (f *natsFlags) add(c *cobra.Command) { f.addTo(c.Flags()) }

// addTo adds the flags to a flag set (persistent flags for a command with
// subcommands).
func (f *natsFlags) addTo(fs *pflag.FlagSet) {
	addNetworkFlag(fs, &f.network)
	fs.StringVar(&f.url, "nats", os.Getenv("RELAY_NATS_URL"), "NATS URL, e.g. nats://nats.example.org:4222 (env RELAY_NATS_URL; default: the network file's nats.url, else the embedded server's)")
	fs.StringVar(&f.user, "user", os.Getenv("RELAY_NATS_USER"), "NATS user: the operator (admin) user (env RELAY_NATS_USER)")
	fs.StringVar(&f.passwordFile, "password-file", os.Getenv("RELAY_NATS_PASSWORD_FILE"), "file holding the NATS password (env RELAY_NATS_PASSWORD_FILE)")
	fs.StringVar(&f.caFile, "ca-file", os.Getenv("RELAY_NATS_CA_FILE"), "CA (PEM) for a tls:// NATS URL (env RELAY_NATS_CA_FILE)")
	fs.StringVar(&f.data, "data", os.Getenv("RELAY_DATA"), "data folder of `relay all` / `relay demo --serve`, whose embedded NATS URL to use (env RELAY_DATA; default: the network file's nats.store_dir, else .relay-data)")
}

func (f *natsFlags) addJSON(c *cobra.Command) {
	c.Flags().BoolVar(&f.json, "json", false, "print JSON instead of a table")
}

// network loads the network file when there is one. A file with problems
// (say, a site token this machine does not hold) still names the sites and
// the NATS server, so operator tools accept it; it is nil when the file
// does not exist.
func (f *natsFlags) networkFile() (*config.Network, error) {
	if f.network == "" {
		return nil, nil
	}
	if _, err := os.Stat(f.network); err != nil {
		return nil, nil
	}
	n, err := config.Load(f.network)
	var ce *config.Error
	if err != nil && (!errors.As(err, &ce) || n == nil) {
		return nil, err // not YAML, or unreadable: nothing to go on
	}
	applyNATSEnv(n)
	return n, nil
}

// connect resolves the connection settings (flags and environment first,
// then the network file, then an embedded server's URL file) and dials
// NATS. It also returns the network file when one was read.
func (f *natsFlags) connect(ctx context.Context) (*nats.Conn, jetstream.JetStream, *config.Network, error) {
	n, err := f.networkFile()
	if err != nil {
		return nil, nil, nil, err
	}
	conn := ops.Conn{URL: f.url, User: f.user, CAFile: f.caFile}
	if conn.URL == "" && n != nil {
		conn.URL, conn.CAFile = n.NATS.URL, n.NATS.CAFile
		if conn.User == "" && n.NATS.User != "" {
			conn.User = n.NATS.User
			pw, err := n.NATS.Password.Read()
			if err != nil {
				return nil, nil, nil, fmt.Errorf("nats.password: %w", err)
			}
			conn.Password = pw
		}
	}
	if conn.URL == "" {
		dir := f.data
		if dir == "" && n != nil {
			dir = n.NATS.StoreDir
		}
		if dir == "" {
			dir = app.DefaultDataDir
		}
		u, err := app.ReadEmbeddedURL(dir)
		if err != nil {
			where := "no network file " + f.network
			if n != nil {
				where = n.Path() + " has no nats.url"
			}
			return nil, nil, nil, fmt.Errorf("no NATS server given (%s, and no embedded server's URL in %s): pass --nats nats://host:4222 (with --user and --password-file), -n network.yaml, or --data DIR of a running `relay all` / `relay demo --serve`",
				where, filepath.Join(dir, app.EmbeddedURLFile))
		}
		conn.URL = u
	}
	if f.passwordFile != "" {
		pw, err := config.Secret{File: f.passwordFile}.Read()
		if err != nil {
			return nil, nil, nil, fmt.Errorf("--password-file: %w", err)
		}
		conn.Password = pw
	}
	nc, js, err := ops.Dial(ctx, conn)
	if err != nil {
		return nil, nil, nil, err
	}
	return nc, js, n, nil
}

// siteIDs are the sites the network file lists (none without one).
func siteIDs(n *config.Network) []string {
	if n == nil {
		return nil
	}
	return n.SiteIDs()
}
