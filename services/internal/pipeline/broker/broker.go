// Package broker is the one place that knows how REDCap Relay uses NATS:
// it starts the embedded server, connects services, and provisions every
// stream, consumer and KV/object bucket explicitly at start-up (watermill's
// auto-provisioning stays off, so a typo cannot create a stray stream).
package broker

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/redcap-relay/relay/services/internal/pipeline/telemetry"
)

// EmbeddedOptions configures the in-process NATS server of `relay all`,
// `relay demo`, `relay nats` and the tests.
type EmbeddedOptions struct {
	StoreDir string // JetStream file store; required
	Host     string // default 127.0.0.1
	Port     int    // -1 picks a free port; 0 means 4222
	// ConfigFile is a nats-server config file (accounts, users, TLS); its
	// settings are applied first, then StoreDir/Host/Port override when set.
	ConfigFile string
	// SyncAlways fsyncs every write: slower but survives power loss
	// without the default 2-minute sync window. SyncInterval, when set,
	// is how often JetStream fsyncs instead (nats-server's default: 2
	// minutes); config.NATS.Sync reads both from one setting.
	SyncAlways   bool
	SyncInterval time.Duration
	// Cluster: ServerName names this node (required in a cluster),
	// ClusterName the cluster (the same on every node), ClusterListen is
	// host:port for the other nodes' routes (port -1: any free port), and
	// Routes are the other nodes' nats-route://host:port URLs. Unset, the
	// config file's server_name and cluster block apply. JetStream
	// clustering uses the server's system account ($SYS, created by the
	// server unless the config file names another).
	ServerName, ClusterName, ClusterListen string
	Routes                                 []string
	// Key encrypts JetStream at rest (RECORDS_RAW holds PHI).
	Key string
	// MaxFileStore and MaxMemoryStore cap what JetStream may store on disk
	// and in memory (0: the config file's, else 1 TiB on disk: the
	// streams' own byte caps are then the limit).
	MaxFileStore, MaxMemoryStore int64
	// TLSCert and TLSKey (PEM files) make the server require TLS; clients
	// verify it against the CA that signed the certificate.
	TLSCert, TLSKey string
	Logger          *slog.Logger
}

// StartEmbedded starts a NATS server with JetStream and waits until it
// accepts connections.
func StartEmbedded(o EmbeddedOptions) (*server.Server, error) {
	opts := &server.Options{}
	if o.ConfigFile != "" {
		fo, err := server.ProcessConfigFile(o.ConfigFile)
		if err != nil {
			return nil, fmt.Errorf("nats config %s: %w", o.ConfigFile, err)
		}
		opts = fo
	}
	if o.StoreDir != "" {
		opts.StoreDir = o.StoreDir
	}
	if opts.StoreDir == "" {
		return nil, errors.New("nats: a JetStream store folder is required (--data or store_dir)")
	}
	opts.JetStream = true
	if o.Host != "" || opts.Host == "" {
		opts.Host = or(o.Host, "127.0.0.1")
	}
	if o.Port != 0 {
		opts.Port = o.Port
	} else if opts.Port == 0 {
		opts.Port = 4222
	}
	if o.SyncAlways {
		opts.SyncAlways = true
	}
	if o.SyncInterval > 0 {
		opts.SyncInterval = o.SyncInterval
	}
	if err := clusterOptions(opts, o); err != nil {
		return nil, err
	}
	if o.Key != "" {
		opts.JetStreamKey = o.Key
	}
	if err := storeLimits(opts, o); err != nil {
		return nil, err
	}
	if err := serverTLS(opts, o); err != nil {
		return nil, err
	}
	opts.NoSigs = true
	opts.NoLog = true
	opts.MaxPayload = 8 << 20 // one REDCap record with many events can be large
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("nats: %w", err)
	}
	if o.Logger != nil {
		// The server's warnings and errors (a stream that did not recover
		// after a crash, a full disk) are the operator's business.
		s.SetLoggerV2(serverLog{o.Logger.With("component", "nats-server")}, false, false, false)
	}
	go s.Start()
	if !s.ReadyForConnections(30 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("nats: server on %s did not start within 30s (is the port in use or the store folder %s unwritable?)",
			net.JoinHostPort(opts.Host, strconv.Itoa(opts.Port)), opts.StoreDir)
	}
	return s, nil
}

