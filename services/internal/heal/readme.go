package heal

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/heal/vlmd"
	"github.com/redcap-relay/relay/services/internal/protocol"
)

type readmeData struct {
	title    string
	when     time.Time
	dest     *messages.MetadataSnapshot
	sites    []*site
	res      *Result
	stats    *dataStats
	files    []ManifestEntry
	protocol *protocol.Protocol
	layout   *layout
}

// writeReadme describes the package: names, counts, rules and versions,
// never a value.
func writeReadme(w io.Writer, d readmeData) error {
	var b strings.Builder
	p := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	p("# %s: HEAL data submission package\n\n", d.title)
	p("Exported %s from the coordinating center's REDCap project %q (project %d) by REDCap Relay (`relay export heal`).\n\n",
		d.when.Format(time.RFC3339), d.dest.Project.ProjectTitle, d.dest.Project.ProjectID)
	p("- Records: %d (%d rows: one per record x event x repeat instance)\n", d.res.Records, d.res.Rows)
	p("- Variables: %d, described in `%s` and `%s` (HEAL VLMD schema %s)\n", d.res.Fields, FileDictJSON, FileDictCSV, vlmd.SchemaVersion)
	p("- Protocol: %s, version %s\n\n", d.protocol.Name, d.protocol.Version)

	p("## Files\n\n| file | what it holds |\n|---|---|\n")
	for _, f := range d.files {
		p("| `%s` | %s |\n", f.File, f.Description)
	}
	p("| `%s` | this file |\n| `%s` | every file above with its size in bytes and MD5 checksum |\n\n", FileReadme, FileManifest)

	p("## Sites\n\n| site | name | records | transfer policy | policy version | protocol check |\n|---|---|---:|---|---|---|\n")
	for _, s := range d.sites {
		check := s.report.Status
		if s.report.Score != nil {
			check = fmt.Sprintf("%.1f/100 (%s)", *s.report.Score, s.report.Status)
		}
		p("| %s | %s | %d | `%s` (%s) | `%s` | %s |\n", s.cfg.ID, s.cfg.Name, s.records, filepath.Base(s.cfg.Policy), s.policy.Name, s.compiled.Version(), check)
	}
	p("\nThe policy version is the SHA-256 of the IRB-approved policy file plus a fingerprint of the site's settings (namespace, DAG, pseudonym key); every record imported at the destination carries it.\n\n")

	p("## How the data were de-identified\n\n")
	p("Each site's transfer policy decides what leaves the site; everything else stays there (deny by default). " +
		"The package holds only the variables some site's policy releases, and in each record only the variables its own site's policy releases. " +
		"Direct identifiers and free text that the policies drop never left the sites; they are in neither the dictionary nor the data.\n\n")
	p("**Record IDs.** Local IDs were replaced at transfer:\n\n")
	for _, s := range d.sites {
		p("- %s: %s\n", s.cfg.ID, s.idRule())
	}
	p("\n**Dates.** A shifted date was moved back by a per-participant offset of 0 to 364 days, derived from the network's secret pseudonym key and the participant's record ID (HMAC): the same offset for every date of a participant and on every transfer, so intervals between a participant's dates are kept. Dates reduced to the year keep the year only.\n\n")
	for _, s := range d.sites {
		sh, yr := s.dateRules()
		p("- %s: shifted: %s; year only: %s\n", s.cfg.ID, listOrNone(sh), listOrNone(yr))
	}
	p("\n## Missing values\n\n")
	p("An empty cell means the destination holds no value (not asked at that event, skipped by branching logic, not answered, or a form never saved: REDCap does not say which). " +
		"Where the protocol's core library codes an answer as one of HEAL's missing-value categories (for example 98 \"Prefer not to answer\" = Refused, 99 \"Unknown\" = Don't know), " +
		"the code is kept in the data and the dictionary lists it in the field's `missingValues` (with the empty cell) and names its category in `custom.missingValueCategories`. No value is recoded.\n\n")
	if d.layout.multiRow {
		p("With one row per event or repeat instance, a field REDCap requires (where its form is entered) is empty in the record's other rows: `constraints.required` is set for the record ID only, and REDCap's flag is kept in `custom.redcapRequired`.\n\n")
	}
	p("## Standards mappings\n\n")
	p("Every variable of a core-library instrument carries `standardsMappings`: the instrument (source `heal-cde`, the HEAL CDE id and CRF name from HEAL's CRF table) and the item (the library's variable name). "+
		"The instrument holding each variable is found by the protocol check of the destination's dictionary; a variable a site's policy renamed to a library name maps to that library item. Variables outside the library carry none. "+
		"`%s` lists, per core instrument, whether the sites use it, an allowed substitute, or neither.\n\n", FileChecklist)
	if len(d.res.Warnings) > 0 {
		p("## Warnings\n\n")
		for _, w := range d.res.Warnings {
			p("- %s\n", w)
		}
		p("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func listOrNone(xs []string) string {
	if len(xs) == 0 {
		return "none"
	}
	return strings.Join(xs, ", ")
}
