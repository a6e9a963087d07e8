package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/pipeline/app"
)

// Flags shared by the service commands.
type serviceFlags struct {
	network  string
	metrics  string
	parallel int
	logLevel string
	logJSON  bool
}

func (f *serviceFlags) add(c *cobra.Command) {
	c.Flags().StringVarP(&f.network, "network", "n", envOr("RELAY_NETWORK", "network.yaml"), "network file (env RELAY_NETWORK)")
	c.Flags().StringVar(&f.metrics, "metrics", envOr("RELAY_METRICS", ""), "address for /metrics, /healthz and /readyz, e.g. :9090 (env RELAY_METRICS)")
	c.Flags().IntVar(&f.parallel, "parallel", 32, "messages a transformer handles at once")
	c.Flags().StringVar(&f.logLevel, "log-level", envOr("RELAY_LOG_LEVEL", "info"), "debug, info, warn or error")
	c.Flags().BoolVar(&f.logJSON, "log-json", os.Getenv("RELAY_LOG_JSON") != "", "log as JSON lines")
}

func (f *serviceFlags) logger() *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(f.logLevel))
	opts := &slog.HandlerOptions{Level: lvl}
	if f.logJSON {
		return slog.New(slog.NewJSONHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, opts))
}

func envOr(k, d string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return d
}

// signalContext ends on SIGINT/SIGTERM, so compose stops services cleanly.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

func loadNetwork(path string) (*config.Network, error) {
	n, err := config.Load(path)
	if err != nil {
		return nil, fmt.Errorf("%w\n(run `relay config validate -n %s` for the full list)", err, path)
	}
	applyNATSEnv(n)
	return n, nil
}

func init() {
	for _, name := range app.All {
		var f serviceFlags
		c := &cobra.Command{
			Use:   name,
			Short: "run the " + name + " service against the NATS server in the network file",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				net, err := loadNetwork(f.network)
				if err != nil {
					return err
				}
				ctx, cancel := signalContext()
				defer cancel()
				log := f.logger().With("service", name)
				st, err := app.Start(ctx, app.Options{Network: net, Logger: log, MetricsAddr: f.metrics, TransformerParallel: f.parallel, NoProvision: noProvision()})
				if err != nil {
					return err
				}
				defer st.Close()
				log.Info("service started", "nats", net.NATS.URL)
				return ignoreCanceled(st.Run(ctx, name))
			},
		}
		f.add(c)
		rootCmd.AddCommand(c)
	}

	var f serviceFlags
	var data string
	var port int
	all := &cobra.Command{
		Use:   "all",
		Short: "run every service and an embedded NATS server in one process (a single machine)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			net, err := loadNetwork(f.network)
			if err != nil {
				return err
			}
			ctx, cancel := signalContext()
			defer cancel()
			log := f.logger()
			softMemoryLimit(log)
			embedded := net.NATS.URL == ""
			st, err := app.Start(ctx, app.Options{Network: net, Embedded: embedded, DataDir: data, NATSPort: port, Logger: log, MetricsAddr: f.metrics, TransformerParallel: f.parallel})
			if err != nil {
				return err
			}
			defer st.Close()
			log.Info("relay all started", "nats", st.URL, "embedded", embedded, "sites", len(net.Sites))
			return ignoreCanceled(st.Run(ctx, app.All...))
		},
	}
	f.add(all)
	all.Flags().StringVar(&data, "data", envOr("RELAY_DATA", ".relay-data"), "folder for the embedded NATS server's JetStream store")
	all.Flags().IntVar(&port, "nats-port", 4222, "port of the embedded NATS server (-1: any free port)")
	rootCmd.AddCommand(all)
}

func ignoreCanceled(err error) error {
	if err == context.Canceled {
		return nil
	}
	return err
}

// softMemoryLimit gives `relay all` a soft heap limit (GOMEMLIMIT semantics)
// unless the operator set GOMEMLIMIT: the process holds an embedded NATS
// server and every service, and without a limit the heap doubles between
// collections. Set well above the live heap, so collection never thrashes.
func softMemoryLimit(log *slog.Logger) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	const limit = 512 << 20
	debug.SetMemoryLimit(limit)
	log.Debug("soft memory limit set (override with GOMEMLIMIT)", "bytes", limit)
}
