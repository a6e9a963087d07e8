package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/redcap-relay/relay/services/internal/ops/dryrun"
)

func init() {
	var network, site, records string
	var asJSON, all, withFiles bool
	var timeout time.Duration
	c := &cobra.Command{
		Use:   "dry-run",
		Short: "export, transform and compare one site with the destination without importing anything",
		Long: `dry-run exports the site's records (only the fields its transfer policy approves),
applies the policy, exports the same records from the destination and compares.
It reports per record new/changed/unchanged (and refused or deleted), per field how
many values a sync would write, what the policy keeps at the site and why, and whether
the destination's data dictionary can take what the policy writes. It never prints
values and never writes to either REDCap.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if site == "" {
				return errors.New("give --site ID")
			}
			net, err := loadNetwork(network)
			if err != nil {
				return err
			}
			ctx, cancel := commandContext(timeout)
			defer cancel()
			// Progress logs only on trouble: the report is the output.
			o := dryrun.Options{Network: net, Site: site, Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
			o.Files = withFiles
			if records != "" {
				o.Records = strings.Split(records, ",")
			}
			rep, err := dryrun.Run(ctx, o)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				err = enc.Encode(rep)
			} else {
				err = rep.WriteText(cmd.OutOrStdout(), all)
			}
			if err == nil && len(rep.DestinationProblems) > 0 {
				// Exit 1: a real run of this site would stop.
				return exitWith(1, fmt.Errorf("site %s: the destination check failed with %d problem(s); a real run would stop", site, len(rep.DestinationProblems)))
			}
			return err
		},
	}
	addNetworkFlag(c.Flags(), &network)
	c.Flags().StringVar(&site, "site", "", "site ID")
	c.Flags().StringVar(&records, "records", "", "only these site record IDs (comma-separated)")
	c.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON")
	c.Flags().BoolVar(&all, "all", false, "list unchanged records too")
	c.Flags().BoolVar(&withFiles, "files", false, "download kept files (site and destination) to compare their SHA-256 and check the policy's type and size limits; nothing of them is kept")
	c.Flags().DurationVar(&timeout, "timeout", 30*time.Minute, "give up after this long")
	rootCmd.AddCommand(c)
}
