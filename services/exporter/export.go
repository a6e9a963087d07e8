package exporter

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/pipeline/retry"
	"github.com/redcap-relay/relay/services/internal/pipeline/telemetry"
)

// ErrSiteBusy means another run of the site still holds its lease.
var ErrSiteBusy = errors.New("another run of this site is still in progress")

// Export runs one export request to the end. A permanent failure (bad token,
// policy refusal, schema drift) is reported as a failed run and returned as
// permanent, so the request is dead-lettered with the reason; a transient
// one is returned so the request is redelivered later, with the same run ID
// and so the same message IDs.
func (e *Exporter) Export(ctx context.Context, req messages.ExportRequested) error {
	site, err := e.d.Sites.Site(req.Site)
	if err != nil {
		return retry.Permanent(fmt.Errorf("export request: %w", err))
	}
	log := e.log.With("site", site.ID, "run", req.RunID)
	release, err := e.d.Store.Lease(ctx, site.ID, req.RunID)
	if errors.Is(err, ErrSiteBusy) {
		log.Warn("run skipped: the previous run of this site is still in progress")
		telemetry.Runs.WithLabelValues(site.ID, "skipped").Inc()
		e.runEvent(ctx, messages.RunEvent{Site: site.ID, RunID: req.RunID, Phase: messages.PhaseFailed, Error: "skipped: " + err.Error()})
		return nil
	}
	if err != nil {
		return err
	}
	defer release()

	e.runEvent(ctx, messages.RunEvent{Site: site.ID, RunID: req.RunID, Phase: messages.PhaseStarted, Full: req.Full})
	start := time.Now()
	res, err := e.run(ctx, site, req)
	if err != nil && ctx.Err() != nil {
		// A shutdown (or the run's own timeout) cut the run: nothing failed.
		// The request was not acked, so the run is redone from the start
		// with the same message IDs.
		log.Info("run interrupted; it is redone when an exporter takes the request again", "cause", context.Cause(ctx))
		return err
	}
	ev := messages.RunEvent{Site: site.ID, RunID: req.RunID, Full: res.full, Exported: res.exported, Deleted: res.deleted, Unchanged: res.unchanged, Calls: res.calls,
		DeletionsPending: res.pending, DeletionsHeld: res.held, ShortAnswers: res.short, Warnings: res.warnings}
	if err != nil {
		ev.Phase, ev.Error = messages.PhaseFailed, err.Error()
		e.runEvent(ctx, ev)
		telemetry.Runs.WithLabelValues(site.ID, "failed").Inc()
		telemetry.RunDuration.WithLabelValues(site.ID, "failed").Observe(time.Since(start).Seconds())
		if retry.IsPermanent(err) {
			log.Error("run failed; fix the cause, then run `relay sync --site "+site.ID+"`", "err", err)
			return err
		}
		log.Warn("run failed on a transient error; the request will be redelivered", "err", err)
		return err
	}
	ev.Phase = messages.PhaseExported
	e.runEvent(ctx, ev)
	result := "exported"
	if res.held > 0 {
		result = "deletions_held"
	}
	telemetry.Runs.WithLabelValues(site.ID, result).Inc()
	telemetry.RunDuration.WithLabelValues(site.ID, result).Observe(time.Since(start).Seconds())
	telemetry.LastRun.WithLabelValues(site.ID).SetToCurrentTime()
	log.Info("run exported", "full", res.full, "records", res.exported, "unchanged", res.unchanged,
		"deleted", res.deleted, "renamed", res.renamed, "deletions_pending", res.pending, "deletions_held", res.held, "short_answers", res.short,
		"api_calls", res.calls, "seconds", time.Since(start).Round(time.Millisecond).Seconds())
	return nil
}

func (e *Exporter) runEvent(ctx context.Context, ev messages.RunEvent) {
	ev.V, ev.At = messages.V, time.Now().UTC()
	if err := e.d.Store.RunEvent(ctx, ev); err != nil {
		e.log.Warn("run event not published", "site", ev.Site, "run", ev.RunID, "phase", ev.Phase, "err", err)
	}
}
