package app

import (
	"context"

	"github.com/redcap-relay/relay/services/checker"
	"github.com/redcap-relay/relay/services/internal/protocol"
)

func runChecker(ctx context.Context, s *Stack, o Options) error {
	var p *protocol.Protocol
	var err error
	if o.Network.Protocol != "" {
		p, err = protocol.Load(o.Network.Protocol)
	} else {
		p, err = protocol.HEALAdult()
	}
	if err != nil {
		return err
	}
	return checker.Run(ctx, checker.Deps{JS: s.JS, Streams: o.Network.Streams, Network: o.Network, Protocol: p, ReportsDir: o.Network.ReportsDir, Logger: o.Logger})
}
