package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/pipeline/app"
	"github.com/redcap-relay/relay/services/internal/pipeline/broker"
	"github.com/redcap-relay/relay/services/internal/pipeline/exportreq"
	"github.com/redcap-relay/relay/services/internal/progress"
	"github.com/redcap-relay/relay/services/verifier"
)

// RunOptions configures `relay demo`.
type RunOptions struct {
	DataDir string // everything the demo writes; a temporary folder if empty
	Serve   bool   // keep running after the sync (schedules, metrics, simulator)
	Scale   float64
	Timeout time.Duration
	Out     io.Writer
	Logger  *slog.Logger
	Metrics string
	// FaultAdmin serves the simulator's fault admin API on this address
	// (e.g. 127.0.0.1:8081): PUT /faults to make the sites misbehave.
	FaultAdmin string
}

// Run builds the demo network, runs one full sync of every site through the
// real pipeline (embedded NATS, every service), prints a per-site summary
// and the protocol check, and returns (or keeps serving).
func Run(ctx context.Context, o RunOptions) error {
	if o.Out == nil {
		o.Out = os.Stdout
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.Timeout == 0 {
		o.Timeout = 5 * time.Minute
	}
	// A folder of the user's keeps the simulator's state, tokens and key,
	// and the next demo on it restarts on them; a temporary one does not.
	persist := o.DataDir != ""
	if o.DataDir == "" {
		d, err := os.MkdirTemp("", "relay-demo-")
		if err != nil {
			return err
		}
		o.DataDir = d
	}
	start := time.Now()
	simd, err := startSimulated(o.Logger, simOptions{dir: o.DataDir, scale: o.Scale, persist: persist, admin: o.FaultAdmin})
	if err != nil {
		return err
	}
	defer simd.close()
	setup := simd.setup
	fmt.Fprintf(o.Out, "REDCap Relay demo\n  simulated REDCap: %s (%d site projects + destination)\n  files:            %s\n",
		setup.SimURL, len(Sites), setup.Dir)
	if simd.restart {
		fmt.Fprintf(o.Out, "  restarted on the demo network already in that folder: its projects, data, tokens, key and JetStream store (delete the folder for a new one)\n")
	}
	if simd.adminURL != "" {
		fmt.Fprintf(o.Out, "  fault admin API:  %s (e.g. curl -X PUT %s -d '{\"error_rate\":0.2}'; curl -X DELETE %s)\n", simd.adminURL, simd.adminURL, simd.adminURL)
	}
	net, err := config.Load(setup.NetworkFile)
	if err != nil {
		return err
	}
	stack, err := app.Start(ctx, app.Options{Network: net, Embedded: true, NATSPort: -1, Logger: o.Logger, MetricsAddr: o.Metrics})
	if err != nil {
		return err
	}
	defer stack.Close()
	fmt.Fprintf(o.Out, "  embedded NATS:    %s\n\n", stack.URL)
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	services := make(chan error, 1)
	go func() { services <- stack.Run(runCtx, app.All...) }()

	requested := time.Now()
	runs := map[string]string{}
	for _, s := range Sites {
		req := exportreq.New(s.ID, requested, true, "demo")
		if err := exportreq.Publish(ctx, stack.JS, req); err != nil {
			return err
		}
		runs[s.ID] = req.RunID
	}
	fmt.Fprintf(o.Out, "full sync of %d sites requested:\n", len(Sites))
	wctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	if _, err := progress.Wait(wctx, stack.JS, progress.Options{Out: o.Out, Runs: runs, Expected: setup.Expected, Network: net}); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	sum, err := waitAndSummarise(wctx, stack.JS, runs, requested, services)
	if err != nil {
		return err
	}
	printSummary(o.Out, sum, time.Since(requested))
	printReports(o.Out, net.ReportsDir, sum)
	verified := printVerification(wctx, o.Out, stack)
	fmt.Fprintf(o.Out, "\ndone in %s\n", time.Since(start).Round(100*time.Millisecond))
	if !o.Serve {
		if err := sum.err(); err != nil {
			return err
		}
		return verified
	}
	fmt.Fprintf(o.Out, "\nserving: the schedules in %s keep running; Ctrl-C stops.\n", setup.NetworkFile)
	fmt.Fprintf(o.Out, "operator tools (another terminal):\n  relay status -n %[1]s\n  relay sync -n %[1]s --site %[2]s\n  relay dlq list -n %[1]s\n", setup.NetworkFile, Sites[0].ID)
	select {
	case <-ctx.Done():
		return nil
	case err := <-services:
		return err
	}
}

// printVerification compares the destination with every site, as `relay
// verify --all` does: the proof the sync is complete.
func printVerification(ctx context.Context, w io.Writer, stack *app.Stack) error {
	var sites []string
	for _, s := range Sites {
		sites = append(sites, s.ID)
	}
	rep := verifier.Run(ctx, verifier.Options{Kit: stack.Kit, JS: stack.JS, Sites: sites})
	records := 0
	for _, r := range rep.Sites {
		records += r.Counts.Records
	}
	if rep.Status == messages.VerifyEqual {
		fmt.Fprintf(w, "\nverified (relay verify --all): the destination equals every site (%d records compared)\n", records)
		return nil
	}
	fmt.Fprintf(w, "\nverification (relay verify --all): %s\n", rep.Status)
	for _, r := range rep.Sites {
		if r.Status != messages.VerifyEqual {
			fmt.Fprintf(w, "  %s: %s: %d missing, %d stale, %d extra %s\n", r.Site, r.Status, r.Counts.Missing, r.Counts.Stale, r.Counts.Extra, r.Error)
		}
	}
	return fmt.Errorf("demo: the destination does not equal the sites (relay verify: %s)", rep.Status)
}

// SiteSummary is what one site's sync did.
type SiteSummary struct {
	Site         string
	Phase, Error string
	Exported     int
	Imported     int
	DeadLettered int
	Score        string
	Took         time.Duration // from the request to the end of the site's export
}

type summary struct{ sites []SiteSummary }

func (s summary) err() error {
	var bad []string
	for _, x := range s.sites {
		if x.Phase != messages.PhaseExported {
			bad = append(bad, x.Site)
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("demo: the sync of %s failed", strings.Join(bad, ", "))
	}
	return nil
}

// waitAndSummarise waits until every site's run ended, the transformer and
// importer consumers have nothing pending, and each site has a protocol
// report; then it counts per site from the AUDIT and DLQ streams.
func waitAndSummarise(ctx context.Context, js jetstream.JetStream, runs map[string]string, requested time.Time, services <-chan error) (summary, error) {
	var sum summary
	events := map[string]messages.RunEvent{}
	for {
		select {
		case err := <-services:
			return sum, fmt.Errorf("a service stopped: %w", err)
		case <-ctx.Done():
			return sum, fmt.Errorf("demo: the pipeline did not drain in time: %w", ctx.Err())
		case <-time.After(300 * time.Millisecond):
		}
		for site, run := range runs {
			if ev, ok := lastRunEvent(ctx, js, site); ok && ev.RunID == run && (ev.Phase == messages.PhaseExported || ev.Phase == messages.PhaseFailed) {
				events[site] = ev
			}
		}
		if len(events) < len(runs) || !broker.Drained(ctx, js) || !reportsIn(ctx, js, runs) {
			continue
		}
		for _, s := range Sites {
			ev := events[s.ID]
			ss := SiteSummary{Site: s.ID, Phase: ev.Phase, Error: ev.Error, Exported: ev.Exported, Took: ev.At.Sub(requested)}
			ss.Imported = countImported(ctx, js, s.ID)
			ss.DeadLettered = broker.CountSubject(ctx, js, messages.StreamDLQ, messages.SubjectDLQ+".*."+s.ID)
			ss.Score = reportScore(ctx, js, s.ID)
			sum.sites = append(sum.sites, ss)
		}
		return sum, nil
	}
}

func lastRunEvent(ctx context.Context, js jetstream.JetStream, site string) (messages.RunEvent, bool) {
	var ev messages.RunEvent
	ok := broker.LastJSON(ctx, js, messages.StreamAudit, messages.RunSubject(site), &ev)
	return ev, ok
}

func reportsIn(ctx context.Context, js jetstream.JetStream, runs map[string]string) bool {
	for site := range runs {
		if broker.CountSubject(ctx, js, messages.StreamReports, messages.ProtocolReportSubject(site)) == 0 {
			return false
		}
	}
	return true
}

// countImported counts the distinct records of a site's import audit.
func countImported(ctx context.Context, js jetstream.JetStream, site string) int {
	seen := map[string]bool{}
	_ = broker.EachJSON(ctx, js, messages.StreamAudit, messages.ImportDoneSubject(site), func(b []byte) {
		var a messages.ImportDone
		if json.Unmarshal(b, &a) == nil {
			for _, r := range a.Records {
				seen[r] = true
			}
		}
	})
	return len(seen)
}

func reportScore(ctx context.Context, js jetstream.JetStream, site string) string {
	var r messages.ProtocolReport
	if !broker.LastJSON(ctx, js, messages.StreamReports, messages.ProtocolReportSubject(site), &r) {
		return "-"
	}
	if r.Score == nil {
		return r.Status
	}
	return fmt.Sprintf("%.1f/100 (%s)", *r.Score, r.Status)
}

func printSummary(w io.Writer, s summary, took time.Duration) {
	fmt.Fprintf(w, "\nsync finished in %s\n", took.Round(100*time.Millisecond))
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SITE\tRUN\tEXPORT TIME\tEXPORTED\tIMPORTED\tDEAD-LETTERED\tPROTOCOL CHECK")
	sort.Slice(s.sites, func(i, j int) bool { return s.sites[i].Site < s.sites[j].Site })
	for _, x := range s.sites {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%s\n", x.Site, x.Phase, x.Took.Round(10*time.Millisecond), x.Exported, x.Imported, x.DeadLettered, x.Score)
	}
	tw.Flush()
	for _, x := range s.sites {
		if x.Error != "" {
			fmt.Fprintf(w, "\n%s: %s\n", x.Site, x.Error)
		}
	}
}

func printReports(w io.Writer, dir string, s summary) {
	if dir == "" {
		return
	}
	index := filepath.Join(dir, "index.html")
	if _, err := os.Stat(index); errors.Is(err, os.ErrNotExist) {
		return
	}
	fmt.Fprintf(w, "\nprotocol report: %s (JSON and CSV per site beside it)\n", index)
}
