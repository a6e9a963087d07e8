package web

// pageHTML is the dashboard: inline CSS, inline SVG, no script.
const pageHTML = `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="{{.Refresh}}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{.Title}}: operator dashboard</title>
<style>
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:1.2rem 1.6rem;color:#1f2933;background:#f7f8fa}
h1{font-size:1.35rem;margin:0 0 .2rem} h2{font-size:1.05rem;margin:1.4rem 0 .5rem}
.at{color:#52606d;font-size:.85rem}
table{border-collapse:collapse;background:#fff;box-shadow:0 1px 2px #0001;font-size:.8rem}
th,td{padding:.28rem .45rem;border-bottom:1px solid #e4e7eb;text-align:left;white-space:nowrap}
th{background:#eef1f4;font-weight:600}
td.num{text-align:right;font-variant-numeric:tabular-nums}
.result{font-weight:600;border-radius:3px}
.r-synced{color:#116d3a}.r-partial{color:#9a5b00}.r-failed{color:#b42318}.r-retrying{color:#b42318}
.r-importing,.r-running{color:#1c5fb0}.r-deletions-held{color:#9a5b00}.r-never-run{color:#7b8794}
.lines{margin:.15rem 0 .4rem 0;padding-left:1.1rem;color:#3e4c59;font-size:.8rem}
.charts{display:flex;flex-wrap:wrap;gap:1rem}
.chart{background:#fff;box-shadow:0 1px 2px #0001;padding:.4rem .6rem}
.chart .cap{font-size:.75rem;color:#52606d}
rect.ok{fill:#3b82c4} rect.bad{fill:#d64545} polyline{fill:none;stroke:#7c5cbf;stroke-width:2} circle{fill:#7c5cbf}
.stuck{color:#b42318} .error{color:#b42318;font-weight:600}
</style></head><body>
<h1>{{.Title}}: operator dashboard</h1>
<div class="at">read from NATS at {{.At}}; this page refreshes every {{.Refresh}} s</div>
{{if .Error}}<p class="error">{{.Error}}</p>{{end}}
<h2>Sites</h2>
<table id="sites">
<tr><th>Site</th><th>Result</th><th>Last run</th><th>Started (UTC)</th><th>Took</th><th>Exported</th><th>Deleted</th><th>Cleaned</th><th>Imported</th><th>Dead-lettered</th><th>Waiting</th><th>Next run (UTC)</th><th>Last success (UTC)</th><th>Verified</th><th>Protocol</th></tr>
{{range .Sites}}<tr class="site-row" data-site="{{.Site}}">
<td class="site" title="{{.Name}}">{{.Site}}</td><td class="result r-{{.Outcome | cls}}">{{.Outcome}}</td><td>{{.RunID}}</td><td>{{.Started}}</td><td class="num">{{.Took}}</td>
<td class="num exported">{{.Counts.Exported}}</td><td class="num deleted">{{.Counts.Deleted}}</td><td class="num cleaned">{{.Counts.Cleaned}}</td><td class="num imported">{{.Counts.Imported}}</td><td class="num dead">{{.Counts.DeadLettered}}</td><td class="num waiting">{{.Counts.Waiting}}</td>
<td>{{.Next}}</td><td>{{.LastSuccess}}</td><td>{{.Verified}}</td><td class="num score">{{.Score}}</td></tr>
{{if .Lines}}<tr><td></td><td colspan="14"><ul class="lines">{{range .Lines}}<li>{{.}}</li>{{end}}</ul></td></tr>{{end}}
{{end}}</table>
<h2>Last 30 runs</h2>
<div class="charts">{{range .Sites}}
<div class="chart"><div class="cap"><b>{{.Site}}</b>: {{.Records.Label}} (max {{.Records.Max}}), {{.Scores.Label}}</div>
<svg width="{{.Records.W}}" height="{{.Records.H}}" viewBox="0 0 {{.Records.W}} {{.Records.H}}" role="img" aria-label="{{.Site}} {{.Records.Label}}"><rect x="0" y="0" width="{{.Records.W}}" height="{{.Records.H}}" fill="#f3f5f7"/>{{range .Records.Bars}}<rect class="{{.Class}}" x="{{.X}}" y="{{.Y}}" width="{{.W}}" height="{{.H}}"><title>{{.Title}}</title></rect>{{end}}{{if .Records.Empty}}<text x="8" y="36" font-size="11" fill="#7b8794">no runs yet</text>{{end}}</svg>
<svg width="{{.Scores.W}}" height="{{.Scores.H}}" viewBox="0 0 {{.Scores.W}} {{.Scores.H}}" role="img" aria-label="{{.Site}} {{.Scores.Label}}"><rect x="0" y="0" width="{{.Scores.W}}" height="{{.Scores.H}}" fill="#f3f5f7"/>{{if .Scores.Line}}<polyline points="{{.Scores.Line}}"/>{{end}}{{range .Scores.Dots}}<circle cx="{{.X}}" cy="{{.Y}}" r="2.5"><title>{{.Title}}</title></circle>{{end}}{{if .Scores.Empty}}<text x="8" y="36" font-size="11" fill="#7b8794">not checked yet</text>{{end}}</svg>
</div>{{end}}</div>
<h2>Stages</h2>
<table id="stages"><tr><th>Stage</th><th>Stream</th><th>Consumer</th><th>Pending</th><th>Ack pending</th><th>Lag</th><th>Readers waiting</th><th>Stuck</th></tr>
{{range .Lag}}<tr class="stage-row" data-stage="{{.Stage}}"><td>{{.Stage}}</td><td>{{.Stream}}</td><td>{{.Consumer}}</td>{{if .Missing}}<td colspan="5" class="stuck">{{if .StreamMissing}}stream missing: run relay provision, then relay sync --all --full{{else}}consumer missing{{end}}</td>{{else}}<td class="num">{{.Pending}}</td><td class="num">{{.AckPending}}</td><td class="num lag">{{.Lag}}</td><td class="num">{{.Waiting}}</td><td class="stuck">{{.Stuck}}</td>{{end}}</tr>
{{end}}</table>
<h2>Dead letters held</h2>
{{if .DLQ}}<table id="dlq"><tr><th>Stage</th><th>Site</th><th>Dead letters</th></tr>
{{range .DLQ}}<tr class="dlq-row"><td>{{.Stage}}</td><td>{{.Site}}</td><td class="num">{{.Count}}</td></tr>{{end}}</table>{{else}}<p>None.</p>{{end}}
{{with .Notifier}}<h2>Alerts</h2><table id="notifier"><tr><th>Channel</th><th>Sent</th><th>Waiting</th><th>Failed attempts</th><th>Not delivered</th><th>Last error</th></tr>
{{range .Channels}}<tr><td>{{.Channel}}</td><td class="num">{{.Sent}}</td><td class="num">{{.Waiting}}</td><td class="num">{{.Failures}}</td><td class="num">{{.GaveUp}}</td><td>{{.LastError}}</td></tr>{{end}}</table>{{end}}
</body></html>
`
