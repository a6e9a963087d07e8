package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/pipeline/broker"
)

func init() {
	var f natsFlags
	var lf logFlags
	c := &cobra.Command{
		Use:   "provision",
		Short: "create or update every stream, consumer and bucket (run once with the admin NATS user; services then run with RELAY_PROVISION=false)",
		Long: `relay provision creates every stream, consumer and bucket of the pipeline, or
updates their settings (retention, byte caps, ack waits) to what the network
file says, keeping every message, cursor and a replay's start point, and
prints each setting it changed (nothing on a second run). A byte cap below
what a stream holds is refused; a consumer setting JetStream cannot update in
place is migrated by recreating the consumer at its ack floor. Run it with
the admin NATS user after an upgrade or a change of the streams section.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := lf.logger()
			// A network file named by -n or RELAY_NETWORK must exist: the
			// defaults would silently replace the operator's settings.
			if cmd.Flags().Changed("network") || os.Getenv("RELAY_NETWORK") != "" {
				if _, err := os.Stat(f.network); errors.Is(err, os.ErrNotExist) {
					return missingNetwork(f.network)
				}
			}
			ctx, cancel := commandContext(2 * time.Minute)
			defer cancel()
			nc, js, net, err := f.connect(ctx)
			if err != nil {
				return err
			}
			defer nc.Close()
			streams := config.DefaultStreams()
			if net != nil {
				if err := streamProblems(net.Path()); err != nil {
					return err
				}
				streams = net.Streams
			}
			changes, err := broker.ProvisionChanges(ctx, js, streams)
			for _, ch := range changes {
				if lf.json {
					log.Info("provision changed", "kind", ch.Kind, "name", ch.Name, "setting", ch.Setting, "from", ch.From, "to", ch.To)
				} else {
					fmt.Fprintf(cmd.OutOrStdout(), "  changed %s\n", ch)
				}
			}
			if err != nil {
				return err
			}
			if lf.json {
				log.Info("provisioned streams, consumers and buckets", "nats", nc.ConnectedUrlRedacted(), "changes", len(changes))
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "provisioned streams, consumers and buckets on %s (%d change(s))\n", nc.ConnectedUrlRedacted(), len(changes))
			return nil
		},
	}
	f.add(c)
	lf.add(c.Flags())
	rootCmd.AddCommand(c)
}

// streamProblems refuses a network file whose streams section has mistakes:
// provisioning would apply them. (Other problems, such as a site token this
// container does not hold, are the services' business.)
func streamProblems(path string) error {
	_, err := config.Load(path)
	var ce *config.Error
	if !errors.As(err, &ce) {
		return nil
	}
	bad := &config.Error{Path: ce.Path}
	for _, p := range ce.Problems {
		if strings.HasPrefix(p.Setting, "streams.") || p.Setting == "(file)" {
			bad.Problems = append(bad.Problems, p)
		}
	}
	if len(bad.Problems) == 0 {
		return nil
	}
	return bad
}
