package heal

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"

	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/ops/dryrun"
	"github.com/redcap-relay/relay/services/internal/pipeline/retry"
	"github.com/redcap-relay/relay/services/internal/pipeline/sitemeta"
	"github.com/redcap-relay/relay/services/internal/policy"
	"github.com/redcap-relay/relay/services/internal/protocol"
)

// site is what the package needs to know about one site: read with the
// site's own token (its dictionary, as the exporter reads it), its policy
// compiled against it exactly as the pipeline compiles it, and its
// protocol check.
type site struct {
	cfg      *config.Site
	compiled *policy.Compiled
	policy   *policy.Policy
	// released are the destination columns the policy writes (record ID,
	// fields with checkboxes expanded, <form>_complete).
	released map[string]bool
	report   *protocol.Report
	records  int
}

// loadSite reads one site's metadata and compiles its policy. A site whose
// policy the pipeline would refuse cannot be exported either: what reaches
// the destination from it is then unknown.
func loadSite(ctx context.Context, n *config.Network, p *protocol.Protocol, st *config.Site, rp retry.Policy, log *slog.Logger) (*site, error) {
	c, err := dryrun.SiteClient(st, log)
	if err != nil {
		return nil, err
	}
	snap, err := sitemeta.Fetch(ctx, c, st.ID, rp)
	if err != nil {
		return nil, fmt.Errorf("site %s: could not read the project's metadata with the site's token (needed to know what its policy releases): %w", st.ID, err)
	}
	pol, err := policy.Load(st.Policy)
	if err != nil {
		return nil, fmt.Errorf("site %s: %w", st.ID, err)
	}
	popts, err := dryrun.PolicyOptions(n, st)
	if err != nil {
		return nil, err
	}
	compiled, err := policy.Compile(pol, snap, popts)
	if err != nil {
		return nil, fmt.Errorf("site %s: the pipeline refuses this site's policy, so what reaches the destination from it is not known: %w", st.ID, err)
	}
	s := &site{cfg: st, compiled: compiled, policy: pol, released: map[string]bool{}}
	for _, f := range compiled.DestFields() {
		s.released[f] = true
	}
	s.report = protocol.Check(p, st.ID, snap, nil)
	s.report.SiteName = st.Name
	return s, nil
}

// shifted lists the destination fields whose dates the policy shifts or
// reduces to the year (field names only).
func (s *site) dateRules() (shifted, years []string) {
	for _, d := range s.compiled.Decisions() {
		switch d.Action {
		case policy.Shift:
			shifted = append(shifted, d.Dest)
		case policy.Year:
			years = append(years, d.Dest)
		}
	}
	sort.Strings(shifted)
	sort.Strings(years)
	return shifted, years
}

// idRule says how the site's destination record IDs are made.
func (s *site) idRule() string {
	if s.policy.RecordID.Mode == policy.ModeHMAC {
		return fmt.Sprintf("`%s-` + keyed hash (HMAC-SHA256 with the network's pseudonym key) of the site's record ID", s.cfg.Namespace)
	}
	return fmt.Sprintf("`%s-` + the site's study record ID", s.cfg.Namespace)
}

// siteOf finds the site of a destination record ID by its namespace
// prefix, the longest match winning (namespaces may contain '-').
type siteIndex struct {
	prefixes []string
	sites    map[string]*site // prefix -> site (nil: a network site not exported)
}

func newSiteIndex(n *config.Network, chosen map[string]*site) *siteIndex {
	x := &siteIndex{sites: map[string]*site{}}
	for _, st := range n.Sites {
		p := st.Namespace + "-"
		x.prefixes = append(x.prefixes, p)
		x.sites[p] = chosen[st.ID]
	}
	sort.Slice(x.prefixes, func(i, j int) bool { return len(x.prefixes[i]) > len(x.prefixes[j]) })
	return x
}

// of returns the record's site; known is false when no network site's
// namespace matches.
func (x *siteIndex) of(id string) (s *site, known bool) {
	for _, p := range x.prefixes {
		if strings.HasPrefix(id, p) {
			return x.sites[p], true
		}
	}
	return nil, false
}

// sitesOf lists the chosen sites in network order.
func sitesOf(n *config.Network, ids []string) ([]*config.Site, error) {
	if len(ids) == 0 {
		out := make([]*config.Site, len(n.Sites))
		for i := range n.Sites {
			out[i] = &n.Sites[i]
		}
		return out, nil
	}
	want := map[string]bool{}
	for _, id := range ids {
		if _, ok := n.Site(id); !ok {
			return nil, fmt.Errorf("--site %s: not a site of %s (sites: %s)", id, n.Path(), strings.Join(n.SiteIDs(), ", "))
		}
		want[id] = true
	}
	var out []*config.Site
	for i := range n.Sites {
		if want[n.Sites[i].ID] {
			out = append(out, &n.Sites[i])
		}
	}
	return out, nil
}
