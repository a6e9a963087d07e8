package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/checker"
	"github.com/redcap-relay/relay/services/internal/protocol"
	"github.com/redcap-relay/relay/services/internal/protocol/report"
)

// checkExit carries relay check's exit status: 1 deviations, 2 not checked.
type checkExit struct {
	code int
	msg  string
}

func (e *checkExit) Error() string { return e.msg }
func (e *checkExit) ExitCode() int { return e.code }

func init() {
	var (
		network, protoFile, out, format string
		sites, dicts                    []string
		all, items                      bool
	)
	c := &cobra.Command{
		Use:   "check",
		Short: "Check sites against the protocol (core library) now; exit 0 conformant, 1 deviations, 2 could not check",
		Long: `Check sites against the protocol (core library) now, through each site's
REDCap API with its own token: data dictionary, instruments, events, arms,
form-event mapping, repeating setup and form completion status (no PHI).

  relay check -n network.yaml --all --out reports/          # JSON, CSV and index.html per site
  relay check -n network.yaml --site site-a --format json   # report on stdout
  relay check --dictionary site-a=site-a-dictionary.csv     # a dictionary file, offline

Exit status: 0 every site conforms, 1 a site deviates, 2 a site (or a
protocol entry) could not be checked.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var p *protocol.Protocol
			var err error
			var rs []*messages.ProtocolReport
			load := func(path string) error {
				if path == "" {
					p, err = protocol.HEALAdult()
				} else {
					p, err = protocol.Load(path)
				}
				if err != nil {
					return &checkExit{2, err.Error()}
				}
				return nil
			}
			if len(dicts) > 0 {
				if err := load(protoFile); err != nil {
					return err
				}
				files, order := map[string]string{}, []string{}
				for _, d := range dicts {
					site, path, ok := strings.Cut(d, "=")
					if !ok || site == "" || path == "" {
						return &checkExit{2, fmt.Sprintf("--dictionary %q: write SITE=FILE", d)}
					}
					files[site] = path
					order = append(order, site)
				}
				rs = checker.CheckFiles(p, files, order)
			} else {
				n, err := loadNetwork(network)
				if err != nil {
					return &checkExit{2, err.Error()}
				}
				if protoFile == "" {
					protoFile = n.Protocol
				}
				if err := load(protoFile); err != nil {
					return err
				}
				ids := sites
				if all {
					ids = n.SiteIDs()
				}
				if len(ids) == 0 {
					return &checkExit{2, "name the sites to check with --site ID (repeatable) or --all"}
				}
				ctx, cancel := commandContext(0)
				defer cancel()
				rs = checker.CheckSites(ctx, n, p, ids, checker.Options{Items: items})
				if out == "" && format == "" {
					out = n.ReportsDir
				}
			}
			if out != "" {
				if err := report.Write(out, rs...); err != nil {
					return &checkExit{2, err.Error()}
				}
			}
			if err := printReports(cmd.OutOrStdout(), format, rs, out); err != nil {
				return &checkExit{2, err.Error()}
			}
			if err := p.Err(); err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), err)
			}
			switch code := checker.ExitCode(p, rs); code {
			case 1:
				return &checkExit{1, "deviations from the protocol found"}
			case 2:
				return &checkExit{2, "some sites or protocol entries could not be checked"}
			}
			return nil
		},
	}
	c.Flags().StringVarP(&network, "network", "n", envOr("RELAY_NETWORK", "network.yaml"), "network file (env RELAY_NETWORK)")
	c.Flags().StringArrayVar(&sites, "site", nil, "site ID to check (repeatable)")
	c.Flags().BoolVar(&all, "all", false, "check every site of the network")
	c.Flags().StringVar(&out, "out", "", "reports folder for <site>.json, <site>.csv and index.html (default: the network's reports_dir)")
	c.Flags().StringVar(&format, "format", "", "also print the reports on stdout as json, csv or html (default: a summary table)")
	c.Flags().StringVar(&protoFile, "protocol", "", "protocol file (default: the network's protocol, else the built-in HEAL adult library)")
	c.Flags().StringArrayVar(&dicts, "dictionary", nil, "check a data dictionary CSV offline: SITE=FILE (repeatable; no network needed)")
	c.Flags().BoolVar(&items, "items", false, "also fetch item answers (never identifier-like fields) to report item missingness")
	rootCmd.AddCommand(c)
}

func printReports(w io.Writer, format string, rs []*messages.ProtocolReport, out string) error {
	switch format {
	case "json":
		if len(rs) == 1 {
			return report.JSON(w, rs[0])
		}
		for _, r := range rs {
			if err := report.JSON(w, r); err != nil {
				return err
			}
		}
		return nil
	case "csv":
		return report.CSV(w, rs...)
	case "html":
		return report.HTML(w, rs)
	case "", "text":
	default:
		return fmt.Errorf("--format %q: use json, csv or html", format)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SITE\tSTATUS\tSCORE\tERRORS\tWARNINGS\tNOTE")
	for _, r := range rs {
		score := "n/a"
		if r.Score != nil {
			score = fmt.Sprintf("%.1f", *r.Score)
		}
		note := r.Error
		if note == "" && len(r.Changes) > 0 {
			note = fmt.Sprintf("%d change(s) since the last check", len(r.Changes))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\n", r.Site, r.Status, score, r.Errors, r.Warnings, note)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if out != "" {
		fmt.Fprintf(w, "reports: %s\n", out)
	}
	return nil
}
