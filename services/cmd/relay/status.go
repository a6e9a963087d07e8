package main

import (
	"encoding/json"
	"time"

	"github.com/spf13/cobra"

	"github.com/redcap-relay/relay/services/internal/ops"
)

func init() {
	var f natsFlags
	c := &cobra.Command{
		Use:   "status",
		Short: "per site the last run and its records at each stage, consumer lag per stage, dead letters per stage and site",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := commandContext(2 * time.Minute)
			defer cancel()
			nc, js, net, err := f.connect(ctx)
			if err != nil {
				return err
			}
			defer nc.Close()
			st, err := ops.GetStatus(ctx, js, siteIDs(net))
			if err != nil {
				return err
			}
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
