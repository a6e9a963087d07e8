package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/crypto/bcrypt"

	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/ops"
	"github.com/redcap-relay/relay/services/internal/pipeline/app"
	"github.com/redcap-relay/relay/services/internal/pipeline/broker"
	"github.com/redcap-relay/relay/services/internal/pipeline/telemetry"
)

// natsServerFlags are `relay nats`'s settings.
type natsServerFlags struct {
	data, configFile, host, keyFile string
	port                            int
	syncAlways                      bool
	syncInterval                    string
	serverName, clusterName         string
	cluster, routes                 string
	maxFile, maxMemory              string
	tlsCert, tlsKey                 string
	metrics                         string
	fillWarn                        float64
	log                             logFlags
}

func init() {
	var f natsServerFlags
	c := &cobra.Command{
		Use:   "nats",
		Short: "run the embedded NATS server with JetStream alone (for docker-compose)",
		Long: `relay nats runs nats-server with JetStream in this process. Users and
permissions come from --config (deploy/nats/nats.conf); each
RELAY_NATS_PASSWORD_<USER>_FILE variable names a file holding that user's
password or, better, its bcrypt hash (relay nats hash-password), which the
config reads as $RELAY_NATS_PASSWORD_<USER>. With --metrics it serves
relay_stream_bytes / relay_stream_max_bytes per stream, and it logs a warning
when a stream passes --fill-warn of its byte cap.

A JetStream cluster is three (or five) nodes, each started with its own
--server-name, the same --cluster-name, --cluster (the route listener) and
--routes listing every node; the config file's server_name and cluster { }
block do the same. --sync-interval says how often the store is fsynced
(default 2m, "always" for every write).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runNATS(f) },
	}
	fl := c.Flags()
	fl.StringVar(&f.data, "data", envOr("RELAY_NATS_DATA", "/data"), "JetStream store folder")
	fl.StringVar(&f.configFile, "config", envOr("RELAY_NATS_CONFIG", ""), "nats-server config file (users, permissions, limits)")
	fl.StringVar(&f.host, "host", "0.0.0.0", "listen address")
	fl.IntVar(&f.port, "port", 4222, "client port")
	fl.StringVar(&f.syncInterval, "sync-interval", envOr("RELAY_NATS_SYNC_INTERVAL", ""), "how often JetStream fsyncs its store: a duration (default: the config file's, else 2m) or \"always\" (every write: slower, no loss window on power failure)")
	fl.BoolVar(&f.syncAlways, "sync-always", false, "the same as --sync-interval always")
	fl.StringVar(&f.serverName, "server-name", envOr("RELAY_NATS_SERVER_NAME", ""), "this node's name (required in a cluster; default: the config file's server_name)")
	fl.StringVar(&f.clusterName, "cluster-name", envOr("RELAY_NATS_CLUSTER_NAME", ""), "the cluster's name, the same on every node")
	fl.StringVar(&f.cluster, "cluster", envOr("RELAY_NATS_CLUSTER", ""), "host:port this node listens on for the other nodes' routes, e.g. 0.0.0.0:6222 (makes it a cluster node)")
	fl.StringVar(&f.routes, "routes", envOr("RELAY_NATS_ROUTES", ""), "the cluster's nodes, comma-separated host:port or nats-route://host:port (this node's own address may be listed)")
	fl.StringVar(&f.keyFile, "encryption-key-file", envOr("RELAY_NATS_KEY_FILE", ""), "encrypt JetStream at rest with the key in this file")
	fl.StringVar(&f.maxFile, "max-file-store", envOr("RELAY_NATS_MAX_FILE_STORE", ""), "most JetStream may store on disk, e.g. 32GiB (default: the config file's, else 1TiB); must hold the sum of streams.max_bytes")
	fl.StringVar(&f.maxMemory, "max-memory-store", envOr("RELAY_NATS_MAX_MEMORY_STORE", ""), "most JetStream may keep in memory, e.g. 256MiB (default: the config file's)")
	fl.StringVar(&f.tlsCert, "tls-cert", envOr("RELAY_NATS_TLS_CERT", ""), "server certificate (PEM): clients must then use tls:// and verify it")
	fl.StringVar(&f.tlsKey, "tls-key", envOr("RELAY_NATS_TLS_KEY", ""), "the certificate's private key (PEM)")
	fl.StringVar(&f.metrics, "metrics", envOr("RELAY_METRICS", ""), "address for /metrics (relay_stream_bytes, relay_stream_max_bytes) and /healthz, e.g. :9090")
	fl.Float64Var(&f.fillWarn, "fill-warn", 0.8, "warn when a stream holds this share of its byte cap")
	f.log.add(fl)
	c.AddCommand(hashPasswordCmd(), tlsCertsCmd())
	rootCmd.AddCommand(c)
}

func runNATS(f natsServerFlags) error {
	log := f.log.logger().With("service", "nats")
	app.SoftMemoryLimit(log, 0)
	// Passwords referenced by the config ($RELAY_NATS_PASSWORD_<USER>) come from secret files.
	if _, err := ops.PasswordEnvFromFiles(); err != nil {
		return err
	}
	o := broker.EmbeddedOptions{StoreDir: f.data, ConfigFile: f.configFile, Host: f.host, Port: f.port,
		TLSCert: f.tlsCert, TLSKey: f.tlsKey, Logger: log,
		ServerName: f.serverName, ClusterName: f.clusterName, ClusterListen: f.cluster, Routes: splitList(f.routes)}
	var err error
	if o.SyncAlways, o.SyncInterval, err = (config.NATS{SyncInterval: f.syncInterval}).Sync(); err != nil {
		return fmt.Errorf("--sync-interval: %w", err)
	}
	if f.syncAlways {
		if o.SyncInterval > 0 {
			return fmt.Errorf("--sync-always and --sync-interval %s disagree: give one (--sync-always is --sync-interval always)", f.syncInterval)
		}
		o.SyncAlways = true
	}
	if o.MaxFileStore, err = optionalBytes("--max-file-store", f.maxFile); err != nil {
		return err
	}
	if o.MaxMemoryStore, err = optionalBytes("--max-memory-store", f.maxMemory); err != nil {
		return err
	}
	if f.keyFile != "" {
		b, err := os.ReadFile(f.keyFile)
		if err != nil {
			return fmt.Errorf("--encryption-key-file: %w", err)
		}
		o.Key = strings.TrimSpace(string(b))
	}
	if f.fillWarn <= 0 || f.fillWarn >= 1 {
		return fmt.Errorf("--fill-warn %g must be between 0 and 1", f.fillWarn)
	}
	srv, err := broker.StartEmbedded(o)
	if err != nil {
		return err
	}
	ctx, cancel := commandContext(0)
	defer cancel()
	usage := func() ([]telemetry.StreamUsage, error) { return broker.StreamUsage(srv) }
	telemetry.ExportStreams(usage)
	if f.metrics != "" {
		go func() {
			if err := telemetry.Serve(ctx, f.metrics, log); err != nil {
				log.Error("metrics endpoint", "addr", f.metrics, "err", err)
			}
		}()
	}
	go (&telemetry.FillWatcher{Log: log, Source: usage, WarnAt: f.fillWarn}).Run(ctx, 30*time.Second)
	sync := "the config file's, else 2m"
	switch {
	case o.SyncAlways:
		sync = "always"
	case o.SyncInterval > 0:
		sync = o.SyncInterval.String()
	}
	log.Info("nats server ready", "url", srv.ClientURL(), "store", f.data, "encrypted", o.Key != "", "tls", o.TLSCert != "",
		"server_name", srv.Name(), "cluster", srv.ClusterName(), "sync", sync)
	<-ctx.Done()
	log.Info("nats server stopping")
	srv.Shutdown()
	srv.WaitForShutdown()
	return nil
}

// splitList splits a comma-separated list, dropping empty items.
func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func optionalBytes(flag, v string) (int64, error) {
	if v == "" {
		return 0, nil
	}
	b, err := config.ParseBytes(v)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", flag, err)
	}
	return int64(b), nil
}

// hashPasswordCmd prints the bcrypt hash of a password read from stdin,
// for the server's config (scripts/compose-secrets.sh writes one per user):
// the broker then never holds a client's password, and nats-server does not
// warn about plaintext passwords.
func hashPasswordCmd() *cobra.Command {
	var cost int
	c := &cobra.Command{
		Use:    "hash-password",
		Short:  "print the bcrypt hash of the password on stdin (for RELAY_NATS_PASSWORD_<USER>_FILE)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pw, err := bufio.NewReader(io.LimitReader(cmd.InOrStdin(), 1024)).ReadString('\n')
			if err != nil && err != io.EOF {
				return err
			}
			pw = strings.TrimSpace(pw)
			if len(pw) < 12 {
				return fmt.Errorf("hash-password: the password on stdin is %d characters; give at least 12", len(pw))
			}
			h, err := bcrypt.GenerateFromPassword([]byte(pw), cost)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), string(h))
			return nil
		},
	}
	c.Flags().IntVar(&cost, "cost", 11, "bcrypt cost (each step doubles the server's work per connection)")
	return c
}
