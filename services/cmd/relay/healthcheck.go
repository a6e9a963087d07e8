package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/redcap-relay/relay/services/internal/ops"
)

func init() {
	var url string
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "healthcheck",
		Short: "exit 0 when a service answers its readiness URL (the container healthcheck: scratch images have no shell)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := ops.Healthcheck(cmd.Context(), url, timeout); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "ok")
			return nil
		},
	}
	c.Flags().StringVar(&url, "url", envOr("RELAY_HEALTHCHECK_URL", "http://127.0.0.1:9090/readyz"), "URL to ask (env RELAY_HEALTHCHECK_URL)")
	c.Flags().DurationVar(&timeout, "timeout", 3*time.Second, "give up after this long")
	rootCmd.AddCommand(c)
}
