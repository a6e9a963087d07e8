package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/tools/bench"
)

// `relay bench` (hidden; scripts/bench.sh runs it) measures the pipeline
// against the original tool's approach and the machine's ceilings.
func init() {
	var o bench.Options
	var inProcess, latency bool
	var records int
	c := &cobra.Command{
		Use:    "bench",
		Short:  "benchmark relay all against the one-call-per-site baseline and the machine's ceilings",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := commandContext(0)
			defer cancel()
			if !inProcess {
				exe, err := os.Executable()
				if err != nil {
					return err
				}
				o.Exe = exe
			}
			if records > 0 {
				name := fmt.Sprintf("3x%d", records)
				o.Scales = []bench.Scale{{Name: name, Sites: 3, Records: records}}
				if latency {
					o.Latency = []string{name}
				}
			}
			o.Out = cmd.OutOrStdout()
			_, err := bench.Run(ctx, o)
			return err
		},
	}
	c.Flags().BoolVar(&o.Quick, "quick", false, "3 sites x 2,000 records, both regimes (well under a minute)")
	c.Flags().StringVar(&o.JSON, "json", "bench-results.json", "write the results as JSON here (empty: do not)")
	c.Flags().StringVar(&o.Dir, "dir", "", "work folder (default: a temporary folder, removed afterwards)")
	c.Flags().BoolVar(&o.Keep, "keep", false, "keep the work folder (network files, relay logs)")
	c.Flags().BoolVar(&inProcess, "in-process", false, "run relay and the baseline in this process (no peak RSS figures)")

	c.Flags().IntVar(&records, "records", 0, "one scale only: 3 sites with this many records each")
	c.Flags().BoolVar(&latency, "latency", true, "with --records: also run the REDCap-like latency regime")
	c.Flags().StringVar(&o.SyncInterval, "sync-interval", "", "the embedded server's nats.sync_interval: a duration or \"always\" (default: 2m)")
	c.Flags().IntVar(&o.Parallel, "parallel", 0, "messages the transformer handles at once (default: relay all's default)")

	var network string
	baseline := &cobra.Command{
		Use:   "baseline",
		Short: "one baseline sync of every site in the network file; prints the result as JSON",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := commandContext(0)
			defer cancel()
			net, err := config.Load(network)
			if err != nil {
				return err
			}
			res, err := bench.Baseline(ctx, net)
			if err != nil {
				return err
			}
			res.PeakRSS, _ = bench.SelfUsage()
			return json.NewEncoder(cmd.OutOrStdout()).Encode(res)
		},
	}
	addNetworkFlag(baseline.Flags(), &network)
	c.AddCommand(baseline)
	rootCmd.AddCommand(c)
}
