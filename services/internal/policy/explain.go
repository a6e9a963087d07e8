package policy

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteTable prints decisions as an aligned table: field, form, action,
// destination name, what was detected, and the setting that decides.
// Refused fields are marked and their problem is printed below the table.
func WriteTable(w io.Writer, ds []Decision) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FIELD\tFORM\tTYPE\tACTION\tDEST\tDETECTED\tDECIDED BY")
	refused := 0
	for _, d := range ds {
		t := d.Type
		if d.Validation != "" {
			t += "/" + d.Validation
		}
		act := d.Action
		if d.Problem != "" {
			act = "REFUSED"
			refused++
		}
		det := strings.Join(d.Reasons, "; ")
		if det == "" {
			det = "-"
		}
		dest := d.Dest
		if dest == "" {
			dest = "-"
		}
		by := d.By
		if d.Line > 0 {
			by += fmt.Sprintf(" (line %d)", d.Line)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.Field, d.Form, t, act, dest, det, by)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if refused > 0 {
		fmt.Fprintf(w, "\n%d field(s) refused: the site's runs stop until the policy decides them:\n", refused)
		for _, d := range ds {
			if d.Problem != "" {
				fmt.Fprintf(w, "  - %s: %s\n", d.Field, d.Problem)
			}
		}
	}
	return nil
}

// Summary counts decisions by action.
func Summary(ds []Decision) map[string]int {
	m := map[string]int{}
	for _, d := range ds {
		a := d.Action
		if d.Problem != "" {
			a = "refused"
		}
		m[a]++
	}
	return m
}
