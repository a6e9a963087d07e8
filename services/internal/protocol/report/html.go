package report

import (
	"fmt"
	"html/template"
	"io"
	"sort"
	"time"

	"github.com/redcap-relay/relay/messages"
)

type siteView struct {
	R           *messages.ProtocolReport
	Anchor      string
	Score       string
	Present     int
	Substituted int
	Missing     int
	Broken      int
	Completion  string // overall complete / records at planned events
	Errors      []messages.ProtocolFinding
	Warnings    []messages.ProtocolFinding
	Infos       []messages.ProtocolFinding
	Events      []string
	Matrix      []matrixRow
	Items       []itemRow
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
	Protocol  string
	Sites     []siteView
	Checked   int
	Conform   int
	Deviating int
	Failed    int
}

// HTML writes the report page for a set of sites.
func HTML(w io.Writer, reports []*messages.ProtocolReport) error {
	rs := append([]*messages.ProtocolReport(nil), reports...)
	sort.Slice(rs, func(i, j int) bool { return rs[i].Site < rs[j].Site })
	pv := pageView{Generated: Since(time.Now())}
	for _, r := range rs {
		if pv.Protocol == "" {
			pv.Protocol = r.ProtocolName + " " + r.ProtocolVersion
		}
		sv := siteView{R: r, Anchor: "site-" + FileBase(r.Site), Score: scoreText(r)}
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
			case messages.InstrumentMissing:
				sv.Missing++
			default:
				sv.Broken++
			}
		}
		for _, f := range r.Findings {
			switch f.Severity {
			case messages.SeverityError:
				sv.Errors = append(sv.Errors, f)
			case messages.SeverityWarning:
				sv.Warnings = append(sv.Warnings, f)
			default:
				sv.Infos = append(sv.Infos, f)
			}
		}
		buildMatrix(&sv)
		pv.Sites = append(pv.Sites, sv)
	}
	pv.Checked = len(rs)
	return page.Execute(w, pv)
}

