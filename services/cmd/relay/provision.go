package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/pipeline/broker"
)

func init() {
	var f natsFlags
	c := &cobra.Command{
		Use:   "provision",
		Short: "create or update every stream, consumer and bucket (run once with the admin NATS user; services then run with RELAY_PROVISION=false)",
		Long: `relay provision creates every stream, consumer and bucket of the pipeline, or
updates their settings (retention, limits, ack waits) to what the network file
says, keeping every message, cursor and a replay's start point. Run it with
the admin NATS user after an upgrade or a change of the streams section.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := commandContext(2 * time.Minute)
			defer cancel()
			nc, js, net, err := f.connect(ctx)
			if err != nil {
				return err
			}
			defer nc.Close()
			streams := config.DefaultStreams()
			if net != nil {
				streams = net.Streams
			}
			if err := broker.Provision(ctx, js, streams); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "provisioned streams, consumers and buckets on %s\n", nc.ConnectedUrlRedacted())
			return nil
		},
	}
	f.add(c)
	rootCmd.AddCommand(c)
}
