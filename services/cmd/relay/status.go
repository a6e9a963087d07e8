package main

import (
	"encoding/json"
	"time"

	"github.com/spf13/cobra"

	"github.com/redcap-relay/relay/services/internal/notify"
	"github.com/redcap-relay/relay/services/internal/ops"
)

func init() {
	var f natsFlags
	c := &cobra.Command{
		Use:   "status",
		Short: "per site the last run (result, records at each stage that add up, why it failed), the next run, the last success, the protocol score; then lag, dead letters and why a stage is stuck",
		Long: `relay status reads the pipeline's state from NATS: per site the last run
(when, how long, result: synced, importing, partial, failed, retrying,
deletions held, running) with its distinct records exported, cleaned,
imported, dead-lettered and waiting (replays and dead-letter retries on a
line of their own), the next scheduled run (from the network file), the last
success, the last verification and the protocol score; then every stage's
lag and why a backlog does not move; then the notifier's delivery state when
one runs. --json prints the same as JSON (schema in the README).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := commandContext(2 * time.Minute)
			defer cancel()
			nc, js, net, err := f.connect(ctx)
			if err != nil {
				return err
			}
			defer nc.Close()
			st, err := ops.Collect(ctx, js, ops.StatusOptions{Network: net})
			if err != nil {
				return err
			}
			st.Notifier = notify.Ask(ctx, nc)
			if f.json {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				return enc.Encode(st)
			}
			return st.WriteTable(cmd.OutOrStdout())
		},
	}
	f.add(c)
	f.addJSON(c)
	rootCmd.AddCommand(c)
}
