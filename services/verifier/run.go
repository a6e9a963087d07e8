package verifier

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/pipeline/sitekit"
	"github.com/redcap-relay/relay/services/internal/pipeline/telemetry"
)

// Exit statuses of `relay verify`.
const (
	ExitEqual       = 0
	ExitDifferences = 1
	ExitError       = 2 // a site (or the destination) could not be verified
)

// Options are one `relay verify` invocation.
type Options struct {
	Kit   *sitekit.Kit
	JS    jetstream.JetStream // results are published here (and repairs need it); nil = neither
	Sites []string
	// Repair publishes the differing records as runs of their own, waits
	// for the pipeline, and verifies again.
	Repair bool
	// RepairTimeout bounds each site's wait for its repair (default 30 min).
	RepairTimeout time.Duration
	SkipFiles     bool
	Logger        *slog.Logger
}

// Report is every site's result, in the order asked.
type Report struct {
	Status string                  `json:"status"` // equal | differences | error (the worst of the sites)
	Sites  []messages.VerifyResult `json:"sites"`
}

// ExitCode is 0 when every site is equal, 2 when one could not be verified,
// else 1.
func (r *Report) ExitCode() int {
	switch r.Status {
	case messages.VerifyEqual:
		return ExitEqual
	case messages.VerifyDifferences:
		return ExitDifferences
	}
	return ExitError
}

// Run verifies the sites at once (each site's own REDCap and rate limit;
// the destination's client is shared by its rate limit), repairs when
// asked, and publishes each site's final result on AUDIT. A site that
// cannot be verified does not stop the others.
func Run(ctx context.Context, o Options) *Report {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.RepairTimeout == 0 {
		o.RepairTimeout = 30 * time.Minute
	}
	// The first pass reads the destination's ID list once for every site;
	// a verification after a repair reads it again.
	d := Deps{Kit: o.Kit, JS: o.JS, Logger: o.Logger, SkipFiles: o.SkipFiles, shared: &sharedIDs{}}
	rep := &Report{Sites: make([]messages.VerifyResult, len(o.Sites))}
	var wg sync.WaitGroup
	for i, site := range o.Sites {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rep.Sites[i] = one(ctx, d, o, site)
		}()
	}
	wg.Wait()
	rep.Status = messages.VerifyEqual
	for _, r := range rep.Sites {
		switch {
		case r.Status == messages.VerifyError:
			rep.Status = messages.VerifyError
		case r.Status == messages.VerifyDifferences && rep.Status == messages.VerifyEqual:
			rep.Status = messages.VerifyDifferences
		}
	}
	return rep
}

func one(ctx context.Context, d Deps, o Options, site string) messages.VerifyResult {
	out, err := Compare(ctx, d, site)
	res := out.Result
	if err == nil && o.Repair && res.Status == messages.VerifyDifferences {
		started := res.StartedAt
		if o.JS == nil {
			res.Repair = &messages.VerifyRepair{Error: "no NATS connection: a repair publishes into the pipeline"}
		} else {
			r, rerr := Repair(ctx, o.JS, out, o.RepairTimeout)
			if rerr != nil {
				r.Error = rerr.Error()
				o.Logger.Warn("repair did not complete", "site", site, "err", rerr)
			}
			// Verify again: only an equal destination ends a repair with 0.
			fresh := d
			fresh.shared = nil
			again, err2 := Compare(ctx, fresh, site)
			res = again.Result
			res.StartedAt = started
			res.Repair = r
			if err2 != nil {
				err = err2
			}
		}
	}
	if err != nil && res.Status != messages.VerifyError {
		res.Status, res.Error = messages.VerifyError, err.Error()
	}
	telemetry.ObserveVerify(res)
	if o.JS != nil {
		if perr := Publish(ctx, o.JS, res); perr != nil {
			o.Logger.Warn("verification result not published on AUDIT", "site", site, "err", fmt.Sprint(perr))
		}
	}
	return res
}
