// Package web is the operator's dashboard (`relay web`, and inside `relay
// all`): one read-only page, rendered on the server with html/template from
// the same read of NATS as `relay status` (per site the last run and its
// records, the next run, the last success, the protocol score; the lag and
// dead letters per stage; the notifier's delivery state), with small SVG
// charts of the last 30 runs' records and protocol scores per site. No
// script, font or image is loaded from anywhere; the page refreshes itself.
//
// It listens on loopback by default. On any other address it requires
// HTTP basic auth with the password read from a file.
package web

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/notify"
	"github.com/redcap-relay/relay/services/internal/ops"
)

// DefaultAddr is where the dashboard listens unless told otherwise.
const DefaultAddr = "127.0.0.1:8470"

// History is how many runs and protocol checks the charts show per site.
const History = 30

// Options configure the dashboard.
type Options struct {
	Addr string // default DefaultAddr
	// User and PasswordFile are the basic-auth credentials, required when
	// Addr is not a loopback address (User defaults to "relay").
	User         string
	PasswordFile string
	// Refresh is how often the page reloads itself (default 15s).
	Refresh time.Duration
	Network *config.Network
	Logger  *slog.Logger
	// Listening, when set, is told the address once the server listens.
	Listening func(addr string)
}

// Source reads the status the page shows.
type Source func(ctx context.Context) (*ops.Status, error)

// NATSSource reads the status from NATS (and asks the notifier for its own).
func NATSSource(nc *nats.Conn, js jetstream.JetStream, net *config.Network) Source {
	return func(ctx context.Context) (*ops.Status, error) {
		st, err := ops.Collect(ctx, js, ops.StatusOptions{Network: net, History: History})
		if err != nil {
			return nil, err
		}
		if nc != nil {
			st.Notifier = notify.Ask(ctx, nc)
		}
		return st, nil
	}
}

// Serve runs the dashboard until ctx ends.
func Serve(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, o Options) error {
	if o.Addr == "" {
		o.Addr = DefaultAddr
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	h, err := Handler(NATSSource(nc, js, o.Network), o)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return fmt.Errorf("dashboard: listen on %s: %w", o.Addr, err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	o.Logger.Info("dashboard", "url", "http://"+ln.Addr().String()+"/", "auth", o.PasswordFile != "")
	if o.Listening != nil {
		o.Listening(ln.Addr().String())
	}
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Handler is the dashboard's HTTP handler: / (the page), /status.json (the
// same data as `relay status --json`) and /healthz.
func Handler(src Source, o Options) (http.Handler, error) {
	if o.Refresh <= 0 {
		o.Refresh = 15 * time.Second
	}
	if o.User == "" {
		o.User = "relay"
	}
	password := ""
	if o.PasswordFile != "" {
		p, err := config.Secret{File: o.PasswordFile}.Read()
		if err != nil {
			return nil, fmt.Errorf("dashboard password file: %w", err)
		}
		password = p
	} else if !Loopback(o.Addr) && o.Addr != "" {
		return nil, fmt.Errorf("dashboard on %s: an address other than loopback needs basic auth: give --web-password-file (or RELAY_WEB_PASSWORD_FILE), or listen on %s", o.Addr, DefaultAddr)
	}
	c := &cache{src: src, every: 5 * time.Second}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		st, err := c.get(r.Context())
		page := build(st, err, o)
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if err := pageTemplate.Execute(w, page); err != nil {
			o.Logger.Warn("dashboard page", "err", err)
		}
	})
	mux.HandleFunc("GET /status.json", func(w http.ResponseWriter, r *http.Request) {
		st, err := c.get(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(st)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	return secure(mux, o.User, password), nil
}

// secure adds the headers that keep the page self-contained and, with a
// password, basic auth.
func secure(next http.Handler, user, password string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'; form-action 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		if password != "" {
			u, p, ok := r.BasicAuth()
			if !ok || subtle.ConstantTimeCompare([]byte(u), []byte(user)) != 1 || subtle.ConstantTimeCompare([]byte(p), []byte(password)) != 1 {
				h.Set("WWW-Authenticate", `Basic realm="REDCap Relay", charset="UTF-8"`)
				http.Error(w, "authentication required", http.StatusUnauthorized)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}

// Loopback reports whether addr (host:port) listens on loopback only.
func Loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// cache reads the status at most every few seconds, however many browsers
// refresh.
type cache struct {
	src   Source
	every time.Duration

	mu  sync.Mutex
	at  time.Time
	st  *ops.Status
	err error
}

func (c *cache) get(ctx context.Context) (*ops.Status, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.at) < c.every && (c.st != nil || c.err != nil) {
		return c.st, c.err
	}
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	c.st, c.err = c.src(rctx)
	c.at = time.Now()
	return c.st, c.err
}
