package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/ops"
	"github.com/redcap-relay/relay/services/internal/pipeline/exportreq"
	"github.com/redcap-relay/relay/services/internal/pipeline/sitekit"
)

func init() {
	var f natsFlags
	var site, run, by, record string
	var noSync bool
	c := &cobra.Command{
		Use:   "deletions",
		Short: "held, pending and restorable deletions: list, approve, reject, restore",
		Long: `A record that disappears from a site is deleted at the destination only after a
direct export confirms it is gone and it stayed gone for the site's
deletion_delay (default: the next run). A run that would delete more than the
site's max_deletions_per_run (default 2%, at least 5), or whose token's access
changed, holds all its deletions until an operator decides:

  relay deletions list [--site ID]
  relay deletions approve --site ID --run RUN --by NAME   # delete them (those still gone) at the next run, now
  relay deletions reject  --site ID --run RUN --by NAME   # keep them at the destination
  relay deletions restore --site ID --record DEST_ID --by NAME

Before the importer deletes a record it keeps the record's destination rows
for streams.deleted_retention (default 30 days); restore puts them back unless
the record exists at the destination again. Every decision and restore is in
the audit stream with who made it.`,
	}
	f.addTo(c.PersistentFlags())
	c.PersistentFlags().BoolVar(&f.json, "json", false, "print JSON")
	c.PersistentFlags().StringVar(&site, "site", "", "site ID")

	list := &cobra.Command{
		Use:   "list",
		Short: "per site: pending deletions, held deletions (with the run to decide on), restorable records",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := commandContext(time.Minute)
			defer cancel()
			nc, js, net, err := f.connect(ctx)
			if err != nil {
				return err
			}
			defer nc.Close()
			if err := checkFilter(ctx, js, ops.DLQFilter{Site: site}, siteIDs(net)); err != nil {
				return err
			}
			ds, err := ops.ListDeletions(ctx, js, site)
			if err != nil {
				return err
			}
			if f.json {
				return printJSON(cmd, ds)
			}
			return ops.WriteDeletionsTable(cmd.OutOrStdout(), ds)
		},
	}
	decide := func(decision string) *cobra.Command {
		return &cobra.Command{
			Use:   decision + " --site ID --run RUN --by NAME",
			Short: decision + " a run's held deletions (recorded in the audit with --by)",
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, _ []string) error {
				if site == "" || run == "" {
					return fmt.Errorf("give --site and --run (the held run: see `relay deletions list`)")
				}
				ctx, cancel := commandContext(time.Minute)
				defer cancel()
				nc, js, _, err := f.connect(ctx)
				if err != nil {
					return err
				}
				defer nc.Close()
				d, err := ops.Decide(ctx, js, site, run, decision, by)
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: %d held deletion(s) of site %s, run %s, by %s\n", pastTense(decision), d.Records, site, run, d.By)
				if noSync {
					fmt.Fprintln(cmd.OutOrStdout(), "carried out at the site's next run")
					return nil
				}
				req := exportreq.New(site, time.Now(), false, exportreq.ReasonManual)
				if err := exportreq.Publish(ctx, js, req); err != nil {
					return fmt.Errorf("decision stored; the run that carries it out was not requested (run `relay sync --site %s`): %w", site, err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "carried out by run %s, requested now\n", req.RunID)
				return nil
			},
		}
	}
	approve, reject := decide(messages.DecisionApprove), decide(messages.DecisionReject)
	restore := &cobra.Command{
		Use:   "restore --site ID --record DEST_ID --by NAME",
		Short: "put a deleted record back at the destination from its kept rows (needs the destination token)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if site == "" || record == "" {
				return fmt.Errorf("give --site and --record (the destination record ID: see `relay deletions list`)")
			}
			if by == "" {
				return fmt.Errorf("say who restores (--by NAME): the audit records it")
			}
			ctx, cancel := commandContext(5 * time.Minute)
			defer cancel()
			nc, js, net, err := f.connect(ctx)
			if err != nil {
				return err
			}
			defer nc.Close()
			if net == nil {
				return fmt.Errorf("restore needs the network file (-n) for the destination and its token")
			}
			dest, err := sitekit.New(net, nil).Destination()
			if err != nil {
				return err
			}
			n, err := ops.Restore(ctx, js, dest, site, record, by)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "restored record %s of site %s at the destination (%d record)\n", record, site, n)
			return nil
		},
	}
	for _, s := range []*cobra.Command{approve, reject, restore} {
		s.Flags().StringVar(&by, "by", os.Getenv("USER"), "who decides (recorded in the audit; default $USER)")
	}
	for _, s := range []*cobra.Command{approve, reject} {
		s.Flags().StringVar(&run, "run", "", "the held run (see `relay deletions list`)")
		s.Flags().BoolVar(&noSync, "no-sync", false, "do not request a run now: the decision is carried out at the next scheduled run")
	}
	restore.Flags().StringVar(&record, "record", "", "the destination record ID")
	c.AddCommand(list, approve, reject, restore)
	rootCmd.AddCommand(c)
}

func pastTense(decision string) string {
	if decision == messages.DecisionApprove {
		return "approved"
	}
	return "rejected"
}
