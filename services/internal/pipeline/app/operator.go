package app

import (
	"context"

	"github.com/redcap-relay/relay/services/internal/notify"
	"github.com/redcap-relay/relay/services/internal/web"
)

// The operator's services: the notifier (alerts and the pipeline's metrics
// read from NATS) and the dashboard.
const (
	Notifier = "notifier"
	Web      = "web"
)

// WebOptions are the dashboard's address and credentials.
type WebOptions = web.Options

func (s *Stack) runNotifier(ctx context.Context) error {
	n, err := notify.New(notify.Options{NC: s.NC, JS: s.JS, Network: s.opts.Network, Logger: s.opts.Logger})
	if err != nil {
		return err
	}
	return n.Run(ctx)
}

// runWeb serves the dashboard. A dashboard that cannot listen (its port
// taken) is logged and does not stop the pipeline it only shows.
func (s *Stack) runWeb(ctx context.Context) error {
	o := s.opts.Web
	o.Network, o.Logger = s.opts.Network, s.opts.Logger
	if err := web.Serve(ctx, s.NC, s.JS, o); err != nil && ctx.Err() == nil {
		s.opts.Logger.Error("the dashboard is not served; the pipeline runs on", "err", err)
		<-ctx.Done()
	}
	return ctx.Err()
}
