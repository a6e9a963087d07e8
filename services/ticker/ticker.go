// Package ticker turns each site's cron schedule into export requests
// (exportreq: one request per site and tick, however many tickers run).
package ticker

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/pipeline/broker"
	"github.com/redcap-relay/relay/services/internal/pipeline/exportreq"
)

// Deps is what the ticker needs.
type Deps struct {
	JS      jetstream.JetStream
	Network *config.Network
	Logger  *slog.Logger
	// Now is the clock (tests move it); default time.Now.
	Now func() time.Time
}

// Run schedules every site until ctx ends.
func Run(ctx context.Context, d Deps) error {
	if d.Now == nil {
		d.Now = time.Now
	}
	log := d.Logger
	if log == nil {
		log = slog.Default()
	}
	var wg sync.WaitGroup
	for i := range d.Network.Sites {
		site := &d.Network.Sites[i]
		sched, err := site.ParseSchedule()
		if err != nil {
			return fmt.Errorf("site %s: schedule %q: %w", site.ID, site.Schedule, err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			// The window of the last verification requested; the first
			// tick after a start always asks (the verifier skips a window
			// that is already verified).
			var verified time.Time
			for {
				next := sched.Next(d.Now())
				log.Info("next export scheduled", "site", site.ID, "at", next.Format(time.RFC3339))
				t := time.NewTimer(time.Until(next))
				select {
				case <-ctx.Done():
					t.Stop()
					return
				case <-t.C:
				}
				req := exportreq.New(site.ID, next, false, exportreq.ReasonSchedule)
				if err := exportreq.Publish(ctx, d.JS, req); err != nil {
					// The broker is down: the next tick will try again; a
					// missed tick is caught up by the changed-since cursor.
					log.Error("export request not published", "site", site.ID, "run", req.RunID, "err", err)
					continue
				}
				log.Info("export requested", "site", site.ID, "run", req.RunID)
				if every := site.VerifyInterval(); every > 0 {
					if w := messages.VerifyWindow(next, every); !w.Equal(verified) {
						if err := publishVerify(ctx, d.JS, site, next, w); err != nil {
							log.Error("verification request not published", "site", site.ID, "err", err)
						} else {
							verified = w
							log.Info("verification requested", "site", site.ID, "window", w.Format(time.RFC3339))
						}
					}
				}
			}
		}()
	}
	wg.Wait()
	return ctx.Err()
}

// publishVerify asks for the site's verification of window w, after the
// window's first scheduled export (the verifier waits for that run to end).
func publishVerify(ctx context.Context, js jetstream.JetStream, site *config.Site, tick, w time.Time) error {
	req := messages.VerifyRequested{
		V: messages.V, Site: site.ID, RunID: "verify-" + site.ID + "-" + w.UTC().Format("20060102T150405Z"),
		Window: w, Repair: site.VerifyRepair, Reason: exportreq.ReasonSchedule, RequestedAt: tick.UTC().Truncate(time.Second),
	}
	return broker.Publish(ctx, js, messages.VerifyRequestedSubject(site.ID), req.MsgID(), broker.Route{Site: site.ID, Run: req.RunID}, req)
}
