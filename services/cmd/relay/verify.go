package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/redcap-relay/relay/services/internal/pipeline/sitekit"
	"github.com/redcap-relay/relay/services/verifier"
)

func init() {
	var f natsFlags
	var site string
	var all, repair, noFiles bool
	var timeout, repairTimeout time.Duration
	c := &cobra.Command{
		Use:   "verify -n network.yaml --site ID | --all [--json] [--repair]",
		Short: "prove the destination equals the sites: compare every record (and file), optionally repair what differs",
		Long: `relay verify exports each site's approved fields (batched, rate-limited and
retried like the exporter), applies the site's policy exactly as the transformer
does, reads the destination's records of the site's namespace and compares them
record by record on a content hash of the transformed rows (event and repeat
instance included), and kept files by SHA-256. It reports per site the records
equal, missing at the destination, stale (which fields differ), extra (at the
destination, no longer at the site) and refused by the policy. It never prints
a value. Each site's result is published on AUDIT (relay.verify.<site>), where
relay status shows it.

--repair publishes exactly the differing records into the pipeline as runs of
their own (deleting extras where the site's propagate_deletions allows), waits
for the pipeline to drain, and verifies again. The pipeline must be running.

Exit status: 0 every site equal, 1 differences, 2 a site or the destination
could not be verified (the other sites are still verified).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if (site == "") == !all {
				return exitWith(verifier.ExitError, errors.New("give --site ID or --all"))
			}
			net, err := loadNetwork(f.network)
			if err != nil {
				return exitWith(verifier.ExitError, err)
			}
			sites := net.SiteIDs()
			if site != "" {
				if _, ok := net.Site(site); !ok {
					return exitWith(verifier.ExitError, fmt.Errorf("unknown site %q: it is not in %s (sites: %s)", site, net.Path(), strings.Join(sites, ", ")))
				}
				sites = []string{site}
			}
			ctx, cancel := commandContext(timeout)
			defer cancel()
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
			var js jetstream.JetStream
			nc, js2, _, err := f.connect(ctx)
			switch {
			case err != nil && repair:
				return exitWith(verifier.ExitError, fmt.Errorf("--repair publishes into the pipeline: %w", err))
			case err != nil:
				fmt.Fprintf(cmd.ErrOrStderr(), "relay verify: results are not published on AUDIT (no NATS: %v)\n", err)
			default:
				defer nc.Close()
				js = js2
			}
			rep := verifier.Run(ctx, verifier.Options{Kit: sitekit.New(net, log), JS: js, Sites: sites, Repair: repair,
				RepairTimeout: repairTimeout, SkipFiles: noFiles, Logger: log})
			if f.json {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				if err := enc.Encode(rep); err != nil {
					return err
				}
			} else {
				printVerify(cmd.OutOrStdout(), rep)
			}
			switch code := rep.ExitCode(); code {
			case verifier.ExitEqual:
				return nil
			case verifier.ExitDifferences:
				return exitWith(code, errors.New("the destination differs from the sites"+repairHint(repair)))
			default:
				return exitWith(code, errors.New("some sites could not be verified"))
			}
		},
	}
	f.add(c)
	f.addJSON(c)
	c.Flags().StringVar(&site, "site", "", "verify this site")
	c.Flags().BoolVar(&all, "all", false, "verify every site of the network file")
	c.Flags().BoolVar(&repair, "repair", false, "publish the differing records as runs of their own, wait for the pipeline, verify again")
	c.Flags().BoolVar(&noFiles, "no-file-hashes", false, "do not download kept files to compare their SHA-256 (only whether each is present)")
	c.Flags().DurationVar(&timeout, "timeout", 6*time.Hour, "give up after this long")
	c.Flags().DurationVar(&repairTimeout, "repair-timeout", 30*time.Minute, "how long a site's repair may wait for the pipeline")
	rootCmd.AddCommand(c)
}

func repairHint(repair bool) string {
	if repair {
		return " after the repair"
	}
	return ": run again with --repair to repair it"
}

// printVerify writes one block per site: counts, fields, never values.
func printVerify(w io.Writer, rep *verifier.Report) {
	for _, r := range rep.Sites {
		fmt.Fprintf(w, "%s: %s", r.Site, r.Status)
		if r.Error != "" {
			fmt.Fprintf(w, ": %s\n", r.Error)
			continue
		}
		c := r.Counts
		fmt.Fprintf(w, " (%d records: %d equal, %d missing, %d stale, %d extra, %d refused by the policy", c.Records, c.Equal, c.Missing, c.Stale, c.Extra, c.Refused)
		if c.ExtraKept > 0 {
			fmt.Fprintf(w, "; %d kept at the destination without propagate_deletions", c.ExtraKept)
		}
		fmt.Fprintf(w, "; files %d compared, %d differ, %d missing, %d extra)\n", r.Files.Compared, r.Files.Differ, r.Files.Missing, r.Files.Extra)
		if r.Policy.Changed {
			fmt.Fprintf(w, "  the destination reflects an older policy version (%s, now %s): %d stale record(s) may differ because of it\n",
				r.Policy.Destination, r.Policy.Current, r.Policy.StaleByPolicy)
		}
		if len(r.Fields) > 0 {
			names := make([]string, 0, len(r.Fields))
			for k := range r.Fields {
				names = append(names, k)
			}
			sort.Strings(names)
			for _, k := range names {
				fmt.Fprintf(w, "  field %s: %d record(s) differ\n", k, r.Fields[k])
			}
		}
		for _, l := range []struct {
			what string
			ids  []string
		}{{"missing", r.Missing}, {"stale", r.Stale}, {"extra", r.Extra}, {"refused", r.Refused}} {
			if len(l.ids) > 0 {
				fmt.Fprintf(w, "  %s: %s\n", l.what, strings.Join(first(l.ids, 20), ", "))
			}
		}
		if r.Repair != nil {
			fmt.Fprintf(w, "  repair: %d record(s) exported again, %d deletion(s), runs %s", r.Repair.Records, r.Repair.Deletes, strings.Join(r.Repair.Runs, ", "))
			if r.Repair.Error != "" {
				fmt.Fprintf(w, "; %s", r.Repair.Error)
			}
			fmt.Fprintln(w)
		}
	}
}

func first(ids []string, n int) []string {
	if len(ids) > n {
		return append(append([]string(nil), ids[:n]...), fmt.Sprintf("... %d more", len(ids)-n))
	}
	return ids
}
