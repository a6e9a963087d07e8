package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/ops/dryrun"
	"github.com/redcap-relay/relay/services/internal/phi"
	"github.com/redcap-relay/relay/services/internal/policy"
)

func init() {
	pc := &cobra.Command{Use: "policy", Short: "transfer policies: validate files, explain what a site's policy does"}

	var network, site string
	var asJSON bool
	explain := &cobra.Command{
		Use:   "explain",
		Short: "fetch the site's data dictionary (site token) and print what the policy does with every field, and why",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if site == "" {
				return errors.New("give --site ID")
			}
			net, err := config.Load(network)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Minute)
			defer cancel()
			pol, meta, ds, cerr := dryrun.Explain(ctx, net, site, nil)
			if pol == nil {
				return cerr
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(map[string]any{"site": site, "policy": pol.File(), "policy_version": pol.Version(), "fields": ds,
					"hipaa_categories": hipaaByField(ds)}); err != nil {
					return err
				}
			} else {
				fmt.Fprintf(out, "Site %s (%s, %d fields), policy %q %s\n\n", site, meta.Project.ProjectTitle, len(meta.Fields), pol.Name, pol.Version())
				if err := policy.WriteTable(out, ds); err != nil {
					return err
				}
				writeCategories(out, ds)
			}
			if cerr != nil {
				return exitWith(1, cerr) // the site's runs would be refused
			}
			if !asJSON {
				s := policy.Summary(ds)
				fmt.Fprintf(out, "\nThe policy compiles: %d field(s) leave the site (keep %d, shift %d, year %d, hash %d, zip3 %d, cap_age %d), %d stay.\n",
					len(ds)-s[policy.Drop], s[policy.Keep], s[policy.Shift], s[policy.Year], s[policy.Hash], s[policy.Zip3], s[policy.CapAge], s[policy.Drop])
			}
			return nil
		},
	}
	addNetworkFlag(explain.Flags(), &network)
	explain.Flags().StringVar(&site, "site", "", "site ID")
	explain.Flags().BoolVar(&asJSON, "json", false, "print JSON instead of a table")

	validate := &cobra.Command{
		Use:   "validate FILE...",
		Short: "check policy files on their own (syntax, rules, justifications); explain checks them against a site",
		Args:  cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var bad int
			for _, a := range args {
				p, err := policy.Load(a)
				if err != nil {
					fmt.Fprintln(cmd.ErrOrStderr(), err)
					bad++
					continue
				}
				fmt.Fprintf(cmd.OutOrStdout(), "%s: ok (policy %q, version %s)\n", a, p.Name, p.Version())
			}
			if bad > 0 {
				return exitWith(1, fmt.Errorf("%d of %d policy file(s) invalid", bad, len(args)))
			}
			return nil
		},
	}
	pc.AddCommand(explain, validate)
	rootCmd.AddCommand(pc)
}

// hipaaByField lists, per field, the HIPAA Safe Harbor categories its
// detections come from (the same detector as the protocol check's).
func hipaaByField(ds []policy.Decision) map[string][]string {
	out := map[string][]string{}
	for _, d := range ds {
		for _, c := range categoriesOf(d) {
			out[d.Field] = append(out[d.Field], string(c))
		}
	}
	return out
}

func categoriesOf(d policy.Decision) []phi.Category {
	seen := map[phi.Category]bool{}
	for _, x := range d.Detected {
		for _, c := range x.HIPAA {
			seen[c] = true
		}
	}
	var out []phi.Category
	for _, c := range phi.Categories {
		if seen[c] {
			out = append(out, c)
		}
	}
	return out
}

// writeCategories prints which fields each Safe Harbor category was
// detected in.
func writeCategories(w io.Writer, ds []policy.Decision) {
	byCat := map[phi.Category][]string{}
	for _, d := range ds {
		for _, c := range categoriesOf(d) {
			byCat[c] = append(byCat[c], d.Field)
		}
	}
	if len(byCat) == 0 {
		return
	}
	fmt.Fprintln(w, "\nIdentifiers detected, by HIPAA Safe Harbor category:")
	for _, c := range phi.Categories {
		if fs := byCat[c]; len(fs) > 0 {
			fmt.Fprintf(w, "  %s: %s\n", c.Label(), strings.Join(fs, ", "))
		}
	}
}
