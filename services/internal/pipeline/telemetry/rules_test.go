package telemetry

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

var deploy = filepath.Join("..", "..", "..", "..", "deploy")

// TestAlertRulesPassPromtool runs Prometheus' own checker on the shipped
// rules (Debian's prometheus package; .ci/run installs it).
func TestAlertRulesPassPromtool(t *testing.T) {
	bin, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not installed (apt-get install -y prometheus): skipping the rules syntax check")
	}
	out, err := exec.Command(bin, "check", "rules", filepath.Join(deploy, "prometheus", "alerts.yml")).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "SUCCESS") {
		t.Fatalf("promtool check rules: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}

var metricRe = regexp.MustCompile(`\brelay_[a-z0-9_]+`)

// TestRulesAndDashboardNameOnlyExportedMetrics: every relay_* metric the
// alert rules and the Grafana dashboard query is one the code registers,
// and every alert the issue asks for is there.
func TestRulesAndDashboardNameOnlyExportedMetrics(t *testing.T) {
	exported := map[string]bool{}
	for _, n := range MetricNames() {
		exported[n] = true
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			exported[n+suf] = true
		}
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
				Expr  string `yaml:"expr"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	raw, err := os.ReadFile(filepath.Join(deploy, "prometheus", "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		t.Fatal(err)
	}
	var exprs []string
	alerts := map[string]bool{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			exprs = append(exprs, r.Expr)
			alerts[r.Alert] = true
		}
	}
	for _, want := range []string{"RelaySiteNotSynced", "RelayRunFailed", "RelayDeadLettersGrowing", "RelayDestinationUnreachable", "RelayProtocolScoreDropped", "RelayDeletionsHeld"} {
		if !alerts[want] {
			t.Errorf("alerts.yml lacks %s", want)
		}
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	raw, err = os.ReadFile(filepath.Join(deploy, "grafana", "relay.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("relay.json: %v", err)
	}
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q queries nothing", p.Title)
		}
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	used := map[string]bool{}
	for _, e := range exprs {
		for _, m := range metricRe.FindAllString(e, -1) {
			used[m] = true
		}
	}
	var missing []string
	for m := range used {
		if !exported[m] {
			missing = append(missing, m)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Fatalf("rules or dashboard query metrics the code does not export: %v", missing)
	}
	if len(used) < 15 {
		t.Fatalf("only %d metrics used: %v", len(used), used)
	}
	t.Logf("%d metrics used by %d expressions, all exported", len(used), len(exprs))
}
