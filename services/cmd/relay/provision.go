package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/redcap-relay/relay/services/internal/pipeline/app"
)

func init() {
	var f serviceFlags
	c := &cobra.Command{
		Use:   "provision",
		Short: "create or update every stream, consumer and bucket (run once with the admin NATS user; services then run with RELAY_PROVISION=false)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			net, err := loadNetwork(f.network)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			st, err := app.Start(ctx, app.Options{Network: net, Logger: f.logger()})
			if err != nil {
				return err
			}
			defer st.Close()
			fmt.Fprintf(cmd.OutOrStdout(), "provisioned streams, consumers and buckets on %s\n", st.URL)
			return nil
		},
	}
	f.add(c)
	rootCmd.AddCommand(c)
}
