package main

import (
	"context"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
)

// `relay publish` is a hidden diagnostic: store one message on a subject as
// the given NATS user. compose-e2e.sh uses it to show that a service's user
// is refused outside its subjects.
func init() {
	var f natsFlags
	var subject, data string
	c := &cobra.Command{
		Use:    "publish --subject S [--body JSON]",
		Short:  "store one message on a JetStream subject as the given NATS user (diagnostics)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := commandContext(30 * time.Second)
			defer cancel()
			nc, js, _, err := f.connect(ctx)
			if err != nil {
				return err
			}
			defer nc.Close()
			pctx, pcancel := context.WithTimeout(ctx, 3*time.Second)
			defer pcancel()
			ack, err := js.Publish(pctx, subject, []byte(data), jetstream.WithMsgID(fmt.Sprintf("diag.%d", time.Now().UnixNano())))
			if err != nil {
				if e := nc.LastError(); e != nil {
					err = fmt.Errorf("%w (server: %v)", err, e)
				}
				return fmt.Errorf("publish to %s as user %q refused or not stored: %w", subject, f.user, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "stored on %s: stream %s seq %d\n", subject, ack.Stream, ack.Sequence)
			return nil
		},
	}
	f.add(c)
	c.Flags().StringVar(&subject, "subject", "", "subject")
	c.Flags().StringVar(&data, "body", `{"v":1}`, "message body")
	rootCmd.AddCommand(c)
}
