package bench

import (
	"fmt"
	"io"
	"strings"
	"time"
)

func rate(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

func mb(b int64) string {
	if b <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.0f", float64(b)/(1<<20))
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f", d.Seconds()) }

func per1k(calls int64, records int) string {
	if records <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", float64(calls)*1000/float64(records))
}

// WriteMarkdown prints the results as Markdown tables.
func WriteMarkdown(w io.Writer, r *Report) {
	m := r.Machine
	fmt.Fprintf(w, "## REDCap Relay benchmark (%s mode)\n\n", r.Mode)
	fmt.Fprintf(w, "Machine: %s, %d cores, %d MB RAM, %s, %s. Run %s, took %s.\n\n", m.CPU, m.Cores, m.MemMB, m.OS, m.Go,
		r.Started.Format("2006-01-02 15:04 UTC"), r.Duration.Round(time.Second))
	fmt.Fprintf(w, "Pipeline settings: export batch %d records, import batch %d records, %d import calls at once (the network file's defaults).\n",
		r.Net.SiteBatch, r.Net.ImportBatch, r.Net.ImportConcurrency)
	l := REDCapLike
	fmt.Fprintf(w, "REDCap-like model: export %s/call + %s/value; import %s/call + %s/value; each server works on %d calls at once.\n\n",
		l.ExportCall, l.ExportValue, l.ImportCall, l.ImportValue, l.Concurrency)

	fmt.Fprintln(w, "| Scale | Regime | Run | Wall (s) | Records/s | API calls | Calls / 1k records | Records published | Peak RSS (MB) | vs baseline |")
	fmt.Fprintln(w, "|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
	for _, x := range r.Results {
		n := x.Scale.Total()
		b := x.Baseline
		fmt.Fprintf(w, "| %s | %s | baseline: one export + one import per site, in turn | %s | %.0f | %d | %s | - | %s | 1.00x |\n",
			x.Scale.Name, x.Regime, secs(b.Wall), rate(n, b.Wall), b.Calls, per1k(b.Calls, n), mb(b.PeakRSS))
		f := x.Full
		fmt.Fprintf(w, "| %s | %s | relay all: full sync | %s | %.0f | %d | %s | %d | %s | %.2fx |\n",
			x.Scale.Name, x.Regime, secs(f.Wall), rate(n, f.Wall), f.SiteCalls+f.DestCalls, per1k(f.SiteCalls+f.DestCalls, n), f.Exported, mb(x.RelayRSS),
			b.Wall.Seconds()/f.Wall.Seconds())
		for _, inc := range []struct {
			name string
			s    SyncResult
		}{{"relay all: incremental, nothing changed", x.None}, {fmt.Sprintf("relay all: incremental, 1%% changed (%d records)", x.ChangedCount), x.Changed}} {
			calls := inc.s.SiteCalls + inc.s.DestCalls
			fmt.Fprintf(w, "| %s | %s | %s | %s | - | %d (max %d per site) | - | %d | | %.1fx |\n",
				x.Scale.Name, x.Regime, inc.name, secs(inc.s.Wall), calls, inc.s.MaxSiteCalls, inc.s.Exported, b.Wall.Seconds()/inc.s.Wall.Seconds())
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "The destination's capacity bound (its model's cost for what was sent, its concurrency fully used: values x per-value time / concurrency; at the calls made, plus calls x per-call time / concurrency) and CPU:")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| Scale | Regime | Run | Wall (s) | Values imported | Import calls | Value-only bound (s) | Bound at calls made (s) | Wall / value-only bound | Wall / bound at calls | CPU (s) | CPU µs / record |")
	fmt.Fprintln(w, "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, x := range r.Results {
		n := x.Scale.Total()
		row := func(run string, wall time.Duration, b *Bound, cpu time.Duration) {
			vals, calls, vb, cb, rv, rc := "-", "-", "-", "-", "-", "-"
			if b != nil {
				vals, calls, vb, cb = fmt.Sprint(b.Values), fmt.Sprint(b.ImportCalls), secs(b.ValueOnly), secs(b.AtCalls)
				rv, rc = ratio(wall, b.ValueOnly), ratio(wall, b.AtCalls)
			}
			c, per := "-", "-"
			if cpu > 0 {
				c, per = fmt.Sprintf("%.1f", cpu.Seconds()), fmt.Sprintf("%.0f", cpuPerRecord(cpu, n))
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", x.Scale.Name, x.Regime, run, secs(wall), vals, calls, vb, cb, rv, rc, c, per)
		}
		row("baseline", x.Baseline.Wall, x.BaselineBound, x.Baseline.CPU)
		row("relay all: full sync", x.Full.Wall, x.Bound, x.FullCPU)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Where the full sync's time goes (from the requests: all sites exported / transformer backlog empty / importer drained):")
	fmt.Fprintln(w)
	for _, x := range r.Results {
		f := x.Full
		fmt.Fprintf(w, "- %s, %s: exported %ss, transformed %ss, imported %ss; relay all used %.1f s of CPU.\n", x.Scale.Name, x.Regime,
			secs(f.ExportDone), secs(f.TransformDone), secs(f.Wall), x.RelayCPU.Seconds())
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Ceilings (same machine, same messages):")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| Scale | Ceiling | Rate |")
	fmt.Fprintln(w, "|---|---|---:|")
	for _, x := range r.Results {
		if x.JetStream != nil {
			j := x.JetStream
			fmt.Fprintf(w, "| %s | JetStream async publish, file store (%d per-record messages, avg %d bytes) | %.0f msg/s |\n", x.Scale.Name, j.Messages, j.AvgBytes, j.PublishRate)
			fmt.Fprintf(w, "| %s | JetStream durable pull consume + ack | %.0f msg/s |\n", x.Scale.Name, j.ConsumeRate)
		}
		if x.Regime == ZeroLatency.Name {
			b := x.Baseline
			fmt.Fprintf(w, "| %s | simulator Export Records, one call per site | %.0f records/s |\n", x.Scale.Name, rate(b.Records, b.Export))
			fmt.Fprintf(w, "| %s | simulator Import Records, one call per site | %.0f records/s |\n", x.Scale.Name, rate(b.Records, b.Import))
			fmt.Fprintf(w, "| %s | transfer policy in process (group + Apply) | %.0f records/s |\n", x.Scale.Name, rate(b.Records, b.Transform))
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Targets (issues #7 and #18):")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| Target | Want | Got | Met |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for _, t := range r.Targets {
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", t.Name, t.Want, t.Got, map[bool]string{true: "yes", false: "**no**"}[t.OK])
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Peak RSS: VmHWM of each child process (`relay all`; `relay bench baseline` for the baseline), read from /proc and getrusage. The simulators run in the parent process and are not counted.")
}

func ratio(a, b time.Duration) string {
	if b <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", a.Seconds()/b.Seconds())
}

func targets(r *Report) []Target {
	var out []Target
	var rss []Result
	for _, x := range r.Results {
		n := x.Scale.Total()
		ratio := x.Baseline.Wall.Seconds() / x.Full.Wall.Seconds()
		if x.Bound != nil && x.Regime == REDCapLike.Name {
			g := x.Full.Wall.Seconds() / x.Bound.ValueOnly.Seconds()
			out = append(out, Target{Name: x.Scale.Name + ": " + x.Regime + ", full sync vs the destination's value-only bound", Want: "<= 1.25x",
				Got: fmt.Sprintf("%.2fx (%.1f s vs %.1f s)", g, x.Full.Wall.Seconds(), x.Bound.ValueOnly.Seconds()), OK: g <= 1.25})
		}
		if x.Regime == ZeroLatency.Name && x.FullCPU > 0 {
			us := cpuPerRecord(x.FullCPU, n)
			out = append(out, Target{Name: x.Scale.Name + ": zero latency, relay all CPU per record (full sync)", Want: "<= 120 µs",
				Got: fmt.Sprintf("%.0f µs", us), OK: us <= 120})
		}
		if x.Regime == ZeroLatency.Name {
			rps := rate(n, x.Full.Wall)
			out = append(out,
				Target{Name: x.Scale.Name + ": zero latency, records/s end to end", Want: ">= 10,000", Got: fmt.Sprintf("%.0f", rps), OK: rps >= 10000},
				Target{Name: x.Scale.Name + ": zero latency, wall time vs baseline", Want: "<= 1.0x baseline", Got: fmt.Sprintf("%.2fx baseline", 1/ratio), OK: 1/ratio <= 1})
			if x.RelayRSS > 0 {
				rss = append(rss, x)
			}
		} else if x.Regime == REDCapLike.Name {
			out = append(out, Target{Name: x.Scale.Name + ": " + x.Regime + ", speed-up vs baseline", Want: ">= 3x", Got: fmt.Sprintf("%.2fx", ratio), OK: ratio >= 3})
		}
		out = append(out,
			Target{Name: x.Scale.Name + ", " + x.Regime + ": incremental, nothing changed", Want: "<= 3 calls per site, 0 published",
				Got: fmt.Sprintf("max %d calls per site, %d published", x.None.MaxSiteCalls, x.None.Exported), OK: x.None.MaxSiteCalls <= 3 && x.None.Exported == 0 && x.None.RawMessages == 0},
			Target{Name: x.Scale.Name + ", " + x.Regime + ": incremental, 1% changed", Want: "only the changes published; time << full sync",
				Got: fmt.Sprintf("%d of %d published, %.0f%% of the full sync's time", x.Changed.Exported, x.ChangedCount, 100*x.Changed.Wall.Seconds()/x.Full.Wall.Seconds()),
				OK:  x.Changed.Exported == x.ChangedCount && x.Changed.Wall.Seconds() <= 0.2*x.Full.Wall.Seconds()})
	}
	if len(rss) > 0 {
		big := rss[len(rss)-1]
		out = append(out, Target{Name: fmt.Sprintf("relay all peak RSS at %d records", big.Scale.Total()), Want: "<= 256 MB", Got: mb(big.RelayRSS) + " MB", OK: big.RelayRSS <= 256<<20})
		if len(rss) > 1 {
			small := rss[0]
			g := float64(big.RelayRSS) / float64(small.RelayRSS)
			out = append(out, Target{Name: "relay all peak RSS flat in record count", Want: "about the same at " + strings.Join([]string{fmt.Sprint(small.Scale.Total()), fmt.Sprint(big.Scale.Total())}, " and ") + " records",
				Got: fmt.Sprintf("%s MB -> %s MB (x%.2f for x%.0f records)", mb(small.RelayRSS), mb(big.RelayRSS), g, float64(big.Scale.Total())/float64(small.Scale.Total())), OK: g <= 1.5})
		}
	}
	return out
}
