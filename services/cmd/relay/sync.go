package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/redcap-relay/relay/services/internal/pipeline/app"
	"github.com/redcap-relay/relay/services/internal/pipeline/exportreq"
)

func init() {
	var f serviceFlags
	var site string
	var full, allSites bool
	c := &cobra.Command{
		Use:   "sync",
		Short: "request an export of a site now (the schedule is not affected)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			net, err := loadNetwork(f.network)
			if err != nil {
				return err
			}
			sites := []string{site}
			if allSites {
				sites = net.SiteIDs()
			} else if site == "" {
				return fmt.Errorf("give --site ID or --all (sites: %v)", net.SiteIDs())
			} else if _, ok := net.Site(site); !ok {
				return fmt.Errorf("unknown site %q (sites in %s: %v)", site, f.network, net.SiteIDs())
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			st, err := app.Start(ctx, app.Options{Network: net, Logger: f.logger()})
			if err != nil {
				return err
			}
			defer st.Close()
			now := time.Now()
			for _, s := range sites {
				req := exportreq.New(s, now, full, "manual")
				if err := exportreq.Publish(ctx, st.JS, req); err != nil {
					return fmt.Errorf("site %s: %w", s, err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "export requested: site %s, run %s (full=%v)\n", s, req.RunID, full)
			}
			return nil
		},
	}
	f.add(c)
	c.Flags().StringVar(&site, "site", "", "site ID")
	c.Flags().BoolVar(&allSites, "all", false, "every site")
	c.Flags().BoolVar(&full, "full", false, "export and republish every record, not just the changed ones")
	rootCmd.AddCommand(c)
}
