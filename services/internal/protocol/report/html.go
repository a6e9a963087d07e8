package report

import (
	"fmt"
	"html/template"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/redcap-relay/relay/messages"
)

// Titles name every finding kind in plain words; the machine code follows
// in the page.
var Titles = map[string]string{
	"protocol_entry_invalid":       "Protocol entry broken",
	"instrument_missing":           "Instrument missing",
	"instrument_renamed":           "Instrument under another name",
	"instrument_substituted":       "Allowed substitute used",
	"instrument_matched_by_fields": "Instrument found by its items",
	"instrument_split":             "Instrument split over forms",
	"field_missing":                "Item missing",
	"field_renamed":                "Item under another name",
	"field_ambiguous":              "Item matches several fields",
	"field_conflict":               "Item wording matches, answers differ",
	"field_in_other_form":          "Item in another form",
	"field_extra":                  "Item not in the protocol",
	"type_differs":                 "Field type differs",
	"choices_recoded":              "Answer codes differ",
	"choice_labels_differ":         "Answer labels differ",
	"choices_malformed":            "Answer list malformed",
	"calculation_differs":          "Calculation differs",
	"validation_differs":           "Validation differs",
	"range_differs":                "Allowed range differs",
	"required_differs":             "Required setting differs",
	"branching_differs":            "Branching logic differs",
	"label_differs":                "Question wording differs",
	"planned_event_missing":        "Planned event missing",
	"event_renamed":                "Event under another name",
	"event_not_designated":         "Not collected at a planned event",
	"part_not_designated":          "Part not collected at a planned event",
	"item_not_collected":           "Item not collected at a planned event",
	"events_not_checked":           "Events not checked",
	"not_longitudinal":             "Project has no events",
	"repeating_differs":            "Repeating setup differs",
	"arm_missing":                  "Arm missing",
	"phi_not_flagged":              "Identifier not flagged",
	"completion_unavailable":       "Completion not measured",
}

// Title is a finding kind in plain words.
func Title(kind string) string {
	if t, ok := Titles[kind]; ok {
		return t
	}
	return strings.ReplaceAll(kind, "_", " ")
}

type siteView struct {
	R           *messages.ProtocolReport
	Anchor      string
	Page        string // the site's own page, <site>.html
	Score       string
	Checked     string // times in the network's zone
	Previous    string
	Present     int
	Incomplete  int
	Substituted int
	Missing     int
	Broken      int
	Completion  string // overall complete / records at planned events
	Errors      []findingRow
	Warnings    []findingRow
	Infos       []findingRow
	Events      []eventColumn
	Matrix      []matrixRow
	Items       []itemRow
	Instruments []instRow
}

// findingRow is one line of a findings table; Fields is set when several
// findings of one kind are shown as one line (identifiers not flagged).
type findingRow struct {
	messages.ProtocolFinding
	Title  string
	Fields []string
}

type instRow struct {
	messages.ProtocolInstrument
	Events []plannedMark
}

type plannedMark struct {
	Name   string
	Mapped bool
}

type eventColumn struct {
	Name, Site string // the planned name (as in every other table), the site's unique name
}

type matrixRow struct {
	Instrument, Form string
	Cells            []matrixCell
}

type matrixCell struct {
	Text, Class, Title string
}

type itemRow struct {
	Instrument, Event, Field string
	Missing, Saved           int
	Rate                     string
}

type pageView struct {
	Generated string
	Zone      string
	Protocol  string
	Sites     []siteView
	Checked   int
	Conform   int
	Deviating int
	Failed    int
}

// HTML writes the network page: the summary of every site, each site's
// changes since the last check, and links to the site pages.
func HTML(w io.Writer, reports []*messages.ProtocolReport) error {
	return HTMLWith(w, Options{}, reports)
}

// HTMLWith is HTML with options.
func HTMLWith(w io.Writer, o Options, reports []*messages.ProtocolReport) error {
	return page.ExecuteTemplate(w, "index", view(o, reports))
}

// SiteHTML writes one site's page: its own findings only, to forward to
// the site as it is.
func SiteHTML(w io.Writer, o Options, r *messages.ProtocolReport) error {
	return page.ExecuteTemplate(w, "sitepage", view(o, []*messages.ProtocolReport{r}))
}

func view(o Options, reports []*messages.ProtocolReport) pageView {
	loc := o.Location
	if loc == nil {
		loc = time.UTC
	}
	rs := append([]*messages.ProtocolReport(nil), reports...)
	sort.Slice(rs, func(i, j int) bool { return rs[i].Site < rs[j].Site })
	pv := pageView{Generated: stamp(time.Now(), loc), Zone: loc.String()}
	for _, r := range rs {
		if pv.Protocol == "" {
			pv.Protocol = r.ProtocolName + " " + r.ProtocolVersion
		}
		sv := siteView{R: r, Anchor: "site-" + FileBase(r.Site), Page: FileBase(r.Site) + ".html", Score: scoreText(r),
			Checked: stamp(r.CheckedAt, loc)}
		if r.PreviousCheckedAt != nil {
			sv.Previous = stamp(*r.PreviousCheckedAt, loc)
		}
		switch r.Status {
		case messages.ProtocolConformant:
			pv.Conform++
		case messages.ProtocolDeviations:
			pv.Deviating++
		default:
			pv.Failed++
		}
		for _, in := range r.Instruments {
			switch in.Status {
			case messages.InstrumentPresent:
				sv.Present++
			case messages.InstrumentSubstituted:
				sv.Substituted++
			case messages.InstrumentIncomplete:
				sv.Incomplete++
			case messages.InstrumentMissing:
				sv.Missing++
			default:
				sv.Broken++
			}
			ir := instRow{ProtocolInstrument: in}
			mapped := map[string]bool{}
			for _, e := range in.EventsMapped {
				mapped[e] = true
			}
			for _, e := range in.EventsPlanned {
				ir.Events = append(ir.Events, plannedMark{Name: e, Mapped: mapped[e]})
			}
			sv.Instruments = append(sv.Instruments, ir)
		}
		sv.Errors, sv.Warnings, sv.Infos = findingRows(r.Findings)
		buildMatrix(&sv)
		pv.Sites = append(pv.Sites, sv)
	}
	pv.Checked = len(rs)
	return pv
}

