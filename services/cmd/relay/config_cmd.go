package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/redcap-relay/relay/services/internal/config"
)

func init() {
	cfg := &cobra.Command{Use: "config", Short: "work with the network file"}
	var path string
	validate := &cobra.Command{
		Use:   "validate",
		Short: "check the network file and list every mistake with its line",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			n, err := config.Load(path)
			var ce *config.Error
			if errors.As(err, &ce) {
				fmt.Fprintln(cmd.OutOrStdout(), ce.Error())
				return fmt.Errorf("%s is not valid", path)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s is valid: %d site(s), destination %s\n", path, len(n.Sites), n.Destination.URL)
			for _, s := range n.Sites {
				fmt.Fprintf(cmd.OutOrStdout(), "  %-16s %-10s %s (%s)  policy %s\n", s.ID, s.Namespace, s.Schedule, s.TimeZone, s.Policy)
			}
			return nil
		},
	}
	validate.Flags().StringVarP(&path, "network", "n", envOr("RELAY_NETWORK", "network.yaml"), "network file")
	cfg.AddCommand(validate)
	rootCmd.AddCommand(cfg)
}
