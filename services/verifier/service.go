package verifier

import (
	"context"
	"encoding/json"
	"log/slog"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/message/router/middleware"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/pipeline/router"
	"github.com/redcap-relay/relay/services/internal/pipeline/sitekit"
	"github.com/redcap-relay/relay/services/internal/pipeline/topology"
)

// ServiceDeps is what the verifier service needs: the site tokens and the
// destination token (through Kit), like `relay verify`.
type ServiceDeps struct {
	NC      *nats.Conn
	JS      jetstream.JetStream
	Streams config.Streams
	Kit     *sitekit.Kit
	Logger  *slog.Logger
	// IdleWait bounds the wait for the site's run (and the pipeline) to
	// end before verifying (default 1h): a verification during a run
	// would report the records still in flight as missing.
	IdleWait time.Duration
}

// Serve runs the scheduled verifications the ticker asks for (verify_every),
// one site at a time, until ctx ends. Each result goes to AUDIT and the
// metrics like `relay verify`'s; with the site's verify_repair it repairs.
func Serve(ctx context.Context, d ServiceDeps) error {
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	if d.IdleWait == 0 {
		d.IdleWait = time.Hour
	}
	log := d.Logger.With("service", topology.Verifier)
	return router.Run(ctx, d.NC, d.JS, topology.Verify, d.Streams, router.Options{
		Parallel:       1,
		HandlerTimeout: d.Streams.ExportRunTimeout.D(),
		KeepAlive:      topology.Verify.AckWait(d.Streams) / 4,
		// A verification retries each REDCap call itself, and a site it
		// could not read is a result (status error), not a retry.
		Retry:  middleware.Retry{MaxRetries: 0},
		Logger: log,
	}, func(msg *message.Message) error {
		var req messages.VerifyRequested
		if err := router.Decode(msg.Payload, &req); err != nil {
			return err
		}
		ctx := msg.Context()
		if _, err := d.Kit.Site(req.Site); err != nil {
			log.Warn("verification request for a site not in the network file: ignored", "site", req.Site, "run", req.RunID)
			return nil
		}
		if at, ok := lastVerified(ctx, d.JS, req.Site); ok && !at.Before(req.Window) {
			log.Info("site already verified in this window", "site", req.Site, "window", req.Window.Format(time.RFC3339), "at", at.Format(time.RFC3339))
			return nil
		}
		if err := waitIdle(ctx, d.JS, req.Site, req.RequestedAt, topology.Export.AckWait(d.Streams), d.IdleWait); err != nil {
			log.Warn("verifying while the site's run may still be in flight", "site", req.Site, "err", err)
		}
		rep := Run(ctx, Options{Kit: d.Kit, JS: d.JS, Sites: []string{req.Site}, Repair: req.Repair, Logger: log})
		r := rep.Sites[0]
		log.Info("site verified", "site", r.Site, "status", r.Status, "records", r.Counts.Records,
			"missing", r.Counts.Missing, "stale", r.Counts.Stale, "extra", r.Counts.Extra, "repaired", r.Repair != nil, "err", r.Error)
		return nil
	})
}

// lastVerified is when the site's newest verification on AUDIT finished,
// if it finished (status equal or differences).
func lastVerified(ctx context.Context, js jetstream.JetStream, site string) (time.Time, bool) {
	stream, err := js.Stream(ctx, messages.StreamAudit)
	if err != nil {
		return time.Time{}, false
	}
	m, err := stream.GetLastMsgForSubject(ctx, messages.VerifySubject(site))
	if err != nil {
		return time.Time{}, false
	}
	var r messages.VerifyResult
	if json.Unmarshal(m.Data, &r) != nil || r.Status == messages.VerifyError {
		return time.Time{}, false
	}
	return r.FinishedAt, true
}

// waitIdle waits until the site's run of the request's tick has ended (its
// last event is exported, completed or failed) and the pipeline has
// drained, so the verification compares what the run imported. When no run
// starts within startWait of the request (the tick's run was not
// requested), the site's last run is the one compared.
func waitIdle(ctx context.Context, js jetstream.JetStream, site string, after time.Time, startWait, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	stream, err := js.Stream(ctx, messages.StreamAudit)
	if err != nil {
		return err
	}
	noRunBy := time.Now().Add(startWait)
	for {
		var ev messages.RunEvent
		m, err := stream.GetLastMsgForSubject(ctx, messages.RunSubject(site))
		ended := err != nil || !decode(m.Data, &ev) ||
			ev.Phase == messages.PhaseExported || ev.Phase == messages.PhaseCompleted || ev.Phase == messages.PhaseFailed
		if ended && (err != nil || !m.Time.Before(after) || time.Now().After(noRunBy)) {
			return waitDrained(ctx, js)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Second):
		}
	}
}