// clusterOptions applies the cluster settings: a node of a JetStream cluster
// has a name, the cluster's name, a route listener and routes to the others.
func clusterOptions(opts *server.Options, o EmbeddedOptions) error {
	if o.ServerName != "" {
		opts.ServerName = o.ServerName
	}
	if o.ClusterName != "" {
		opts.Cluster.Name = o.ClusterName
	}
	if o.ClusterListen != "" {
		host, port, err := net.SplitHostPort(o.ClusterListen)
		if err != nil {
			return fmt.Errorf("nats: cluster listen address %q: give host:port, e.g. 0.0.0.0:6222: %w", o.ClusterListen, err)
		}
		p, err := strconv.Atoi(port)
		if err != nil || p < -1 || p == 0 || p > 65535 {
			return fmt.Errorf("nats: cluster listen address %q: the port is not a number in 1..65535 (-1: any free port)", o.ClusterListen)
		}
		opts.Cluster.Host, opts.Cluster.Port = or(host, "0.0.0.0"), p
	}
	var routes []string
	for _, r := range o.Routes {
		if r = strings.TrimSpace(r); r != "" {
			if !strings.Contains(r, "://") {
				r = "nats-route://" + r
			}
			routes = append(routes, r)
		}
	}
	if len(routes) > 0 {
		opts.Routes = server.RoutesFromStr(strings.Join(routes, ","))
		if len(opts.Routes) != len(routes) {
			return fmt.Errorf("nats: routes %v: each must be host:port or nats-route://host:port", routes)
		}
	}
	clustered := opts.Cluster.Port != 0 || len(opts.Routes) > 0
	if !clustered {
		return nil
	}
	if opts.Cluster.Port == 0 {
		return errors.New("nats: routes are set but no cluster listen address: give --cluster host:port (every node listens for the others)")
	}
	if opts.ServerName == "" {
		return errors.New("nats: a JetStream cluster node needs a name of its own (--server-name or server_name)")
	}
	if opts.Cluster.Name == "" {
		return errors.New("nats: a JetStream cluster needs a name, the same on every node (--cluster-name or cluster { name })")
	}
	return nil
}

// storeLimits applies the JetStream storage caps. Unset, the server would
// take 75% of the free disk, and on a small disk refuse to provision the
// streams' caps (their sum is reserved up front).
func storeLimits(opts *server.Options, o EmbeddedOptions) error {
	if o.MaxFileStore < 0 || o.MaxMemoryStore < 0 {
		return errors.New("nats: max file and memory store must not be negative")
	}
	if o.MaxFileStore > 0 {
		opts.JetStreamMaxStore = o.MaxFileStore
	}
	if opts.JetStreamMaxStore == 0 {
		opts.JetStreamMaxStore = server.JetStreamMaxStoreDefault
	}
	if o.MaxMemoryStore > 0 {
		opts.JetStreamMaxMemory = o.MaxMemoryStore
	}
	return nil
}

// serverTLS makes the server require TLS with the given certificate.
func serverTLS(opts *server.Options, o EmbeddedOptions) error {
	if o.TLSCert == "" && o.TLSKey == "" {
		return nil
	}
	if o.TLSCert == "" || o.TLSKey == "" {
		return errors.New("nats: TLS needs both a certificate and its key (--tls-cert and --tls-key)")
	}
	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: o.TLSCert, KeyFile: o.TLSKey, Timeout: 5})
	if err != nil {
		return fmt.Errorf("nats: TLS certificate %s / key %s: %w", o.TLSCert, o.TLSKey, err)
	}
	opts.TLSConfig, opts.TLS, opts.TLSVerify, opts.TLSTimeout = tc, true, false, 5
	return nil
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// ConnectOptions configures a service's connection.
type ConnectOptions struct {
	Name     string // the service name, shown in server monitoring
	User     string
	Password string
	CAFile   string
	Logger   *slog.Logger
	// Wait bounds the first connection: an operator's tool says quickly
	// that the server is unreachable. 0 waits for ever (services: a
	// container started before the broker waits for it, retrying with
	// backoff and saying so, instead of crash-looping).
	Wait time.Duration
	// OnAttempt is told about every failed attempt to reach the server
	// (the service's readiness reports it).
	OnAttempt func(attempt int, err error)
}