// findingRows sorts findings by severity and collapses the identifier
// findings of each severity into one line listing the fields.
func findingRows(fs []messages.ProtocolFinding) (errs, warns, infos []findingRow) {
	var phiRow [3]*findingRow
	for _, f := range fs {
		sev := 2
		switch f.Severity {
		case messages.SeverityError:
			sev = 0
		case messages.SeverityWarning:
			sev = 1
		}
		list := [3]*[]findingRow{&errs, &warns, &infos}[sev]
		if f.Kind != "phi_not_flagged" {
			*list = append(*list, findingRow{ProtocolFinding: f, Title: Title(f.Kind)})
			continue
		}
		label := f.Field
		if len(f.Categories) > 0 {
			label += " (" + strings.ReplaceAll(strings.Join(f.Categories, ", "), "_", " ") + ")"
		}
		if phiRow[sev] == nil {
			*list = append(*list, findingRow{Title: Title(f.Kind), ProtocolFinding: messages.ProtocolFinding{Severity: f.Severity, Kind: f.Kind,
				Expected: f.Expected}})
			phiRow[sev] = &(*list)[len(*list)-1]
		}
		phiRow[sev].Fields = append(phiRow[sev].Fields, label)
	}
	for _, row := range phiRow {
		if row == nil {
			continue
		}
		what := "look like identifiers"
		if row.Severity == messages.SeverityInfo {
			what = "hold dates"
		}
		row.Message = fmt.Sprintf("%d field(s) %s but are not flagged Identifier?: flag them so REDCap's de-identified exports and user rights withhold them", len(row.Fields), what)
	}
	return errs, warns, infos
}

func buildMatrix(sv *siteView) {
	r := sv.R
	if len(r.Completion) == 0 {
		sv.Completion = "n/a"
		return
	}
	var events []eventColumn
	seenEv := map[string]bool{}
	type rowKey struct{ inst, form string }
	var rows []rowKey
	seenRow := map[rowKey]bool{}
	cells := map[rowKey]map[string]messages.ProtocolCompletion{}
	recs, comp := 0, 0
	for _, c := range r.Completion {
		if !seenEv[c.Event] {
			seenEv[c.Event] = true
			col := eventColumn{Name: c.Event, Site: c.Event}
			if c.Planned != "" {
				col.Name = c.Planned
			}
			if col.Name == "" {
				col.Name = "(all)"
			}
			events = append(events, col)
		}
		k := rowKey{c.Instrument, c.Form}
		if !seenRow[k] {
			seenRow[k] = true
			rows = append(rows, k)
			cells[k] = map[string]messages.ProtocolCompletion{}
		}
		cells[k][c.Event] = c
		if c.Planned != "" {
			recs += c.Records
			comp += c.Complete
		}
		for _, it := range c.Items {
			if it.Missing > 0 {
				name := c.Event
				if c.Planned != "" {
					name = c.Planned
				}
				sv.Items = append(sv.Items, itemRow{Instrument: c.Instrument, Event: name, Field: it.Field, Missing: it.Missing, Saved: it.Saved,
					Rate: fmt.Sprintf("%.0f%%", 100*it.Rate)})
			}
		}
	}
	sort.SliceStable(sv.Items, func(i, j int) bool {
		return sv.Items[i].Missing*sv.Items[j].Saved > sv.Items[j].Missing*sv.Items[i].Saved
	})
	if len(sv.Items) > 30 {
		sv.Items = sv.Items[:30]
	}
	if recs > 0 {
		sv.Completion = fmt.Sprintf("%.0f%%", 100*float64(comp)/float64(recs))
	} else {
		sv.Completion = "n/a"
	}
	sv.Events = events
	for _, k := range rows {
		mr := matrixRow{Instrument: k.inst, Form: k.form}
		for _, e := range events {
			c, ok := cells[k][e.Site]
			if !ok {
				mr.Cells = append(mr.Cells, matrixCell{Text: "—", Class: "na", Title: "not designated"})
				continue
			}
			cl := "low"
			switch {
			case c.Records == 0:
				cl = "na"
			case c.Rate >= 0.8:
				cl = "good"
			case c.Rate >= 0.5:
				cl = "fair"
			}
			mr.Cells = append(mr.Cells, matrixCell{
				Text:  fmt.Sprintf("%d/%d", c.Complete, c.Records),
				Class: cl,
				Title: fmt.Sprintf("complete %d, unverified %d, incomplete %d, never saved %d", c.Complete, c.Unverified, c.Incomplete, c.Blank),
			})
		}
		sv.Matrix = append(sv.Matrix, mr)
	}
}

// stamp formats a time for people in the network's zone.
func stamp(t time.Time, loc *time.Location) string {
	return t.In(loc).Format("2006-01-02 15:04 MST")
}

var page = template.Must(template.New("page").Funcs(template.FuncMap{
	"pct": func(f float64) string { return fmt.Sprintf("%.0f%%", 100*f) },
}).Parse(pageTemplate))
