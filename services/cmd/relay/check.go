package main

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/checker"
	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/policy"
	"github.com/redcap-relay/relay/services/internal/protocol"
	"github.com/redcap-relay/relay/services/internal/protocol/report"
)

func init() {
	var (
		network, protoFile, out, format        string
		sites, dicts, arms, events, maps, reps []string
		all, items, suggest                    bool
	)
	c := &cobra.Command{
		Use:   "check",
		Short: "Check sites against the protocol (core library) now; exit 0 conformant, 1 deviations, 2 could not check",
		Long: `Check sites against the protocol (core library) now, through each site's
REDCap API with its own token: data dictionary, instruments, events, arms,
form-event mapping, repeating setup and form completion status (no PHI).

  relay check -n network.yaml --all --out reports/          # JSON, CSV and HTML per site, index.html
  relay check -n network.yaml --site site-a --format json   # report on stdout
  relay check -n network.yaml --site site-a --suggest-policy # rename/recode rules for the site's policy
  relay check --dictionary site-a=site-a-dictionary.csv     # a dictionary file, offline
  relay check --dictionary site-a=dict.csv --events site-a=events.csv --mapping site-a=designation.csv
  relay check --dictionary site-a=SiteA.REDCap.xml          # a project XML: events included

Offline, a dictionary is a data dictionary CSV, a REDCap instrument zip or a
project XML; without events (--arms/--events/--mapping, or the XML) events
are not checked, and the report says so.

Exit status: 0 every site conforms, 1 a site deviates, 2 a site (or a
protocol entry) could not be checked.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var p *protocol.Protocol
			var err error
			var rs []*messages.ProtocolReport
			var n *config.Network
			load := func(path string) error {
				if path == "" {
					p, err = protocol.HEALAdult()
				} else {
					p, err = protocol.Load(path)
				}
				if err != nil {
					return exitWith(2, err)
				}
				return nil
			}
			if len(dicts) > 0 {
				if err := load(protoFile); err != nil {
					return err
				}
				offline, err := offlineSites(dicts, arms, events, maps, reps)
				if err != nil {
					return exitWith(2, err)
				}
				rs = checker.CheckOffline(p, offline)
			} else {
				if len(arms)+len(events)+len(maps)+len(reps) > 0 {
					return exitWith(2, errors.New("--arms, --events, --mapping and --repeating go with --dictionary (an offline check)"))
				}
				if n, err = loadNetwork(network); err != nil {
					return exitWith(2, err)
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
					return exitWith(2, errors.New("name the sites to check with --site ID (repeatable) or --all"))
				}
				ctx, cancel := commandContext(0)
				defer cancel()
				rs = checker.CheckSites(ctx, n, p, ids, checker.Options{Items: items})
				if out == "" && format == "" && !suggest {
					out = n.ReportsDir
				}
			}
			if out != "" {
				if err := report.WriteWith(out, report.Options{Location: checker.NetworkLocation(n)}, rs...); err != nil {
					return exitWith(2, err)
				}
			}
			if suggest {
				if err := printSuggestions(cmd.OutOrStdout(), n, rs); err != nil {
					return exitWith(2, err)
				}
			} else if err := printReports(cmd.OutOrStdout(), format, rs, out); err != nil {
				return exitWith(2, err)
			}
			if err := p.Err(); err != nil {
				fmt.Fprintln(cmd.ErrOrStderr(), err)
			}
			switch code := checker.ExitCode(p, rs); code {
			case 1:
				return exitWith(1, errors.New("deviations from the protocol found"))
			case 2:
				return exitWith(2, errors.New("some sites or protocol entries could not be checked"))
			}
			return nil
		},
	}
	addNetworkFlag(c.Flags(), &network)
	c.Flags().StringArrayVar(&sites, "site", nil, "site ID to check (repeatable)")
	c.Flags().BoolVar(&all, "all", false, "check every site of the network")
	c.Flags().StringVar(&out, "out", "", "reports folder for <site>.json, <site>.csv, <site>.html and index.html (default: the network's reports_dir)")
	c.Flags().StringVar(&format, "format", "", "also print the reports on stdout as json, csv or html (default: a summary table)")
	c.Flags().StringVar(&protoFile, "protocol", "", "protocol file (default: the network's protocol, else the built-in HEAL adult library)")
	c.Flags().StringArrayVar(&dicts, "dictionary", nil, "check offline: SITE=FILE, a dictionary CSV, instrument zip or project XML (repeatable; no network needed)")
	c.Flags().StringArrayVar(&arms, "arms", nil, "offline: SITE=FILE, the project's arms CSV (arm_num,name)")
	c.Flags().StringArrayVar(&events, "events", nil, "offline: SITE=FILE, the project's events CSV (event_name,arm_num,unique_event_name)")
	c.Flags().StringArrayVar(&maps, "mapping", nil, "offline: SITE=FILE, the instrument designation CSV (arm_num,unique_event_name,form)")
	c.Flags().StringArrayVar(&reps, "repeating", nil, "offline: SITE=FILE, the repeating instruments CSV (event_name,form_name,custom_form_label)")
	c.Flags().BoolVar(&items, "items", false, "also fetch item answers (never identifier-like fields) to report item missingness")
	c.Flags().BoolVar(&suggest, "suggest-policy", false, "print the transfer-policy rename and recode rules that bring each site's data into the library's names")
	rootCmd.AddCommand(c)
}

// offlineSites pairs --dictionary SITE=FILE with the other files of the
// same site.
func offlineSites(dicts, arms, events, maps, reps []string) ([]checker.Offline, error) {
	var out []checker.Offline
	at := map[string]int{}
	for _, d := range dicts {
		site, path, ok := strings.Cut(d, "=")
		if !ok || site == "" || path == "" {
			return nil, fmt.Errorf("--dictionary %q: write SITE=FILE", d)
		}
		if _, dup := at[site]; dup {
			return nil, fmt.Errorf("--dictionary: site %s is given twice", site)
		}
		at[site] = len(out)
		out = append(out, checker.Offline{Site: site, Dictionary: path})
	}
	for _, x := range []struct {
		flag string
		vals []string
		set  func(*checker.Offline, string)
	}{
		{"arms", arms, func(o *checker.Offline, p string) { o.Arms = p }},
		{"events", events, func(o *checker.Offline, p string) { o.Events = p }},
		{"mapping", maps, func(o *checker.Offline, p string) { o.Mapping = p }},
		{"repeating", reps, func(o *checker.Offline, p string) { o.Repeating = p }},
	} {
		for _, v := range x.vals {
			site, path, ok := strings.Cut(v, "=")
			if !ok || site == "" || path == "" {
				return nil, fmt.Errorf("--%s %q: write SITE=FILE", x.flag, v)
			}
			i, ok := at[site]
			if !ok {
				return nil, fmt.Errorf("--%s %s: site %s has no --dictionary", x.flag, v, site)
			}
			x.set(&out[i], path)
		}
	}
	return out, nil
}

// printSuggestions prints each site's rename and recode rules, merged
// with the site's own policy when the network file names it.
func printSuggestions(w io.Writer, n *config.Network, rs []*messages.ProtocolReport) error {
	for i, r := range rs {
		if i > 0 {
			fmt.Fprintln(w)
		}
		if r.Status == messages.ProtocolError {
			fmt.Fprintf(w, "# site %s could not be checked: %s\n", r.Site, r.Error)
			continue
		}
		var rename map[string]string
		var recode map[string]map[string]string
		if n != nil {
			if st, ok := n.Site(r.Site); ok && st.Policy != "" {
				if pol, err := policy.Load(st.Policy); err == nil {
					rename, recode = pol.Rename, pol.Recode
					fmt.Fprintf(w, "# merged with the rules of %s\n", st.Policy)
				} else {
					fmt.Fprintf(w, "# the site's policy %s could not be read (%v): the rules below are the check's alone\n", st.Policy, err)
				}
			}
		}
		fmt.Fprint(w, protocol.Suggest(r).YAML(rename, recode))
	}
	return nil
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
