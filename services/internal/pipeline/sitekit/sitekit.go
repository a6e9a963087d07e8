// Package sitekit builds, from the network file, what the services need per
// site: its REDCap client (with its own token), its transfer policy compiled
// for a metadata snapshot, the pseudonym key, and the destination's client.
// Each is built once and shared: the policy is compiled once per policy
// version and snapshot, however many services of the process ask for it.
//
// Services do not depend on the Kit itself but on the small interfaces they
// declare in their Deps, so their unit tests can give them in-memory fakes.
package sitekit

import (
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/pipeline/telemetry"
	"github.com/redcap-relay/relay/services/internal/policy"
	"github.com/redcap-relay/relay/services/internal/redcap"
)

// DestinationName is the destination's name in clients' errors and logs.
const DestinationName = "destination"

// Kit is the per-site toolbox of one process. It is safe for concurrent use.
type Kit struct {
	net *config.Network
	log *slog.Logger
	// PolicyRecheck is how often a policy file's modification time is looked
	// at again, so an edited policy takes effect without a restart.
	PolicyRecheck time.Duration

	mu       sync.Mutex
	policies map[string]*loadedPolicy // site ID -> its policy file
	compiled map[string]*policy.Compiled

	keyOnce sync.Once
	key     []byte
	keyErr  error
}

type loadedPolicy struct {
	pol     *policy.Policy
	modTime time.Time
	checked time.Time
}

// New builds a kit for the network.
func New(n *config.Network, log *slog.Logger) *Kit {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Kit{net: n, log: log, PolicyRecheck: 5 * time.Second,
		policies: map[string]*loadedPolicy{}, compiled: map[string]*policy.Compiled{}}
}

// Network is the network file the kit was built from.
func (k *Kit) Network() *config.Network { return k.net }

// Site returns a site of the network file.
func (k *Kit) Site(id string) (*config.Site, error) {
	if s, ok := k.net.Site(id); ok {
		return s, nil
	}
	return nil, fmt.Errorf("unknown site %q: it is not in the network file %s (sites: %v)", id, k.net.Path(), k.net.SiteIDs())
}

// Client is a new REDCap client for the site, with the site's token read
// now (a rotated token file takes effect at the next run). Clients of one
// REDCap server share its rate limit, however many there are.
func (k *Kit) Client(id string) (*redcap.Client, error) {
	s, ok := k.net.Site(id)
	if !ok {
		return nil, fmt.Errorf("unknown site %q: it is not in the network file %s", id, k.net.Path())
	}
	tok, err := s.Token.Read()
	if err != nil {
		return nil, fmt.Errorf("site %s: token (%s): %w", s.ID, s.Token, err)
	}
	c, err := redcap.New(redcap.Options{Site: s.ID, URL: s.URL, Token: tok, CAFile: s.CAFile,
		CallsPerMinute: s.CallsPerMinute, Timeout: s.Timeout.D(), Logger: k.log, Observe: observer(s.ID)})
	if err != nil {
		return nil, fmt.Errorf("site %s: %w", s.ID, err)
	}
	return c, nil
}

// Destination is a new REDCap client for the destination, with its token.
func (k *Kit) Destination() (*redcap.Client, error) {
	d := k.net.Destination
	tok, err := d.Token.Read()
	if err != nil {
		return nil, fmt.Errorf("destination token (%s): %w", d.Token, err)
	}
	c, err := redcap.New(redcap.Options{Site: DestinationName, URL: d.URL, Token: tok, CAFile: d.CAFile,
		CallsPerMinute: d.CallsPerMinute, Timeout: d.Timeout.D(), Logger: k.log, Observe: observer(DestinationName)})
	if err != nil {
		return nil, fmt.Errorf("destination: %w", err)
	}
	return c, nil
}

// observer times every call of a client in relay_redcap_call_seconds and
// counts its failures, labelled by site, call and outcome (never a value).
func observer(site string) redcap.Observer {
	return func(call string, status int, d time.Duration, err error) {
		telemetry.ObserveCall(site, call, redcap.Outcome(status, err), d)
	}
}

// PseudonymKey is the network's key for keyed record-ID hashes and date
// shifts (nil when the network has none).
func (k *Kit) PseudonymKey() ([]byte, error) {
	k.keyOnce.Do(func() {
		if !k.net.PseudonymKey.IsSet() {
			return
		}
		v, err := k.net.PseudonymKey.Read()
		if err != nil {
			k.keyErr = fmt.Errorf("pseudonym_key (%s): %w", k.net.PseudonymKey, err)
			return
		}
		k.key = []byte(v)
	})
	return k.key, k.keyErr
}

// LoadPolicy is the site's transfer policy as its file reads now (looked at
// again at most every PolicyRecheck).
func (k *Kit) LoadPolicy(id string) (*policy.Policy, error) {
	s, err := k.Site(id)
	if err != nil {
		return nil, err
	}
	k.mu.Lock()
	lp := k.policies[id]
	k.mu.Unlock()
	if lp != nil && time.Since(lp.checked) < k.PolicyRecheck {
		return lp.pol, nil
	}
	fi, err := os.Stat(s.Policy)
	if err != nil {
		return nil, fmt.Errorf("site %s: policy file: %w", id, err)
	}
	if lp != nil && fi.ModTime().Equal(lp.modTime) {
		k.mu.Lock()
		lp.checked = time.Now()
		k.mu.Unlock()
		return lp.pol, nil
	}
	pol, err := policy.Load(s.Policy)
	if err != nil {
		return nil, fmt.Errorf("site %s: %w", id, err)
	}
	k.mu.Lock()
	k.policies[id] = &loadedPolicy{pol: pol, modTime: fi.ModTime(), checked: time.Now()}
	k.mu.Unlock()
	return pol, nil
}

// Options binds the network's settings for a site's policy: namespace, DAG
// and the pseudonym key.
func (k *Kit) Options(id string) (policy.Options, error) {
	s, err := k.Site(id)
	if err != nil {
		return policy.Options{}, err
	}
	key, err := k.PseudonymKey()
	if err != nil {
		return policy.Options{}, err
	}
	return policy.Options{Site: s.ID, Namespace: s.Namespace, DAG: s.DAG, Key: key}, nil
}

// Policy is the site's policy compiled against a metadata snapshot: built
// once per policy version and snapshot, then shared. Its errors name the
// site, the policy file and every field the policy cannot decide.
func (k *Kit) Policy(id string, snap *messages.MetadataSnapshot) (*policy.Compiled, error) {
	pol, err := k.LoadPolicy(id)
	if err != nil {
		return nil, err
	}
	key := id + "/" + pol.Version() + "/" + snap.Hash
	k.mu.Lock()
	c := k.compiled[key]
	k.mu.Unlock()
	if c != nil {
		return c, nil
	}
	opts, err := k.Options(id)
	if err != nil {
		return nil, err
	}
	c, err = policy.Compile(pol, snap, opts)
	if err != nil {
		return nil, err // names the policy file, the site and every field
	}
	k.mu.Lock()
	k.compiled[key] = c
	k.mu.Unlock()
	return c, nil
}
