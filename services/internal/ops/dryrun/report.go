package dryrun

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteText prints the report for people: a summary, the destination
// check, per record, per field and what the policy drops. Names and counts
// only.
func (r *Report) WriteText(w io.Writer, showUnchanged bool) error {
	fmt.Fprintf(w, "Dry run of site %s: nothing was imported.\n", r.Site)
	fmt.Fprintf(w, "Policy %q (%s), version %s\n", r.PolicyName, r.Policy, r.PolicyVersion)
	fmt.Fprintf(w, "Records: %d new, %d changed, %d unchanged, %d refused by the policy, %d would be deleted\n",
		r.Counts[StatusNew], r.Counts[StatusChanged], r.Counts[StatusUnchanged], r.Counts[StatusRefused], r.Counts[StatusDeleted])
	fmt.Fprintf(w, "REDCap calls: %d to the site, %d to the destination\n", r.SiteCalls, r.DestCalls)
	if !r.OverwriteBlanks {
		fmt.Fprintln(w, "Blank site values do not erase destination values (destination.overwrite_blanks is off).")
	}
	if len(r.DestinationProblems) > 0 {
		fmt.Fprintf(w, "\nDESTINATION CHECK FAILED: a real run would stop on %d problem(s):\n", len(r.DestinationProblems))
		for _, p := range r.DestinationProblems {
			fmt.Fprintln(w, "  - "+p)
		}
	} else {
		fmt.Fprintln(w, "Destination check: every field the policy writes fits the destination.")
	}

	fmt.Fprintln(w, "\nPer record:")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  DEST RECORD\tSTATUS\tFIELDS THAT WOULD CHANGE / PROBLEM")
	hidden := 0
	for _, rr := range r.Records {
		if rr.Status == StatusUnchanged && !showUnchanged {
			hidden++
			continue
		}
		detail := strings.Join(rr.ChangedFields, ", ")
		if rr.Error != "" {
			detail = rr.Error
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", rr.DestRecordID, rr.Status, detail)
	}
	tw.Flush()
	if hidden > 0 {
		fmt.Fprintf(w, "  (%d unchanged record(s) not listed; --all lists them)\n", hidden)
	}

	fmt.Fprintln(w, "\nPer destination field (values a sync would write):")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  FIELD\tCHANGED\tIN NEW RECORDS")
	for _, f := range r.Fields {
		fmt.Fprintf(tw, "  %s\t%d\t%d\n", f.Field, f.Changed, f.New)
	}
	tw.Flush()
	if len(r.Fields) == 0 {
		fmt.Fprintln(w, "  (no value would change)")
	}

	r.writeFiles(w)

	fmt.Fprintf(w, "\nKept at the site by the policy (%d field(s)):\n", len(r.Dropped))
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  FIELD\tFORM\tWHY\tDETECTED AS")
	for _, d := range r.Dropped {
		det := d.Detected
		if det == "" {
			det = "-"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", d.Field, d.Form, d.Why, det)
	}
	return tw.Flush()
}

// writeFiles lists the kept file fields' files that a sync would upload,
// replace or remove (places and sizes, never names or contents).
func (r *Report) writeFiles(w io.Writer) {
	if len(r.Files) == 0 {
		return
	}
	c := r.FileCounts
	fmt.Fprintf(w, "\nFiles (kept file fields): %d new, %d replaced, %d unchanged, %d present at both (not compared), %d would be removed, %d refused by the policy\n",
		c[StatusFileNew], c[StatusFileReplaced], c[StatusFileUnchanged], c[StatusFilePresent], c[StatusFileRemoved], c[StatusFileRefused])
	if !r.FilesCompared {
		fmt.Fprintln(w, "  (compared by presence only; --files downloads them to compare contents and check the policy's type and size limits)")
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  DEST RECORD\tFIELD\tEVENT\tINSTANCE\tSTATUS\tSIZE\tPROBLEM")
	for _, f := range r.Files {
		if f.Status == StatusFileUnchanged {
			continue
		}
		event, inst, size := f.Event, "-", "-"
		if event == "" {
			event = "-"
		}
		if f.Instance > 0 {
			inst = fmt.Sprint(f.Instance)
		}
		if f.Size > 0 {
			size = fmt.Sprint(f.Size)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\t%s\t%s\n", f.DestRecordID, f.Field, event, inst, f.Status, size, f.Error)
	}
	tw.Flush()
}
