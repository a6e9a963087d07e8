package checker

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/pipeline/retry"
	"github.com/redcap-relay/relay/services/internal/pipeline/sitekit"
	"github.com/redcap-relay/relay/services/internal/pipeline/sitemeta"
	"github.com/redcap-relay/relay/services/internal/protocol"
	"github.com/redcap-relay/relay/services/internal/redcap"
)

// Options of an on-demand check.
type Options struct {
	// NewClient builds a site's client (nil: from the network file).
	NewClient func(site *config.Site) (*redcap.Client, error)
	// Parallel is how many sites are checked at once (default 4).
	Parallel int
	// Items also fetches the protocol's item values (never identifier-like
	// fields) to report item missingness; only counts leave this process.
	Items bool
	// Retry bounds the retries of each REDCap call (default: 1 minute).
	Retry  retry.Policy
	Logger *slog.Logger
}

// CheckSites checks sites on demand through the REDCap API with each site's
// token: metadata snapshot, completion status, check. A site that cannot be
// checked (no rights to the project design, unreachable, bad token) gets an
// error report; the other sites are still checked. Reports come back in the
// order of ids.
func CheckSites(ctx context.Context, n *config.Network, p *protocol.Protocol, ids []string, o Options) []*messages.ProtocolReport {
	if o.Parallel <= 0 {
		o.Parallel = 4
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Retry.MaxElapsed == 0 && o.Retry.Budget == nil {
		o.Retry = retry.Policy{MaxElapsed: time.Minute}
	}
	out := make([]*messages.ProtocolReport, len(ids))
	sem := make(chan struct{}, o.Parallel)
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			out[i] = checkOne(ctx, n, p, id, o)
		}()
	}
	wg.Wait()
	return out
}

func checkOne(ctx context.Context, n *config.Network, p *protocol.Protocol, id string, o Options) *messages.ProtocolReport {
	st, ok := n.Site(id)
	if !ok {
		return protocol.Failed(p, id, fmt.Errorf("site %s is not in the network file %s", id, n.Path()))
	}
	var c *redcap.Client
	var err error
	if o.NewClient != nil {
		c, err = o.NewClient(st)
	} else {
		c, err = sitekit.New(n, o.Logger).Client(id)
	}
	if err != nil {
		r := protocol.Failed(p, id, err)
		r.SiteName = st.Name
		return r
	}
	snap, err := sitemeta.Fetch(ctx, c, id, o.Retry)
	if err != nil {
		r := protocol.Failed(p, id, fmt.Errorf("could not read the project's metadata: %w", err))
		r.SiteName = st.Name
		return r
	}
	fields := protocol.StatusFields(p, snap)
	if o.Items {
		fields = append(fields, protocol.ItemFields(p, snap)...)
	}
	var rows []messages.Row
	var cerr error
	if len(fields) > 1 {
		rows, cerr = c.ExportRecords(ctx, redcap.ExportParams{Fields: fields, ExportBlankForGrayFormStatus: true})
	}
	r := protocol.Check(p, id, snap, rows)
	r.SiteName = st.Name
	if cerr != nil {
		r.Findings = append(r.Findings, messages.ProtocolFinding{Severity: messages.SeverityInfo, Kind: "completion_unavailable",
			Message: "completion could not be measured: " + cerr.Error()})
		r.Infos++
	}
	return r
}

// ExitCode is relay check's exit status for a set of reports: 2 when a site
// (or a protocol entry) could not be checked, 1 when any site deviates, 0
// when every site conforms.
func ExitCode(p *protocol.Protocol, rs []*messages.ProtocolReport) int {
	code := 0
	for _, r := range rs {
		switch r.Status {
		case messages.ProtocolError:
			return 2
		case messages.ProtocolDeviations:
			code = 1
		}
	}
	if len(p.Problems) > 0 {
		return 2
	}
	return code
}
