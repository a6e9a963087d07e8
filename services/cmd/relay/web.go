package main

import (
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/redcap-relay/relay/services/internal/web"
)

// webFlags are the dashboard's flags (relay web, relay all).
type webFlags struct{ o web.Options }

func (f *webFlags) add(fs *pflag.FlagSet, def string) {
	fs.StringVar(&f.o.Addr, "web", envOr("RELAY_WEB", def), "address of the dashboard (env RELAY_WEB; loopback unless --web-password-file is given; empty: none)")
	fs.StringVar(&f.o.User, "web-user", envOr("RELAY_WEB_USER", "relay"), "dashboard basic-auth user (env RELAY_WEB_USER)")
	fs.StringVar(&f.o.PasswordFile, "web-password-file", os.Getenv("RELAY_WEB_PASSWORD_FILE"), "file holding the dashboard's basic-auth password, required on a non-loopback address (env RELAY_WEB_PASSWORD_FILE)")
	fs.DurationVar(&f.o.Refresh, "web-refresh", 15*time.Second, "how often the dashboard page reloads itself")
}

func init() {
	var f natsFlags
	var wf webFlags
	var lf logFlags
	c := &cobra.Command{
		Use:   "web",
		Short: "the operator's dashboard: a read-only page of every site's last run, lag, dead letters and charts of the last 30 runs",
		Long: `relay web serves a read-only dashboard, rendered on the server from the
same read of NATS as relay status: per site the last run and its records, the
next run, the last success, the protocol score; the lag and dead letters per
stage; the notifier's delivery state; SVG charts of records per run and the
protocol score over the last 30 runs. No script or font is loaded from
anywhere; the page refreshes itself. It listens on 127.0.0.1:8470 by default;
another address needs --web-password-file (HTTP basic auth).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := commandContext(0)
			defer cancel()
			nc, js, net, err := f.connect(ctx)
			if err != nil {
				return err
			}
			defer nc.Close()
			o := wf.o
			if o.Addr == "" {
				o.Addr = web.DefaultAddr
			}
			o.Network, o.Logger = net, lf.logger()
			return ignoreCanceled(web.Serve(ctx, nc, js, o))
		},
	}
	f.add(c)
	wf.add(c.Flags(), web.DefaultAddr)
	lf.add(c.Flags())
	rootCmd.AddCommand(c)
}
