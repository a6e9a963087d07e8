package main

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/redcap-relay/relay/services/internal/pipeline/exportreq"
)

func init() {
	var f natsFlags
	var site string
	var full, allSites bool
	c := &cobra.Command{
		Use:   "sync (--site ID | --all) [--full]",
		Short: "request an export of a site now (the schedule is not affected)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := commandContext(time.Minute)
			defer cancel()
			nc, js, net, err := f.connect(ctx)
			if err != nil {
				return err
			}
			defer nc.Close()
			sites, err := chooseSites(site, allSites, siteIDs(net), f.network)
			if err != nil {
				return err
			}
			now := time.Now()
			for _, s := range sites {
				req := exportreq.New(s, now, full, exportreq.ReasonManual)
				if err := exportreq.Publish(ctx, js, req); err != nil {
					return fmt.Errorf("site %s: %w", s, err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "export requested: site %s, run %s (full=%v)\n", s, req.RunID, full)
			}
			return nil
		},
	}
	f.add(c)
	c.Flags().StringVar(&site, "site", "", "site ID")
	c.Flags().BoolVar(&allSites, "all", false, "every site of the network file")
	c.Flags().BoolVar(&full, "full", false, "export and republish every record, not just the changed ones")
	rootCmd.AddCommand(c)
}

// chooseSites checks a --site/--all choice against the network's sites.
func chooseSites(site string, all bool, known []string, network string) ([]string, error) {
	switch {
	case all && len(known) == 0:
		return nil, fmt.Errorf("--all needs the network file (-n %s) to list the sites", network)
	case all:
		return known, nil
	case site == "":
		return nil, fmt.Errorf("give --site ID or --all (sites: %v)", known)
	case len(known) > 0 && !contains(known, site):
		return nil, fmt.Errorf("unknown site %q (sites in %s: %v)", site, network, known)
	}
	return []string{site}, nil
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}