// Connect dials NATS and keeps reconnecting for ever: a broker restart must
// not kill the services. The first connection is retried too, with backoff,
// and every failed attempt is logged.
func Connect(ctx context.Context, url string, o ConnectOptions) (*nats.Conn, error) {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	var attempts atomic.Int64
	failed := func(err error) {
		n := int(attempts.Add(1))
		if o.OnAttempt != nil {
			o.OnAttempt(n, err)
		}
		// Every attempt for the first ten, then every tenth: the wait
		// grows to 10 s, so a long outage logs a line every ~2 minutes.
		if n <= 10 || n%10 == 0 {
			log.Warn("cannot reach NATS; retrying", "url", redactedURL(url), "attempt", n, "next_in", reconnectDelay(n).String(), "err", err)
		}
	}
	opts := []nats.Option{
		nats.Name("relay-" + o.Name),
		nats.MaxReconnects(-1),
		nats.CustomReconnectDelay(reconnectDelay),
		nats.ReconnectBufSize(64 << 20),
		nats.RetryOnFailedConnect(true),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected; reconnecting", "err", err)
			}
		}),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) { failed(err) }),
		nats.ReconnectHandler(func(c *nats.Conn) {
			attempts.Store(0)
			log.Info("nats reconnected", "url", c.ConnectedUrlRedacted())
		}),
	}
	if o.User != "" {
		opts = append(opts, nats.UserInfo(o.User, o.Password))
	}
	if o.CAFile != "" {
		opts = append(opts, nats.RootCAs(o.CAFile))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		return nil, fmt.Errorf("nats %s: %w", redactedURL(url), err)
	}
	start := time.Now()
	for !nc.IsConnected() {
		// An operator's tool stops at a refusal that waiting cannot
		// change: the server's certificate, the user or password.
		if err := nc.LastError(); o.Wait > 0 && refused(err) {
			nc.Close()
			hint := "is the user/password right?"
			if strings.Contains(err.Error(), "x509:") || strings.Contains(err.Error(), "tls:") {
				hint = "give the CA that signed the server's certificate (--ca-file, RELAY_NATS_CA_FILE) and dial a name it holds"
			}
			return nil, fmt.Errorf("nats %s: %w (%s)", redactedURL(url), err, hint)
		}
		if ctx.Err() != nil || (o.Wait > 0 && time.Since(start) >= o.Wait) {
			err := nc.LastError()
			nc.Close()
			if err == nil {
				err = errors.New("no answer")
			}
			if ctx.Err() != nil && (o.Wait == 0 || time.Since(start) < o.Wait) {
				return nil, fmt.Errorf("nats %s: not connected: %w", redactedURL(url), ctx.Err())
			}
			return nil, fmt.Errorf("nats %s: cannot connect within %s: %w (is the server running, and the user/password right?)", redactedURL(url), o.Wait.Round(time.Second), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nc, nil
}

// refused is an error retrying will not cure: TLS verification (an unknown
// CA, a name the certificate does not hold) or a wrong user or password.
func refused(err error) bool {
	if err == nil {
		return false
	}
	var unknown x509.UnknownAuthorityError
	var host x509.HostnameError
	var invalid x509.CertificateInvalidError
	if errors.As(err, &unknown) || errors.As(err, &host) || errors.As(err, &invalid) || errors.Is(err, nats.ErrAuthorization) {
		return true
	}
	m := strings.ToLower(err.Error())
	return strings.Contains(m, "x509:") || strings.Contains(m, "authorization violation")
}

// reconnectDelay grows from half a second to 10 s: quick after a broker
// restart, quiet during a long outage.
func reconnectDelay(attempt int) time.Duration {
	d := 500 * time.Millisecond
	for i := 1; i < attempt && d < 10*time.Second; i++ {
		d *= 2
	}
	return min(d, 10*time.Second)
}

// redactedURL drops a password from a URL for messages.
func redactedURL(u string) string {
	if i := strings.Index(u, "@"); i >= 0 {
		if j := strings.Index(u, "://"); j >= 0 && j < i {
			return u[:j+3] + "***" + u[i:]
		}
	}
	return u
}

// PublishAckTimeout bounds the wait for JetStream's ack of an async
// publish. Without it a publish whose ack was lost (the server killed between
// storing and answering) blocks its caller forever: an exporter run stuck
// until its run timeout, hours later.
var PublishAckTimeout = 30 * time.Second

// APITimeout bounds one JetStream API request whose context has no deadline
// (nats.go's default is 5 s; a loaded two-core machine needs more margin).
const APITimeout = 15 * time.Second

// JetStream wraps a connection with the options every service uses.
func JetStream(nc *nats.Conn) (jetstream.JetStream, error) {
	return jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096), jetstream.WithPublishAsyncTimeout(PublishAckTimeout),
		// Every API request (KV, object store, consumer info, sync publish)
		// made with a context without a deadline waits at most this long.
		jetstream.WithDefaultTimeout(APITimeout))
}

// serverLog passes nats-server's log to slog: notices at debug (the start-up
// banner is long), warnings and errors as such.
type serverLog struct{ l *slog.Logger }

func (s serverLog) Noticef(format string, v ...any) { s.l.Debug(fmt.Sprintf(format, v...)) }
func (s serverLog) Warnf(format string, v ...any)   { s.l.Warn(fmt.Sprintf(format, v...)) }
func (s serverLog) Fatalf(format string, v ...any)  { s.l.Error(fmt.Sprintf(format, v...)) }
func (s serverLog) Errorf(format string, v ...any)  { s.l.Error(fmt.Sprintf(format, v...)) }
func (s serverLog) Debugf(format string, v ...any)  {}
func (s serverLog) Tracef(format string, v ...any)  {}

// StreamUsage reads every JetStream stream's size and byte cap from an
// in-process server (no NATS user needed), for relay_stream_bytes.
func StreamUsage(s *server.Server) ([]telemetry.StreamUsage, error) {
	jsz, err := s.Jsz(&server.JSzOptions{Accounts: true, Streams: true, Config: true})
	if err != nil {
		return nil, err
	}
	var out []telemetry.StreamUsage
	for _, a := range jsz.AccountDetails {
		for _, st := range a.Streams {
			u := telemetry.StreamUsage{Account: a.Name, Stream: st.Name, Bytes: st.State.Bytes, Msgs: st.State.Msgs}
			if st.Config != nil {
				u.MaxBytes = st.Config.MaxBytes
			}
			out = append(out, u)
		}
	}
	return out, nil
}
