package dryrun

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/pipeline/retry"
	"github.com/redcap-relay/relay/services/internal/pipeline/sitemeta"
	"github.com/redcap-relay/relay/services/internal/policy"
	"github.com/redcap-relay/relay/services/internal/redcap"
)

var zeroTime time.Time

// SiteClient opens a REDCap client with the site's own token.
func SiteClient(site *config.Site, log *slog.Logger) (*redcap.Client, error) {
	tok, err := site.Token.Read()
	if err != nil {
		return nil, fmt.Errorf("site %s: token (%s): %w", site.ID, site.Token, err)
	}
	c, err := redcap.New(redcap.Options{Site: site.ID, URL: site.URL, Token: tok, CAFile: site.CAFile,
		CallsPerMinute: site.CallsPerMinute, Timeout: site.Timeout.D(), Logger: log})
	if err != nil {
		return nil, fmt.Errorf("site %s: %w", site.ID, err)
	}
	return c, nil
}

// DestinationClient opens a REDCap client for the coordinating center.
func DestinationClient(n *config.Network, log *slog.Logger) (*redcap.Client, error) {
	d := n.Destination
	tok, err := d.Token.Read()
	if err != nil {
		return nil, fmt.Errorf("destination: token (%s): %w", d.Token, err)
	}
	c, err := redcap.New(redcap.Options{Site: "destination", URL: d.URL, Token: tok, CAFile: d.CAFile,
		CallsPerMinute: d.CallsPerMinute, Timeout: d.Timeout.D(), Logger: log})
	if err != nil {
		return nil, fmt.Errorf("destination: %w", err)
	}
	return c, nil
}

// PolicyOptions binds the network's settings for one site: namespace, DAG
// and the pseudonym key (when the network has one).
func PolicyOptions(n *config.Network, site *config.Site) (policy.Options, error) {
	o := policy.Options{Site: site.ID, Namespace: site.Namespace, DAG: site.DAG}
	if n.PseudonymKey.IsSet() {
		k, err := n.PseudonymKey.Read()
		if err != nil {
			return o, fmt.Errorf("pseudonym_key (%s): %w", n.PseudonymKey, err)
		}
		o.Key = []byte(k)
	}
	return o, nil
}

// Explain fetches the site's metadata with the site's token and says what
// the site's policy does with each field. The error is Compile's refusal
// (nil when the policy compiles); the decisions are returned either way.
func Explain(ctx context.Context, n *config.Network, siteID string, log *slog.Logger) (*policy.Policy, *messages.MetadataSnapshot, []policy.Decision, error) {
	if log == nil {
		log = slog.Default()
	}
	site, ok := n.Site(siteID)
	if !ok {
		return nil, nil, nil, fmt.Errorf("site %q is not in %s", siteID, n.Path())
	}
	pol, err := policy.Load(site.Policy)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("site %s: %w", site.ID, err)
	}
	popts, err := PolicyOptions(n, site)
	if err != nil {
		return nil, nil, nil, err
	}
	c, err := SiteClient(site, log)
	if err != nil {
		return nil, nil, nil, err
	}
	meta, err := sitemeta.Fetch(ctx, c, site.ID, retry.Policy{MaxElapsed: 2 * time.Minute})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("site %s: metadata: %w", site.ID, err)
	}
	ds := policy.Explain(pol, meta, popts)
	_, cerr := policy.Compile(pol, meta, popts)
	return pol, meta, ds, cerr
}
