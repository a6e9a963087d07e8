package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/policy"
	"github.com/redcap-relay/relay/services/internal/protocol"
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
			// What a service would read: compose gives each its NATS user
			// and password file through the environment.
			applyNATSEnv(n)
			// The files the network file names must be valid too: a policy
			// or protocol mistake would otherwise surface only at the first run.
			out := cmd.OutOrStdout()
			var bad int
			for _, p := range n.CheckSecrets() {
				fmt.Fprintf(out, "%s: %s\n", p.Setting, p.Message)
				bad++
			}
			checked := map[string]bool{}
			for _, s := range n.Sites {
				if checked[s.Policy] {
					continue
				}
				checked[s.Policy] = true
				if _, err := policy.Load(s.Policy); err != nil {
					fmt.Fprintf(out, "policy of site %s: %v\n", s.ID, err)
					bad++
				}
			}
			if n.Protocol != "" {
				p, err := protocol.Load(n.Protocol)
				if err == nil {
					err = p.Err()
				}
				if err != nil {
					fmt.Fprintf(out, "protocol %s: %v\n", n.Protocol, err)
					bad++
				}
			}
			if bad > 0 {
				return fmt.Errorf("%s: %d problem(s) with the secrets and files it names", path, bad)
			}
			fmt.Fprintf(out, "%s is valid: %d site(s), destination %s\n", path, len(n.Sites), n.Destination.URL)
			for _, s := range n.Sites {
				fmt.Fprintf(out, "  %-16s %-10s %s (%s)  policy %s\n", s.ID, s.Namespace, s.Schedule, s.TimeZone, s.Policy)
			}
			return nil
		},
	}
	addNetworkFlag(validate.Flags(), &path)
	cfg.AddCommand(validate)
	rootCmd.AddCommand(cfg)
}
