package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/ops"
)

// applyNATSEnv lets a deployment give each service its own NATS user while
// all services share one read-only network file: RELAY_NATS_URL,
// RELAY_NATS_USER and RELAY_NATS_PASSWORD_FILE override the file's nats
// settings (compose sets them per container; the password file is a secret).
func applyNATSEnv(n *config.Network) {
	if v := os.Getenv("RELAY_NATS_URL"); v != "" {
		n.NATS.URL = v
	}
	if v := os.Getenv("RELAY_NATS_USER"); v != "" {
		n.NATS.User = v
	}
	if v := os.Getenv("RELAY_NATS_PASSWORD_FILE"); v != "" {
		n.NATS.Password = config.Secret{File: v}
	}
	if v := os.Getenv("RELAY_NATS_CA_FILE"); v != "" {
		n.NATS.CAFile = v
	}
}

// noProvision is RELAY_PROVISION=false: the service's NATS user may not
// create streams, so `relay provision` (admin user) did it beforehand.
func noProvision() bool {
	v := strings.ToLower(os.Getenv("RELAY_PROVISION"))
	return v == "false" || v == "0" || v == "no"
}

// opsFlags are the connection flags of the operator tools: a NATS URL and
// user directly, or the network file's nats section.
type opsFlags struct {
	network, url, user, passwordFile, caFile string
	json                                     bool
}

func (f *opsFlags) add(c *cobra.Command) { f.addTo(c.Flags()) }

// addTo adds the connection flags to a flag set (persistent flags for a
// command with subcommands).
func (f *opsFlags) addTo(fs *pflag.FlagSet) {
	fs.StringVarP(&f.network, "network", "n", envOr("RELAY_NETWORK", "network.yaml"), "network file (for the NATS settings and the site list) (env RELAY_NETWORK)")
	fs.StringVar(&f.url, "nats", os.Getenv("RELAY_NATS_URL"), "NATS URL, e.g. nats://nats.example.org:4222 (env RELAY_NATS_URL; default: the network file's nats.url)")
	fs.StringVar(&f.user, "user", os.Getenv("RELAY_NATS_USER"), "NATS user: the operator (admin) user (env RELAY_NATS_USER)")
	fs.StringVar(&f.passwordFile, "password-file", os.Getenv("RELAY_NATS_PASSWORD_FILE"), "file holding the NATS password (env RELAY_NATS_PASSWORD_FILE)")
	fs.StringVar(&f.caFile, "ca-file", os.Getenv("RELAY_NATS_CA_FILE"), "CA (PEM) for a tls:// NATS URL (env RELAY_NATS_CA_FILE)")
}

func (f *opsFlags) addJSON(c *cobra.Command) {
	c.Flags().BoolVar(&f.json, "json", false, "print JSON instead of a table")
}

// connect resolves the connection settings (flags/env first, then the
// network file) and dials NATS. It also returns the network's site IDs when
// a network file was read.
func (f *opsFlags) connect(ctx context.Context) (*nats.Conn, jetstream.JetStream, []string, error) {
	conn := ops.Conn{URL: f.url, User: f.user, CAFile: f.caFile}
	var sites []string
	if f.network != "" {
		if _, statErr := os.Stat(f.network); statErr == nil {
			n, err := config.Load(f.network)
			var ce *config.Error
			if err != nil && !errors.As(err, &ce) {
				return nil, nil, nil, err
			}
			// A network file with problems (say, a site token this machine
			// does not hold) still names the sites and the NATS server.
			applyNATSEnv(n)
			sites = n.SiteIDs()
			if conn.URL == "" {
				conn.URL, conn.CAFile = n.NATS.URL, n.NATS.CAFile
				if conn.User == "" && n.NATS.User != "" {
					conn.User = n.NATS.User
					pw, err := n.NATS.Password.Read()
					if err != nil {
						return nil, nil, nil, fmt.Errorf("nats.password: %w", err)
					}
					conn.Password = pw
				}
			}
		} else if f.url == "" {
			return nil, nil, nil, fmt.Errorf("no NATS server given: pass --nats nats://host:4222 (with --user and --password-file), or a network file with -n (%s: %v)", f.network, errors.Unwrap(statErr))
		}
	}
	if f.passwordFile != "" {
		pw, err := config.Secret{File: f.passwordFile}.Read()
		if err != nil {
			return nil, nil, nil, fmt.Errorf("--password-file: %w", err)
		}
		conn.Password = pw
	}
	nc, js, err := ops.Dial(ctx, conn)
	if err != nil {
		return nil, nil, nil, err
	}
	return nc, js, sites, nil
}
