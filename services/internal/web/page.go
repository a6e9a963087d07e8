package web

import (
	"fmt"
	"html/template"
	"math"
	"strings"
	"time"

	"github.com/redcap-relay/relay/services/internal/ops"
)

// page is what the template renders.
type page struct {
	Title    string
	Refresh  int
	At       string
	Error    string
	Sites    []siteRow
	Lag      []ops.StageLag
	DLQ      []dlqRow
	Notifier *ops.NotifierStatus
}

type siteRow struct {
	ops.SiteStatus
	RunID, Started, Took, Next, LastSuccess, Verified, Score string
	Lines                                                    []string
	Records, Scores                                          chart
}

type dlqRow struct {
	Stage, Site string
	Count       uint64
}

// chart is a small SVG chart: bars (records per run) or a line (scores).
type chart struct {
	W, H   int
	Bars   []bar
	Line   string // SVG polyline points
	Dots   []dot
	Max    string // the top of the scale
	Empty  bool
	Label  string
	Points int
}

type bar struct {
	X, Y, W, H float64
	Class      string
	Title      string
}

type dot struct {
	X, Y  float64
	Title string
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04")
}

func build(st *ops.Status, err error, o Options) page {
	p := page{Title: "REDCap Relay", Refresh: int(o.Refresh.Seconds()), At: time.Now().UTC().Format("2006-01-02 15:04:05 UTC")}
	if err != nil {
		p.Error = "The pipeline's state cannot be read: " + err.Error()
		return p
	}
	p.At = st.At.UTC().Format("2006-01-02 15:04:05 UTC")
	p.Lag, p.Notifier = st.Lag, st.Notifier
	for _, s := range st.Sites {
		p.Sites = append(p.Sites, row(s))
		for _, stage := range []string{"export", "transform", "import", "check"} {
			if n := s.DLQ[stage]; n > 0 {
				p.DLQ = append(p.DLQ, dlqRow{Stage: stage, Site: s.Site, Count: n})
			}
		}
	}
	return p
}

func row(s ops.SiteStatus) siteRow {
	r := siteRow{SiteStatus: s, RunID: "-", Started: "-", Took: "-", Next: "-", LastSuccess: "-", Verified: "-", Score: "-"}
	if s.Run != nil {
		r.RunID, r.Started, r.Took = s.Run.ID, stamp(s.Run.Started), ops.Seconds(s.Run.Seconds)
	}
	if s.NextRun != nil {
		r.Next = stamp(*s.NextRun)
	}
	if s.LastSuccess != nil {
		r.LastSuccess = stamp(s.LastSuccess.At)
	}
	if v := s.Verification; v != nil {
		r.Verified = fmt.Sprintf("%s, %s (%d differences)", stamp(v.At), v.Status, v.Differences)
	}
	if p := s.Protocol; p != nil {
		r.Score = ops.ScoreText(p.Score)
	}
	if s.Reason != "" {
		r.Lines = append(r.Lines, s.Reason)
	}
	if pr := s.Progress; pr != nil {
		r.Lines = append(r.Lines, fmt.Sprintf("running for %s: exported %d, cleaned %d, imported %d", ops.Seconds(pr.Elapsed), pr.Exported, pr.Cleaned, pr.Imported))
	}
	if a := s.Again; a.Replayed > 0 || a.Retried > 0 {
		r.Lines = append(r.Lines, fmt.Sprintf("delivered again since the run (not in its counts): %d replayed, %d retried from the DLQ (%d failed again)", a.Replayed, a.Retried, a.FailedAgain))
	}
	if s.LastRun != nil {
		r.Lines = append(r.Lines, s.LastRun.Warnings...)
	}
	r.Lines = append(r.Lines, s.Notes...)
	r.Records = recordsChart(s.History)
	r.Scores = scoreChart(s.Scores)
	return r
}

const chartW, chartH, pad = 300.0, 64.0, 4.0

// recordsChart draws one bar per run: records exported and deleted; a
// failed run is a red stub.
func recordsChart(runs []ops.RunPoint) chart {
	c := chart{W: int(chartW), H: int(chartH), Label: "records per run", Points: len(runs)}
	if len(runs) == 0 {
		c.Empty = true
		return c
	}
	top := 1
	for _, r := range runs {
		top = max(top, r.Exported+r.Deleted)
	}
	slot := (chartW - 2*pad) / float64(History)
	for i, r := range runs {
		n := r.Exported + r.Deleted
		h := (chartH - 2*pad) * float64(n) / float64(top)
		class := "ok"
		if r.Phase == "failed" {
			class, h = "bad", 3
		}
		h = math.Max(h, 1)
		c.Bars = append(c.Bars, bar{X: pad + float64(i)*slot + 1, Y: chartH - pad - h, W: math.Max(slot-2, 1), H: h, Class: class,
			Title: fmt.Sprintf("%s: %s, %d records", r.ID, r.Phase, n)})
	}
	c.Max = fmt.Sprint(top)
	return c
}

// scoreChart draws the protocol scores on a 0..100 scale.
func scoreChart(scores []ops.ScorePoint) chart {
	c := chart{W: int(chartW), H: int(chartH), Label: "protocol score", Points: len(scores), Max: "100"}
	if len(scores) == 0 {
		c.Empty = true
		return c
	}
	slot := (chartW - 2*pad) / float64(History)
	for i, s := range scores {
		x := pad + float64(i)*slot + slot/2
		y := chartH - pad - (chartH-2*pad)*s.Score/100
		c.Line += fmt.Sprintf("%.1f,%.1f ", x, y)
		c.Dots = append(c.Dots, dot{X: x, Y: y, Title: fmt.Sprintf("%s: %.1f", stamp(s.At), s.Score)})
	}
	return c
}

var pageTemplate = template.Must(template.New("page").Funcs(template.FuncMap{
	"cls": func(s string) string { return strings.ReplaceAll(s, " ", "-") },
}).Parse(pageHTML))
