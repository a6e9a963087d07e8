package main

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/redcap-relay/relay/services/internal/ops"
)

func init() {
	var f natsFlags
	var o ops.ReplayOptions
	var since string
	c := &cobra.Command{
		Use:   "replay --stage import|transform (--since TIME | --from-seq N) [--site ID]",
		Short: "deliver records again from the stream: after a destination restore (import) or a policy fix (transform)",
		Long: `relay replay delivers a stage's messages again from a start point.

  --stage import     RECORDS_CLEAN to the importer: the destination receives the
                     cleaned records again (a restore from an old backup, an outage
                     that lost writes). Older versions of a record are skipped,
                     the newest is written again.
  --stage transform  RECORDS_RAW to the transformers: records are transformed
                     again (a policy fixed after a run). Unchanged results are
                     deduplicated within the stream's dedupe window.

Without --site, the stage's durable consumer is recreated at the start point:
every site's messages since then are delivered again (safe: imports are
idempotent, but the other sites' records are re-imported too).
With --site, the consumer is left alone and only that site's messages in the
window are copied back onto the stream with new message IDs; the copies take
space in the stream until its retention removes them. An interrupted one-site
replay can be finished by running it again with the same --tag.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if since != "" {
				t, err := ops.ParseSince(since, time.Now())
				if err != nil {
					return err
				}
				o.Since = t
			}
			if o.Since.IsZero() == (o.FromSeq == 0) {
				return fmt.Errorf("give exactly one start point: --since TIME or --from-seq N")
			}
			ctx, cancel := commandContext(30 * time.Minute)
			defer cancel()
			nc, js, net, err := f.connect(ctx)
			if err != nil {
				return err
			}
			defer nc.Close()
			if net != nil {
				o.Streams = net.Streams
			}
			if err := checkFilter(ctx, js, ops.DLQFilter{Site: o.Site}, siteIDs(net)); err != nil {
				return err
			}
			res, err := ops.Replay(ctx, js, o)
			if res != nil && f.json {
				enc := json.NewEncoder(cmd.OutOrStdout())
				enc.SetIndent("", "  ")
				enc.Encode(res)
			} else if res != nil {
				printReplay(cmd, res, o)
			}
			return err
		},
	}
	f.add(c)
	f.addJSON(c)
	c.Flags().StringVar(&o.Stage, "stage", "", "import or transform")
	c.Flags().StringVar(&o.Site, "site", "", "only this site (copies its messages back onto the stream; default: every site, by resetting the consumer)")
	c.Flags().StringVar(&since, "since", "", "start time: RFC 3339, a date (2026-05-01), or a duration ago (6h, 7d)")
	c.Flags().Uint64Var(&o.FromSeq, "from-seq", 0, "start at this stream sequence (1 = everything the stream still holds)")
	c.Flags().BoolVar(&o.DryRun, "dry-run", false, "count what would be replayed; change nothing")
	c.Flags().StringVar(&o.Tag, "tag", "", "message-ID tag of a one-site replay (default: the current minute); reuse it to finish an interrupted replay")
	c.MarkFlagRequired("stage")
	rootCmd.AddCommand(c)
}

func printReplay(cmd *cobra.Command, r *ops.ReplayResult, o ops.ReplayOptions) {
	w := cmd.OutOrStdout()
	from := fmt.Sprintf("sequence %d", o.FromSeq)
	if !o.Since.IsZero() {
		from = o.Since.UTC().Format(time.RFC3339)
	}
	who := "every site"
	if r.Site != "" {
		who = "site " + r.Site
	}
	verb := ""
	if r.DryRun {
		verb = "dry run: "
	}
	fmt.Fprintf(w, "%sreplay of stage %s (%s) for %s from %s: %d message(s) in the window\n", verb, r.Stage, r.Stream, who, from, r.Matched)
	switch {
	case r.DryRun && r.Mode == ops.ModeReset:
		fmt.Fprintf(w, "would recreate consumer %s at the start point; every site's messages since then would be delivered again\n", r.Consumer)
	case r.DryRun:
		fmt.Fprintf(w, "would copy the site's messages back onto %s with new message IDs; consumer %s stays as it is\n", r.Stream, r.Consumer)
	case r.Mode == ops.ModeReset:
		fmt.Fprintf(w, "consumer %s recreated at the start point: %d message(s) now pending for the running %ss\n", r.Consumer, r.Pending, stageService(r.Stage))
	default:
		fmt.Fprintf(w, "%d message(s) copied back onto %s for the running %ss (consumer %s untouched)\n", r.Republished, r.Stream, stageService(r.Stage), r.Consumer)
	}
}

func stageService(stage string) string {
	if stage == "transform" {
		return "transformer"
	}
	return "importer"
}
