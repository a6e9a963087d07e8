// Package exportreq builds and publishes export requests: the ticker's on
// every tick, and `relay sync`'s, the demo's and the benchmark's on demand.
//
// The run ID is derived from the site and the tick time, and is the
// JetStream message ID, so two tickers running at once (a rolling restart,
// a mistaken second replica) still produce one request per tick.
package exportreq

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/pipeline/broker"
)

// Reasons a run was requested.
const (
	ReasonSchedule = "schedule"
	ReasonManual   = "manual"
)

// New builds the request for one tick of one site.
func New(site string, tick time.Time, full bool, reason string) messages.ExportRequested {
	return messages.ExportRequested{
		V: messages.V, Site: site, RunID: messages.RunID(site, tick),
		Full: full, Reason: reason, RequestedAt: tick.UTC().Truncate(time.Second),
	}
}

// Publish stores an export request on relay.export.requested.<site>.
func Publish(ctx context.Context, js jetstream.JetStream, req messages.ExportRequested) error {
	return broker.Publish(ctx, js, messages.ExportRequestedSubject(req.Site), req.MsgID(), broker.Route{Site: req.Site, Run: req.RunID}, req)
}
