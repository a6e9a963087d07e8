package main

import (
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/redcap-relay/relay/services/internal/heal"
	"github.com/redcap-relay/relay/services/internal/protocol"
)

// validationFailed is relay export heal --validate's exit: the package was
// written but breaks HEAL's schemas (exit 1, every violation listed).
type validationFailed struct{ n int }

func (e *validationFailed) Error() string {
	return fmt.Sprintf("the package does not validate: %d violation(s) listed above", e.n)
}

func init() {
	export := &cobra.Command{
		Use:   "export",
		Short: "export the network's data for a data repository (heal: a HEAL Data Platform submission package)",
	}
	var (
		network, out, title, protoFile string
		sites                          []string
		validate                       bool
		batch                          int
	)
	c := &cobra.Command{
		Use:   "heal",
		Short: "write a HEAL Data Platform submission package from the destination: VLMD dictionary, data, CDE checklist, README, manifest",
		Long: `Write a HEAL submission package into a new or empty folder:

  vlmd/data-dictionary.json, vlmd/data-dictionary.csv   HEAL VLMD data dictionary (schema 0.3.2)
  data/<study>.csv                                      the destination's de-identified records
  cde-checklist.csv                                     core CDE instruments used / substituted / not used
  README.md, manifest.csv                               what it holds, sizes and MD5 checksums

It reads the destination with destination.export_token (a read-only token
is enough; default destination.token) and each site's dictionary with the
site's token, to know what its transfer policy releases: only those fields
(and each record only its own site's) are in the package.

  relay export heal -n network.yaml --out heal-package/ --validate
  relay export heal -n network.yaml --out p/ --site site-a --site site-b --study-title "My study"

With --validate the package is checked against HEAL's bundled schemas
(JSON and CSV template) and the command exits 1 listing every violation.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			n, err := loadNetwork(network)
			if err != nil {
				return err
			}
			if protoFile == "" {
				protoFile = n.Protocol
			}
			var p *protocol.Protocol
			if protoFile == "" {
				p, err = protocol.HEALAdult()
			} else {
				p, err = protocol.Load(protoFile)
			}
			if err != nil {
				return err
			}
			if err := p.Err(); err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), "warning:", err)
			}
			ctx, cancel := commandContext(0)
			defer cancel()
			res, err := heal.Export(ctx, heal.Options{
				Network: n, Protocol: p, Out: out, Sites: sites, StudyTitle: title, Validate: validate, BatchSize: batch,
				Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
			})
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "HEAL package written to %s\n  %d records, %d rows, %d variables\n", res.Dir, res.Records, res.Rows, res.Fields)
			for _, f := range res.Files {
				fmt.Fprintf(w, "  %-28s %10d bytes  md5 %s\n", f.File, f.Bytes, f.MD5)
			}
			for _, r := range res.Checklist {
				fmt.Fprintf(w, "  CDE %-16s %s\n", r.Instrument, r.Status)
			}
			for _, warn := range res.Warnings {
				fmt.Fprintln(cmd.ErrOrStderr(), "warning:", warn)
			}
			if res.Validated {
				if len(res.Violations) > 0 {
					fmt.Fprintf(cmd.ErrOrStderr(), "validation against HEAL's schemas failed:\n  - %s\n", strings.Join(res.Violations, "\n  - "))
					return &validationFailed{len(res.Violations)}
				}
				fmt.Fprintln(w, "validated: the dictionaries pass HEAL's VLMD schemas, the data matches the dictionary, the checksums match the manifest")
			}
			return nil
		},
	}
	addNetworkFlag(c.Flags(), &network)
	c.Flags().StringVar(&out, "out", "", "folder for the package (new or empty)")
	c.Flags().StringArrayVar(&sites, "site", nil, "export only this site (repeatable; default every site)")
	c.Flags().StringVar(&title, "study-title", "", "study title (default: the destination project's title)")
	c.Flags().BoolVar(&validate, "validate", false, "validate the package against HEAL's schemas; exit 1 listing every violation")
	c.Flags().StringVar(&protoFile, "protocol", "", "protocol file (default: the network's protocol, else the built-in HEAL adult library)")
	c.Flags().IntVar(&batch, "batch-size", 1000, "records per Export Records call to the destination")
	_ = c.MarkFlagRequired("out")
	export.AddCommand(c)
	rootCmd.AddCommand(export)
}
