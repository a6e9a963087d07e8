package main

import (
	"context"
	"log/slog"
	"os"
	"runtime/debug"

	"github.com/spf13/cobra"

	"github.com/redcap-relay/relay/services/internal/pipeline/app"
)

// serviceFlags are the flags of the long-running commands.
type serviceFlags struct {
	network  string
	metrics  string
	parallel int
	log      logFlags
}

func (f *serviceFlags) add(c *cobra.Command, parallel bool) {
	addNetworkFlag(c.Flags(), &f.network)
	c.Flags().StringVar(&f.metrics, "metrics", envOr("RELAY_METRICS", ""), "address for /metrics, /healthz and /readyz, e.g. :9090 (env RELAY_METRICS)")
	if parallel {
		c.Flags().IntVar(&f.parallel, "parallel", 32, "records a transformer handles at once")
	}
	f.log.add(c.Flags())
}

func init() {
	for _, name := range app.All {
		var f serviceFlags
		c := &cobra.Command{
			Use:   name,
			Short: "run the " + name + " service against the NATS server in the network file",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				log := f.log.logger().With("service", name)
				net, err := loadNetwork(f.network)
				if err != nil {
					return err
				}
				ctx, cancel := commandContext(0)
				defer cancel()
				st, err := app.Start(ctx, app.Options{Network: net, Logger: log, MetricsAddr: f.metrics, TransformerParallel: f.parallel,
					NoProvision: noProvision(), Services: []string{name}})
				if err != nil {
					return err
				}
				defer st.Close()
				log.Info("service started", "nats", net.NATS.URL)
				return ignoreCanceled(st.Run(ctx, name))
			},
		}
		f.add(c, name == app.Transformer)
		rootCmd.AddCommand(c)
	}

	var f serviceFlags
	var wf webFlags
	var data string
	var port int
	all := &cobra.Command{
		Use:   "all",
		Short: "run every service and an embedded NATS server in one process (a single machine)",
		Long: `relay all runs every service in one process. With an empty nats.url in the
network file it also runs an embedded NATS server, storing in --data (default:
the network file's nats.store_dir, else .relay-data) and writing its URL to
nats.url there, where relay status, sync, replay and dlq find it.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := f.log.logger()
			net, err := loadNetwork(f.network)
			if err != nil {
				return err
			}
			ctx, cancel := commandContext(0)
			defer cancel()
			softMemoryLimit(log)
			embedded := net.NATS.URL == ""
			st, err := app.Start(ctx, app.Options{Network: net, Embedded: embedded, DataDir: data, NATSPort: port, Logger: log,
				MetricsAddr: f.metrics, TransformerParallel: f.parallel, Services: app.All, Web: wf.o})
			if err != nil {
				return err
			}
			defer st.Close()
			log.Info("relay all started", "nats", st.URL, "embedded", embedded, "sites", len(net.Sites))
			services := app.All
			if wf.o.Addr != "" {
				services = append(services, app.Web)
			}
			return ignoreCanceled(st.Run(ctx, services...))
		},
	}
	f.add(all, true)
	wf.add(all.Flags(), "127.0.0.1:8470")
	all.Flags().StringVar(&data, "data", os.Getenv("RELAY_DATA"), "folder for the embedded NATS server's store and URL file (env RELAY_DATA; default: nats.store_dir, else .relay-data)")
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
