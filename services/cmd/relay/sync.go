package main

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/redcap-relay/relay/services/internal/ops"
	"github.com/redcap-relay/relay/services/internal/pipeline/exportreq"
	"github.com/redcap-relay/relay/services/internal/progress"
)

func init() {
	var f natsFlags
	var site string
	var full, allSites, wait bool
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "sync (--site ID | --all) [--full] [--wait]",
		Short: "request an export of a site now (the schedule is not affected); --wait shows its progress until it is imported",
		Long: `relay sync requests a run of the site(s) now. With --wait it shows, per site,
the records exported, cleaned and imported with the rate and the time left
(redrawn in place on a terminal, a line every few seconds otherwise) until
every run is imported, then exits 0; it exits 1 naming the reason when a run
failed or some of its records were dead-lettered.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			limit := time.Minute
			if wait {
				limit = timeout
			}
			ctx, cancel := commandContext(limit)
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
			runs := map[string]string{}
			for _, s := range sites {
				req := exportreq.New(s, now, full, exportreq.ReasonManual)
				if err := exportreq.Publish(ctx, js, req); err != nil {
					return fmt.Errorf("site %s: %w", s, err)
				}
				runs[s] = req.RunID
				fmt.Fprintf(cmd.OutOrStdout(), "export requested: site %s, run %s (full=%v)\n", s, req.RunID, full)
			}
			if !wait {
				return nil
			}
			done, err := progress.Wait(ctx, js, progress.Options{Out: cmd.OutOrStdout(), Runs: runs, Network: net})
			if err != nil {
				return exitWith(1, err)
			}
			return syncResult(done)
		},
	}
	f.add(c)
	c.Flags().StringVar(&site, "site", "", "site ID")
	c.Flags().BoolVar(&allSites, "all", false, "every site of the network file")
	c.Flags().BoolVar(&full, "full", false, "export and republish every record, not just the changed ones")
	c.Flags().BoolVar(&wait, "wait", false, "show the runs' progress and wait until they are imported (exit 1 if one failed or dead-lettered records)")
	c.Flags().DurationVar(&timeout, "timeout", 6*time.Hour, "with --wait: give up after this long")
	rootCmd.AddCommand(c)
}

// syncResult is nil when every run was imported whole, else an exit status
// of 1 naming each site's reason.
func syncResult(sites []*progress.Site) error {
	var bad []string
	for _, s := range sites {
		switch s.Status.Outcome {
		case ops.ResultFailed:
			bad = append(bad, fmt.Sprintf("site %s: run %s failed: %s", s.Site, s.Run, s.Status.Reason))
		case ops.ResultPartial:
			bad = append(bad, fmt.Sprintf("site %s: run %s: %s (relay dlq list --site %s)", s.Site, s.Run, s.Status.Reason, s.Site))
		}
	}
	if len(bad) > 0 {
		return exitWith(1, errors.New(strings.Join(bad, "\n")))
	}
	return nil
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