func buildMatrix(sv *siteView) {
	r := sv.R
	if len(r.Completion) == 0 {
		sv.Completion = "n/a"
		return
	}
	var events []string
	seenEv := map[string]bool{}
	type rowKey struct{ inst, form string }
	var rows []rowKey
	seenRow := map[rowKey]bool{}
	cells := map[rowKey]map[string]messages.ProtocolCompletion{}
	recs, comp := 0, 0
	for _, c := range r.Completion {
		if !seenEv[c.Event] {
			seenEv[c.Event] = true
			events = append(events, c.Event)
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
				sv.Items = append(sv.Items, itemRow{Instrument: c.Instrument, Event: c.Event, Field: it.Field, Missing: it.Missing, Saved: it.Saved,
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
			c, ok := cells[k][e]
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

var page = template.Must(template.New("page").Funcs(template.FuncMap{
	"time": Since,
	"pct":  func(f float64) string { return fmt.Sprintf("%.0f%%", 100*f) },
	"timep": func(t *time.Time) string {
		if t == nil {
			return ""
		}
		return Since(*t)
	},
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Protocol check: {{.Protocol}}</title>
<style>
:root { --err:#b3261e; --warn:#8a5a00; --ok:#1b6e2d; --muted:#5f6368; --line:#d0d4da; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color:#1f2328; margin: 1.5rem auto; max-width: 1200px; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin: 0 0 .25rem; } h2 { font-size: 1.25rem; margin-top: 2.5rem; border-bottom: 2px solid var(--line); padding-bottom: .25rem; }
h3 { font-size: 1.05rem; margin: 1.25rem 0 .5rem; }
.muted { color: var(--muted); } .small { font-size: 12px; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0 1rem; }
th, td { border: 1px solid var(--line); padding: .3rem .5rem; text-align: left; vertical-align: top; }
th { background: #f3f4f6; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.status { font-weight: 600; white-space: nowrap; }
.status.conformant { color: var(--ok); } .status.deviations { color: var(--err); } .status.error { color: var(--warn); }
.sev-error { color: var(--err); font-weight: 600; } .sev-warning { color: var(--warn); font-weight: 600; } .sev-info { color: var(--muted); }
td.good { background: #e6f4ea; } td.fair { background: #fef7e0; } td.low { background: #fce8e6; } td.na { color: var(--muted); }
.box { border: 1px solid var(--line); border-left: 4px solid var(--err); padding: .5rem .75rem; background: #fff8f7; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px; }
nav a { margin-right: .75rem; }
ul.changes li { margin: .15rem 0; }
@media print {
  body { margin: 0; max-width: none; font-size: 11px; }
  a { color: inherit; text-decoration: none; }
  nav, .noprint { display: none; }
  section.site { page-break-before: always; break-before: page; }
  tr, .box { page-break-inside: avoid; break-inside: avoid; }
  thead { display: table-header-group; }
  td.good, td.fair, td.low, th { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
</style>
</head>
<body>
<header>
<h1>Protocol check</h1>
<p class="muted">Protocol: <strong>{{.Protocol}}</strong> · {{.Checked}} site(s): {{.Conform}} conformant, {{.Deviating}} with deviations, {{.Failed}} not checked · page generated {{.Generated}}</p>
</header>
<h2 id="summary-heading">Network summary</h2>
<table id="summary">
<thead><tr><th>Site</th><th>Status</th><th class="num">Score</th><th class="num">Errors</th><th class="num">Warnings</th><th class="num">Present</th><th class="num">Substituted</th><th class="num">Missing</th><th class="num">Completion</th><th class="num">Changes</th><th>Checked</th></tr></thead>
<tbody>
{{range .Sites}}<tr class="site-row" id="row-{{.Anchor}}">
<td class="site"><a href="#{{.Anchor}}">{{.R.Site}}</a>{{if and .R.SiteName (ne .R.SiteName .R.Site)}} <span class="muted small">{{.R.SiteName}}</span>{{end}}</td>
<td class="status {{.R.Status}}">{{.R.Status}}</td>
<td class="num score">{{.Score}}</td>
<td class="num">{{.R.Errors}}</td><td class="num">{{.R.Warnings}}</td>
<td class="num">{{.Present}}</td><td class="num">{{.Substituted}}</td><td class="num">{{.Missing}}</td>
<td class="num">{{.Completion}}</td><td class="num">{{len .R.Changes}}</td>
<td class="small">{{time .R.CheckedAt}}</td>
</tr>
{{end}}</tbody>
</table>
<p class="muted small">Score: 100 × the mean over required instruments of 0.8 × (fields present without error ÷ fields expected) + 0.2 × (planned events designated ÷ planned events), minus 0.1 per instrument-level error; a missing instrument scores 0. Warnings and notes never lower the score. Completion: forms marked Complete among records with a row at the planned events.</p>

{{range .Sites}}
<section class="site" id="{{.Anchor}}">
<h2>Site {{.R.Site}}{{if and .R.SiteName (ne .R.SiteName .R.Site)}}: {{.R.SiteName}}{{end}} — <span class="status {{.R.Status}}">{{.R.Status}}</span>, score {{.Score}}</h2>
<p class="muted small">Checked {{time .R.CheckedAt}} against {{.R.ProtocolName}} {{.R.ProtocolVersion}}{{if .R.RunID}} · run <code>{{.R.RunID}}</code>{{end}}{{if .R.MetadataHash}} · metadata <code>{{printf "%.12s" .R.MetadataHash}}</code>{{end}} · {{if .R.Longitudinal}}longitudinal, {{.R.Arms}} arm(s), {{.R.Events}} event(s){{else}}classic project (no events){{end}}</p>
<nav class="noprint small"><a href="#summary-heading">↑ summary</a></nav>
{{if .R.Error}}<div class="box"><strong>Could not check this site.</strong> {{.R.Error}}</div>{{end}}

{{if .R.Changes}}<h3>Changes since the last check{{with timep .R.PreviousCheckedAt}} ({{.}}){{end}}</h3>
<ul class="changes">{{range .R.Changes}}<li>{{.Message}}</li>{{end}}</ul>{{end}}

{{if .R.Instruments}}<h3>Instruments</h3>
<table>
<thead><tr><th>Instrument</th><th>Status</th><th>Site form</th><th>Matched by</th><th class="num">Fields ok</th><th>Planned events designated</th><th class="num">Score</th></tr></thead>
<tbody>{{range .R.Instruments}}<tr>
<td>{{.Label}} <span class="muted small"><code>{{.Instrument}}</code></span></td>
<td class="status">{{.Status}}{{if .Substitute}} by <code>{{.Substitute}}</code>{{end}}</td>
<td>{{if .Form}}<code>{{.Form}}</code>{{else}}—{{end}}</td>
<td>{{.MatchedBy}}</td>
<td class="num">{{.FieldsOK}} / {{.FieldsExpected}}</td>
<td>{{len .EventsMapped}} / {{len .EventsPlanned}}{{range .EventsPlanned}} <span class="small muted">{{.}}</span>{{end}}</td>
<td class="num">{{pct .Score}}</td>
</tr>{{if .Error}}<tr><td colspan="7" class="sev-error small">{{.Error}}</td></tr>{{end}}{{end}}</tbody>
</table>{{end}}

{{if .Errors}}<h3>Deviations ({{len .Errors}})</h3>{{template "findings" .Errors}}{{end}}
{{if .Warnings}}<h3>Warnings ({{len .Warnings}})</h3>{{template "findings" .Warnings}}{{end}}
{{if .Infos}}<h3>Notes ({{len .Infos}})</h3>{{template "findings" .Infos}}{{end}}

{{if .Matrix}}<h3>Completion (forms complete / records at the event)</h3>
<table>
<thead><tr><th>Instrument</th>{{range .Events}}<th class="num">{{if .}}{{.}}{{else}}(all){{end}}</th>{{end}}</tr></thead>
<tbody>{{range .Matrix}}<tr><td>{{.Instrument}} <span class="muted small"><code>{{.Form}}</code></span></td>{{range .Cells}}<td class="num {{.Class}}" title="{{.Title}}">{{.Text}}</td>{{end}}</tr>{{end}}</tbody>
</table>{{end}}
{{if .Items}}<h3>Item missingness (unanswered items in saved forms)</h3>
<table>
<thead><tr><th>Instrument</th><th>Event</th><th>Item</th><th class="num">Missing</th><th class="num">Saved forms</th><th class="num">Rate</th></tr></thead>
<tbody>{{range .Items}}<tr><td>{{.Instrument}}</td><td>{{.Event}}</td><td><code>{{.Field}}</code></td><td class="num">{{.Missing}}</td><td class="num">{{.Saved}}</td><td class="num">{{.Rate}}</td></tr>{{end}}</tbody>
</table>{{end}}
</section>
{{end}}
</body>
</html>
{{define "findings"}}<table>
<thead><tr><th>Kind</th><th>Instrument / form</th><th>Field</th><th>Event</th><th>Protocol</th><th>Site</th><th>What to do</th></tr></thead>
<tbody>{{range .}}<tr>
<td class="sev-{{.Severity}}">{{.Kind}}</td>
<td>{{.Instrument}}{{if .Form}} <span class="muted small"><code>{{.Form}}</code></span>{{end}}</td>
<td>{{if .Field}}<code>{{.Field}}</code>{{end}}{{if .SiteField}} → <code>{{.SiteField}}</code>{{end}}</td>
<td>{{.Event}}</td>
<td class="small">{{.Expected}}</td>
<td class="small">{{.Actual}}</td>
<td>{{.Message}}</td>
</tr>{{end}}</tbody>
</table>{{end}}
`))
