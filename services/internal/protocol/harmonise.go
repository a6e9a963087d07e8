package protocol

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Harmonisation: the check does not stop at a site's drift. For every
// item the site has under another name, and every answer list that only
// uses other codes, it writes the transfer-policy rules (rename, recode)
// that bring the site's data into the library's names and codes on the way
// to the coordinating center.

// Suggestion is a transfer-policy fragment for one site.
type Suggestion struct {
	Site     string
	Protocol string
	Renames  []Rename
	// Recodes: site field -> site code -> library code.
	Recodes map[string]map[string]string
	// Notes are renames or recodes left out, and why.
	Notes []string
}

// Rename is one suggested rename rule.
type Rename struct {
	From, To string
	Why      string
}

// Suggest reads a report's renamed items, renamed forms and recodable
// answer lists. Two site fields renamed to one name are left out (a policy
// rename must be one to one), with a note.
func Suggest(r *Report) *Suggestion {
	s := &Suggestion{Site: r.Site, Protocol: r.ProtocolName + " " + r.ProtocolVersion, Recodes: map[string]map[string]string{}}
	to := map[string][]Rename{}
	add := func(rn Rename) { to[rn.To] = append(to[rn.To], rn) }
	as := map[string]string{} // instrument -> "phq2 (as phq8)"
	for _, in := range r.Instruments {
		as[in.Instrument] = in.Instrument
		if in.Substitute != "" {
			as[in.Instrument] = in.Instrument + " (as " + in.Substitute + ")"
		}
	}
	for _, f := range r.Findings {
		if f.Kind == KindFieldRenamed && f.SiteField != "" {
			why := as[f.Instrument] + ": a known variant of the name"
			if f.Match != nil && f.Match.By == byContent {
				why = fmt.Sprintf("%s: found by %s (score %.2f)", as[f.Instrument], strings.Join(f.Match.Basis, ", "), f.Match.Score)
			}
			add(Rename{From: f.SiteField, To: f.Field, Why: why})
		}
		if f.Match != nil && len(f.Match.Recode) > 0 {
			site := f.SiteField
			if site == "" {
				site = f.Field
			}
			s.Recodes[site] = f.Match.Recode
		}
	}
	forms := map[string]int{}
	for _, in := range r.Instruments {
		if in.Form != "" {
			forms[in.Form]++
		}
	}
	for _, in := range r.Instruments {
		lib := in.Instrument
		if in.Substitute != "" {
			lib = in.Substitute
		}
		if in.Form == "" || in.Form == lib || len(in.Parts) > 0 || forms[in.Form] > 1 {
			continue
		}
		add(Rename{From: in.Form + "_complete", To: lib + "_complete", Why: as[in.Instrument] + ": the form's status"})
	}
	for _, target := range sortedKeys(to) {
		rs := to[target]
		if len(rs) > 1 {
			var from []string
			for _, rn := range rs {
				from = append(from, rn.From)
			}
			s.Notes = append(s.Notes, fmt.Sprintf("%s and %s would both become %s: rename one at the site", strings.Join(from[:len(from)-1], ", "), from[len(from)-1], target))
			continue
		}
		s.Renames = append(s.Renames, rs[0])
	}
	sort.Slice(s.Renames, func(i, j int) bool { return s.Renames[i].From < s.Renames[j].From })
	for _, f := range r.Findings {
		if f.Kind == KindFieldAmbiguous || f.Kind == KindFieldConflict {
			s.Notes = append(s.Notes, fmt.Sprintf("%s: no rename suggested (%s: %s)", f.Field, f.Kind, f.Actual))
		}
	}
	return s
}

// YAML writes the rules as the policy file's rename: and recode: keys,
// ready to paste into the site's policy; existing rules of that policy
// (nil: none) are kept, and a suggestion that contradicts one is a note.
func (s *Suggestion) YAML(existingRename map[string]string, existingRecode map[string]map[string]string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Transfer-policy rules suggested by relay check for site %s (protocol %s).\n", s.Site, s.Protocol)
	b.WriteString("# Paste them into the site's policy (deploy/policies/README.md): rename gives the\n")
	b.WriteString("# site's variables the library's names at the destination, recode its answer codes.\n")
	b.WriteString("# Their forms must be approved (approved.forms) for the fields to leave the site;\n")
	b.WriteString("# then relay dry-run shows the destination fields they write.\n")
	rename := map[string]string{}
	why := map[string]string{}
	for k, v := range existingRename {
		rename[k], why[k] = v, "already in the policy"
	}
	notes := append([]string(nil), s.Notes...)
	for _, rn := range s.Renames {
		if old, ok := rename[rn.From]; ok && old != rn.To {
			notes = append(notes, fmt.Sprintf("the policy renames %s to %s; the library's name is %s", rn.From, old, rn.To))
			continue
		}
		rename[rn.From], why[rn.From] = rn.To, rn.Why
	}
	if len(rename) > 0 {
		b.WriteString("rename:\n")
		for _, k := range sortedKeys(rename) {
			fmt.Fprintf(&b, "  %s: %s   # %s\n", k, rename[k], why[k])
		}
	}
	recode := map[string]map[string]string{}
	for k, v := range existingRecode {
		recode[k] = v
	}
	for f, m := range s.Recodes {
		if _, ok := recode[f]; ok {
			notes = append(notes, fmt.Sprintf("the policy already recodes %s; the library's codes need %s", f, recodeString(m)))
			continue
		}
		recode[f] = m
	}
	if len(recode) > 0 {
		b.WriteString("recode:\n")
		for _, f := range sortedKeys(recode) {
			var parts []string
			for _, c := range sortedKeys(recode[f]) {
				parts = append(parts, strconv.Quote(c)+": "+strconv.Quote(recode[f][c]))
			}
			fmt.Fprintf(&b, "  %s: {%s}\n", f, strings.Join(parts, ", "))
		}
	}
	if len(rename) == 0 && len(recode) == 0 {
		b.WriteString("# nothing to rename or recode: the site uses the library's names and codes\n")
	}
	for _, n := range notes {
		fmt.Fprintf(&b, "# note: %s\n", n)
	}
	return b.String()
}
