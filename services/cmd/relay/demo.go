package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/redcap-relay/relay/services/internal/tools/demo"
)

func init() {
	var o demo.RunOptions
	var w demo.WriteOptions
	var verbose bool
	c := &cobra.Command{
		Use:   "demo",
		Short: "simulate three sites and a destination, run one full sync through the whole pipeline, print the summary and the protocol check",
		Long: `relay demo starts the REDCap simulator with three synthetic sites (HEAL core
instruments, four events, a repeating dose log, identifiers in an enrollment
form) and a destination project, an embedded NATS server, and every service.
It runs one full sync, prints per site what was exported, imported and
dead-lettered, and writes the protocol report. Everything it writes (network
file, policy, token files, reports, JetStream store) stays in --data; with
--data the simulator keeps its projects there too, and the next relay demo on
that folder restarts on the same network (projects, data, tokens, key,
streams): a rehearsal ground for the operator tools.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := commandContext(0)
			defer cancel()
			if w.Dir != "" {
				// For docker-compose: write the demo network and the
				// simulator project folders, then exit.
				w.Scale = o.Scale
				// Write keeps a folder that already holds a network (a
				// restarted init container must not change the tokens).
				_, err := os.Stat(filepath.Join(w.Dir, "network.yaml"))
				kept := err == nil
				if err := demo.Write(ctx, w); err != nil {
					return err
				}
				if kept {
					fmt.Fprintf(cmd.OutOrStdout(), "demo network kept in %s (it was already there; remove the volume for a new one)\n", w.Dir)
					return nil
				}
				fmt.Fprintf(cmd.OutOrStdout(), "demo network written to %s (projects/sites, projects/destination, network.yaml)\n", w.Dir)
				return nil
			}
			o.Out = cmd.OutOrStdout()
			if verbose {
				o.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
			}
			return demo.Run(ctx, o)
		},
	}
	c.Flags().StringVar(&o.DataDir, "data", "", "folder for everything the demo writes (default: a new temporary folder)")
	c.Flags().BoolVar(&o.Serve, "serve", false, "keep running after the sync: schedules, metrics and the simulator stay up")
	c.Flags().Float64Var(&o.Scale, "scale", 1, "multiply every site's number of participants")
	c.Flags().DurationVar(&o.Timeout, "timeout", 5*time.Minute, "give up if the pipeline has not drained by then")
	c.Flags().StringVar(&o.Metrics, "metrics", "", "serve /metrics and /healthz on this address, e.g. 127.0.0.1:9090")
	c.Flags().StringVar(&o.FaultAdmin, "fault-admin", "", "serve the simulator's fault admin API on this address, e.g. 127.0.0.1:8081 (PUT /faults makes the sites misbehave)")
	c.Flags().BoolVarP(&verbose, "verbose", "v", false, "log what every service does")
	c.Flags().StringVar(&w.Dir, "write", "", "write the demo network into this folder for docker-compose and exit (keeps an existing one)")
	c.Flags().StringVar(&w.SiteURL, "site-url", "http://sites:8080/api/", "with --write: the site simulator's API URL as the services see it")
	c.Flags().StringVar(&w.DestinationURL, "destination-url", "http://destination:8080/api/", "with --write: the destination simulator's API URL")
	c.Flags().IntVar(&w.Replicas, "replicas", 1, "with --write: streams.replicas in the network file (3 for a JetStream cluster)")
	c.Flags().StringVar(&w.ReportsDir, "reports-dir", "", "with --write: reports folder in the network file")
	rootCmd.AddCommand(c)
}
