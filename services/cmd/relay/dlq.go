package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/redcap-relay/relay/services/internal/ops"
	"github.com/redcap-relay/relay/services/internal/pipeline/topology"
)

func init() {
	var f natsFlags
	var filter ops.DLQFilter
	var limit int
	var showValues, all bool
	dlq := &cobra.Command{
		Use:   "dlq",
		Short: "list, show, retry and purge dead letters (values redacted unless --show-values)",
	}
	withConn := func(run func(ctx context.Context, cmd *cobra.Command, args []string, c *conn) error) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, args []string) error {
			ctx, cancel := commandContext(10 * time.Minute)
			defer cancel()
			nc, js, net, err := f.connect(ctx)
			if err != nil {
				return err
			}
			defer nc.Close()
			if err := checkFilter(ctx, js, filter, siteIDs(net)); err != nil {
				return err
			}
			return run(ctx, cmd, args, &conn{js: js})
		}
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "list dead letters (oldest first): sequence, stage, site, run, record, error",
		Args:  cobra.NoArgs,
		RunE: withConn(func(ctx context.Context, cmd *cobra.Command, _ []string, c *conn) error {
			es, err := ops.ListDLQ(ctx, c.js, filter, limit)
			if err != nil {
				return err
			}
			if f.json {
				if es == nil {
					es = []ops.DeadLetterEntry{} // [] rather than null for an empty DLQ
				}
				for i := range es {
					es[i].Letter = es[i].Redacted()
					es[i].Letter.Payload = nil
				}
				return printJSON(cmd, es)
			}
			if len(es) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "no dead letters")
				return nil
			}
			return ops.WriteDLQTable(cmd.OutOrStdout(), es)
		}),
	}
	show := &cobra.Command{
		Use:   "show SEQ",
		Short: "print one dead letter; the payload's values are redacted unless --show-values",
		Args:  cobra.ExactArgs(1),
		RunE: withConn(func(ctx context.Context, cmd *cobra.Command, args []string, c *conn) error {
			seq, err := parseSeq(args[0])
			if err != nil {
				return err
			}
			e, err := ops.GetDLQ(ctx, c.js, seq)
			if err != nil {
				return err
			}
			if !showValues {
				e.Letter = e.Redacted()
			}
			return printJSON(cmd, e)
		}),
	}
	show.Flags().BoolVar(&showValues, "show-values", false, "print field values (PHI for raw records): only where you may see them")
	retry := &cobra.Command{
		Use:   "retry SEQ... | --all [--stage S] [--site ID]",
		Short: "republish dead letters to their original subject with a new message ID, then remove them",
		RunE: withConn(func(ctx context.Context, cmd *cobra.Command, args []string, c *conn) error {
			seqs, err := selectSeqs(ctx, c, args, all, filter)
			if err != nil {
				return err
			}
			ok := 0
			var first error
			for _, s := range seqs {
				subj, err := ops.RetryDLQ(ctx, c.js, s)
				if err != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "dead letter %d: %v\n", s, err)
					if first == nil {
						first = err
					}
					continue
				}
				ok++
				fmt.Fprintf(cmd.OutOrStdout(), "dead letter %d republished to %s\n", s, subj)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d of %d dead letter(s) retried\n", ok, len(seqs))
			if first != nil {
				return fmt.Errorf("%d dead letter(s) not retried", len(seqs)-ok)
			}
			return nil
		}),
	}
	purge := &cobra.Command{
		Use:   "purge SEQ... | --all | --stage S | --site ID",
		Short: "remove dead letters for good",
		RunE: withConn(func(ctx context.Context, cmd *cobra.Command, args []string, c *conn) error {
			if len(args) > 0 {
				seqs := make([]uint64, 0, len(args))
				for _, a := range args {
					s, err := parseSeq(a)
					if err != nil {
						return err
					}
					seqs = append(seqs, s)
				}
				n, err := ops.DeleteDLQ(ctx, c.js, seqs...)
				fmt.Fprintf(cmd.OutOrStdout(), "%d dead letter(s) removed\n", n)
				return err
			}
			if !all && filter.Stage == "" && filter.Site == "" {
				return fmt.Errorf("say what to purge: sequence numbers, --stage, --site, or --all")
			}
			n, err := ops.PurgeDLQ(ctx, c.js, filter)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d dead letter(s) removed (%s)\n", n, filter.Subject())
			return nil
		}),
	}
	for _, c := range []*cobra.Command{list, retry, purge} {
		c.Flags().StringVar(&filter.Stage, "stage", "", "only this stage (export, transform, import, check)")
		c.Flags().StringVar(&filter.Site, "site", "", "only this site")
	}
	list.Flags().IntVar(&limit, "limit", 0, "at most this many (0: all)")
	retry.Flags().BoolVar(&all, "all", false, "every dead letter matching --stage/--site")
	purge.Flags().BoolVar(&all, "all", false, "every dead letter")
	f.addTo(dlq.PersistentFlags())
	dlq.PersistentFlags().BoolVar(&f.json, "json", false, "print JSON")
	dlq.AddCommand(list, show, retry, purge)
	rootCmd.AddCommand(dlq)
}

type conn struct{ js jetstream.JetStream }

func parseSeq(s string) (uint64, error) {
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%q is not a dead-letter sequence number (see `relay dlq list`)", s)
	}
	return n, nil
}

func selectSeqs(ctx context.Context, c *conn, args []string, all bool, filter ops.DLQFilter) ([]uint64, error) {
	if len(args) > 0 {
		var seqs []uint64
		for _, a := range args {
			s, err := parseSeq(a)
			if err != nil {
				return nil, err
			}
			seqs = append(seqs, s)
		}
		return seqs, nil
	}
	if !all {
		return nil, fmt.Errorf("give dead-letter sequence numbers, or --all (with --stage/--site to narrow it)")
	}
	es, err := ops.ListDLQ(ctx, c.js, filter, 0)
	if err != nil {
		return nil, err
	}
	seqs := make([]uint64, len(es))
	for i, e := range es {
		seqs[i] = e.Seq
	}
	return seqs, nil
}

func printJSON(cmd *cobra.Command, v any) error {
	enc := json.NewEncoder(cmd.OutOrStdout())
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// checkFilter refuses a --stage or --site that names nothing, listing the
// valid ones: a typo must not look like an empty dead-letter queue.
func checkFilter(ctx context.Context, js jetstream.JetStream, f ops.DLQFilter, sites []string) error {
	if f.Stage != "" {
		if _, ok := topology.StageNamed(f.Stage); !ok {
			return fmt.Errorf("unknown --stage %q (stages: %s)", f.Stage, strings.Join(topology.StageNames(), ", "))
		}
	}
	if f.Site == "" {
		return nil
	}
	known := sites
	if len(known) == 0 {
		var err error
		if known, err = ops.KnownSites(ctx, js); err != nil {
			return err
		}
	}
	if !contains(known, f.Site) {
		return fmt.Errorf("unknown --site %q (sites: %s)", f.Site, strings.Join(known, ", "))
	}
	return nil
}
