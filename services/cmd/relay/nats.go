package main

import (
	"log/slog"
	"os"

	"github.com/spf13/cobra"

	"github.com/redcap-relay/relay/services/internal/ops"
	"github.com/redcap-relay/relay/services/internal/pipeline/broker"
)

func init() {
	var data, configFile, host, keyFile string
	var port int
	var syncAlways bool
	c := &cobra.Command{
		Use:   "nats",
		Short: "run the embedded NATS server with JetStream alone (for docker-compose)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := slog.New(slog.NewTextHandler(os.Stderr, nil))
			// Passwords referenced by the config ($RELAY_NATS_PASSWORD_<USER>) come from secret files.
			if _, err := ops.PasswordEnvFromFiles(); err != nil {
				return err
			}
			var key string
			if keyFile != "" {
				b, err := os.ReadFile(keyFile)
				if err != nil {
					return err
				}
				key = string(b)
			}
			srv, err := broker.StartEmbedded(broker.EmbeddedOptions{StoreDir: data, ConfigFile: configFile, Host: host, Port: port, SyncAlways: syncAlways, Key: key, Logger: log})
			if err != nil {
				return err
			}
			log.Info("nats server ready", "url", srv.ClientURL(), "store", data, "encrypted", key != "")
			ctx, cancel := commandContext(0)
			defer cancel()
			<-ctx.Done()
			log.Info("nats server stopping")
			srv.Shutdown()
			srv.WaitForShutdown()
			return nil
		},
	}
	c.Flags().StringVar(&data, "data", envOr("RELAY_NATS_DATA", "/data"), "JetStream store folder")
	c.Flags().StringVar(&configFile, "config", envOr("RELAY_NATS_CONFIG", ""), "nats-server config file (users, permissions, TLS)")
	c.Flags().StringVar(&host, "host", "0.0.0.0", "listen address")
	c.Flags().IntVar(&port, "port", 4222, "client port")
	c.Flags().BoolVar(&syncAlways, "sync-always", false, "fsync every write (slower; no 2-minute loss window on power failure)")
	c.Flags().StringVar(&keyFile, "encryption-key-file", envOr("RELAY_NATS_KEY_FILE", ""), "encrypt JetStream at rest with the key in this file")
	rootCmd.AddCommand(c)
}
