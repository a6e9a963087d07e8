package main

import (
	"context"
	"log/slog"
	"os"

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
				// Every line names its service once: the services add it
				// themselves, onceAttrs drops their repeat.
				log := slog.New(onceAttrs{f.log.logger().Handler(), nil}).With("service", name)
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
			// One process holds an embedded NATS server and every service:
			// without a container limit, 512 MiB keeps the heap from doubling.
			app.SoftMemoryLimit(log, 512<<20)
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

// onceAttrs drops an attribute a logger already carries (the service name
// added by this command and again by the service itself), so a JSON line
// never holds the same key twice. Attributes inside a group are kept.
type onceAttrs struct {
	slog.Handler
	keys map[string]bool
}

func (h onceAttrs) WithAttrs(as []slog.Attr) slog.Handler {
	keys := make(map[string]bool, len(h.keys)+len(as))
	for k := range h.keys {
		keys[k] = true
	}
	var keep []slog.Attr
	for _, a := range as {
		if !keys[a.Key] {
			keys[a.Key] = true
			keep = append(keep, a)
		}
	}
	return onceAttrs{h.Handler.WithAttrs(keep), keys}
}

func (h onceAttrs) WithGroup(name string) slog.Handler { return h.Handler.WithGroup(name) }
