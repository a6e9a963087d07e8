package report

// pageTemplate renders the network page ("index") and a site's own page
// ("sitepage"). No scripts, no external fonts or styles; print rules keep
// every table on one page when it fits (a long one repeats its header).
const pageTemplate = `{{define "style"}}<style>
:root { --err:#b3261e; --warn:#8a5a00; --ok:#1b6e2d; --muted:#5f6368; --line:#d0d4da; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color:#1f2328; margin: 1.5rem auto; max-width: 1200px; padding: 0 1rem; }
h1 { font-size: 1.5rem; margin: 0 0 .25rem; } h2 { font-size: 1.25rem; margin-top: 2rem; border-bottom: 2px solid var(--line); padding-bottom: .25rem; }
h3 { font-size: 1.05rem; margin: 1.25rem 0 .5rem; }
.muted { color: var(--muted); } .small { font-size: 12px; }
table { border-collapse: collapse; width: 100%; margin: .5rem 0 1rem; }
th, td { border: 1px solid var(--line); padding: .3rem .5rem; text-align: left; vertical-align: top; }
th { background: #f3f4f6; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.status { font-weight: 600; white-space: nowrap; }
.status.conformant, .status.present, .status.substituted { color: var(--ok); }
.status.deviations, .status.missing, .status.incomplete { color: var(--err); } .status.error { color: var(--warn); }
.sev-error { color: var(--err); font-weight: 600; } .sev-warning { color: var(--warn); font-weight: 600; } .sev-info { color: var(--muted); font-weight: 600; }
.code { display: block; font-weight: 400; color: var(--muted); font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 11px; }
td.good, .legend .good { background: #e6f4ea; } td.fair, .legend .fair { background: #fef7e0; } td.low, .legend .low { background: #fce8e6; } td.na { color: var(--muted); }
.legend span { display: inline-block; padding: 0 .4rem; margin-right: .5rem; border: 1px solid var(--line); }
.ok { color: var(--ok); } .no { color: var(--err); }
.box { border: 1px solid var(--line); border-left: 4px solid var(--err); padding: .5rem .75rem; background: #fff8f7; }
code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px; }
q { font-style: italic; }
ul.changes li { margin: .15rem 0; }
@page { size: A4; margin: 14mm 12mm; }
@media print {
  body { margin: 0; max-width: none; font-size: 10.5px; }
  a { color: inherit; text-decoration: none; }
  .noprint { display: none; }
  section.site { break-before: page; page-break-before: always; }
  section.site:first-of-type { break-before: auto; page-break-before: auto; }
  section.block { break-inside: avoid; page-break-inside: avoid; }
  h2, h3 { break-after: avoid; page-break-after: avoid; }
  tr, .box { break-inside: avoid; page-break-inside: avoid; }
  thead { display: table-header-group; }
  td.good, td.fair, td.low, th, .legend span { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
</style>{{end}}

{{define "index"}}<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Protocol check: {{.Protocol}}</title>
{{template "style"}}
</head>
<body>
<header>
<h1>Protocol check</h1>
<p class="muted">Protocol: <strong>{{.Protocol}}</strong> · {{.Checked}} site(s): {{.Conform}} conformant, {{.Deviating}} with deviations, {{.Failed}} not checked · page made {{.Generated}} · times in {{.Zone}}</p>
</header>
<section class="block">
<h2 id="summary-heading">Network summary</h2>
<table id="summary">
<thead><tr><th>Site</th><th>Status</th><th class="num">Score</th><th class="num">Errors</th><th class="num">Warnings</th><th class="num">Present</th><th class="num">Substituted</th><th class="num">Incomplete</th><th class="num">Missing</th><th class="num">Completion</th><th class="num">Changes</th><th>Checked</th></tr></thead>
<tbody>
{{range .Sites}}<tr class="site-row" id="row-{{.Anchor}}">
<td class="site"><a href="{{.Page}}">{{.R.Site}}</a>{{if and .R.SiteName (ne .R.SiteName .R.Site)}} <span class="muted small">{{.R.SiteName}}</span>{{end}}</td>
<td class="status {{.R.Status}}">{{.R.Status}}</td>
<td class="num score">{{.Score}}</td>
<td class="num">{{.R.Errors}}</td><td class="num">{{.R.Warnings}}</td>
<td class="num">{{.Present}}</td><td class="num">{{.Substituted}}</td><td class="num">{{.Incomplete}}</td><td class="num">{{.Missing}}</td>
<td class="num">{{.Completion}}</td><td class="num">{{len .R.Changes}}</td>
<td class="small">{{.Checked}}</td>
</tr>
{{end}}</tbody>
</table>
</section>
{{template "scorenote"}}
<p class="small">Each site's page (linked above, <code>&lt;site&gt;.html</code> beside this one) holds only that site's findings, to forward to the site as it is.</p>
{{range .Sites}}{{if or .R.Changes .R.Error}}
<section class="block" id="{{.Anchor}}">
<h3><a href="{{.Page}}">Site {{.R.Site}}</a>: <span class="status {{.R.Status}}">{{.R.Status}}</span>, score {{.Score}}</h3>
{{if .R.Error}}<div class="box"><strong>Could not check this site.</strong> {{.R.Error}}</div>{{end}}
{{if .R.Changes}}<p class="small muted">Changes since the last check{{with .Previous}} ({{.}}){{end}}:</p>
<ul class="changes">{{range .R.Changes}}<li>{{.Message}}</li>{{end}}</ul>{{end}}
</section>{{end}}{{end}}
</body>
</html>
{{end}}

{{define "sitepage"}}<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Protocol check: site {{(index .Sites 0).R.Site}}</title>
{{template "style"}}
</head>
<body>
{{range .Sites}}{{template "site" .}}{{end}}
<p class="muted small">Page made {{.Generated}}; times in {{.Zone}}.</p>
{{template "scorenote"}}
</body>
</html>
{{end}}

{{define "scorenote"}}<p class="muted small">Score: 100 × the mean over required instruments of 0.8 × (items present without error ÷ items expected) + 0.2 × (planned events where it is collected ÷ planned events), minus 0.1 per instrument-level error; a missing instrument scores 0. Warnings and notes never lower the score. Completion: forms marked Complete among records with a row at the planned events.</p>{{end}}

{{define "site"}}<section class="site" id="{{.Anchor}}">
<h1>Protocol check: site {{.R.Site}}{{if and .R.SiteName (ne .R.SiteName .R.Site)}} ({{.R.SiteName}}){{end}}</h1>
<p><span class="status {{.R.Status}}">{{.R.Status}}</span> · score <strong>{{.Score}}</strong> · {{.R.Errors}} deviation(s), {{.R.Warnings}} warning(s), {{.R.Infos}} note(s)</p>
<p class="muted small">Checked {{.Checked}} against {{.R.ProtocolName}} {{.R.ProtocolVersion}} · {{if .R.Longitudinal}}longitudinal, {{.R.Arms}} arm(s), {{.R.Events}} event(s){{else}}no events (classic project, or a dictionary alone){{end}}</p>
{{if .R.Error}}<div class="box"><strong>Could not check this site.</strong> {{.R.Error}}</div>{{end}}

{{if .R.Changes}}<section class="block"><h3>Changes since the last check{{with .Previous}} ({{.}}){{end}}</h3>
<ul class="changes">{{range .R.Changes}}<li>{{.Message}}</li>{{end}}</ul></section>{{end}}

{{if .Instruments}}<section class="block"><h3>Instruments</h3>
<table class="instruments">
<thead><tr><th>Instrument</th><th>Status</th><th>Site form</th><th>Found by</th><th class="num">Items ok</th><th>Planned events (✓ collected)</th><th class="num">Score</th></tr></thead>
<tbody>{{range .Instruments}}<tr>
<td>{{.Label}} <span class="code">{{.Instrument}}</span></td>
<td class="status {{.Status}}">{{.Status}}{{if .Substitute}} <span class="code">as {{.Substitute}}</span>{{end}}</td>
<td>{{if .Form}}<code>{{.Form}}</code>{{range .Parts}} + <code>{{.}}</code>{{end}}{{else}}—{{end}}</td>
<td>{{.MatchedBy}}</td>
<td class="num">{{.FieldsOK}} / {{.FieldsExpected}}</td>
<td>{{range .Events}}<span class="{{if .Mapped}}ok{{else}}no{{end}}">{{if .Mapped}}✓{{else}}✗{{end}} {{.Name}}</span> {{end}}</td>
<td class="num">{{pct .Score}}</td>
</tr>{{if .Error}}<tr><td colspan="7" class="sev-error small">{{.Error}}</td></tr>{{end}}{{end}}</tbody>
</table></section>{{end}}

{{if .Errors}}<section class="block"><h3>Deviations ({{len .Errors}})</h3>{{template "findings" .Errors}}</section>{{end}}
{{if .Warnings}}<section class="block"><h3>Warnings ({{len .Warnings}})</h3>{{template "findings" .Warnings}}</section>{{end}}
{{if .Infos}}<section class="block"><h3>Notes ({{len .Infos}})</h3>{{template "findings" .Infos}}</section>{{end}}

{{if .Matrix}}<section class="block"><h3>Completion (forms complete / records at the event)</h3>
<p class="legend small"><span class="good">80% or more complete</span><span class="fair">50–79%</span><span class="low">under 50%</span><span>— not designated</span> Hover a cell for unverified, incomplete and never-saved counts.</p>
<table class="completion">
<thead><tr><th>Instrument</th>{{range .Events}}<th class="num">{{.Name}}{{if ne .Name .Site}}<span class="code">{{.Site}}</span>{{end}}</th>{{end}}</tr></thead>
<tbody>{{range .Matrix}}<tr><td>{{.Instrument}} <span class="code">{{.Form}}</span></td>{{range .Cells}}<td class="num {{.Class}}" title="{{.Title}}">{{.Text}}</td>{{end}}</tr>{{end}}</tbody>
</table></section>{{end}}
{{if .Items}}<section class="block"><h3>Item missingness (unanswered items in saved forms)</h3>
<table class="items">
<thead><tr><th>Instrument</th><th>Event</th><th>Item</th><th class="num">Missing</th><th class="num">Saved forms</th><th class="num">Rate</th></tr></thead>
<tbody>{{range .Items}}<tr><td>{{.Instrument}}</td><td>{{.Event}}</td><td><code>{{.Field}}</code></td><td class="num">{{.Missing}}</td><td class="num">{{.Saved}}</td><td class="num">{{.Rate}}</td></tr>{{end}}</tbody>
</table></section>{{end}}
</section>{{end}}

{{define "findings"}}<table class="findings">
<thead><tr><th>Finding</th><th>Instrument / form</th><th>Item</th><th>Event</th><th>Protocol</th><th>Site</th><th>What to do</th></tr></thead>
<tbody>{{range .}}<tr>
<td class="sev-{{.Severity}}">{{.Title}}<span class="code">{{.Kind}}</span></td>
<td>{{.Instrument}}{{if .Form}} <span class="code">{{.Form}}</span>{{end}}</td>
<td>{{if .Fields}}{{range $i, $f := .Fields}}{{if $i}}, {{end}}<code>{{$f}}</code>{{end}}{{else}}{{if .Field}}<code>{{.Field}}</code>{{end}}{{if .SiteField}} → <code>{{.SiteField}}</code>{{end}}{{end}}</td>
<td>{{.Event}}</td>
<td class="small">{{.Expected}}{{if .Wording}}<br><q>{{.Wording}}</q>{{end}}</td>
<td class="small">{{.Actual}}{{if .Match}}{{if .Match.Score}}<br><span class="muted">match {{printf "%.2f" .Match.Score}}</span>{{end}}{{end}}</td>
<td>{{.Message}}</td>
</tr>{{end}}</tbody>
</table>{{end}}
`
