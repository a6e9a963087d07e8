package ops

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/redcap-relay/relay/services/internal/config"
)

// The production compose file gives each service only the secrets it reads
// (a transformer never sees a site token), and the shipped example network
// file points at exactly those mounts.
func TestComposeMountsOnlyTheSecretsEachServiceReads(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "..", "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Services map[string]struct {
			Volumes []string `yaml:"volumes"`
			Secrets []string `yaml:"secrets"`
		} `yaml:"services"`
		Secrets map[string]any `yaml:"secrets"`
	}
	if err := yaml.Unmarshal(raw, &file); err != nil {
		t.Fatal(err)
	}
	const prefix = "/run/secrets/relay/"
	want := map[string]string{ // service -> the relay secret folders it mounts
		"nats": "", "provision": "", "ticker": "",
		"exporter":    "pseudonym sites", // site tokens; the key compiles pseudonymising policies
		"transformer": "pseudonym",
		"importer":    "destination",
		"checker":     "sites",  // reads site data for the protocol check
		"notifier":    "alerts", // the SMTP password and webhook URLs
		"ctl":         "alerts destination pseudonym sites",
	}
	for name, svc := range file.Services {
		var got []string
		for _, v := range svc.Volumes {
			if i := strings.Index(v, prefix); i >= 0 {
				got = append(got, strings.SplitN(v[i+len(prefix):], ":", 2)[0])
			}
		}
		sort.Strings(got)
		w, ok := want[name]
		if !ok {
			t.Errorf("service %s: not in this test's list; decide which secrets it may see", name)
			continue
		}
		if strings.Join(got, " ") != w {
			t.Errorf("service %s mounts %v, want [%s]", name, got, w)
		}
	}
	for name := range file.Secrets {
		if !strings.HasPrefix(name, "nats_") {
			t.Errorf("compose secret %q is mounted how? only NATS secrets are compose secrets; REDCap tokens are per-service folders", name)
		}
	}

	n, err := config.Load(filepath.Join("..", "..", "..", "deploy", "network.example.yaml"))
	if err != nil {
		t.Fatalf("the shipped example network file does not load: %v", err)
	}
	check := func(what, path, dir string) {
		if !strings.HasPrefix(path, prefix+dir+"/") {
			t.Errorf("example %s reads %q, outside the %s folder mounted at %s%s/", what, path, dir, prefix, dir)
		}
	}
	check("destination token", n.Destination.Token.File, "destination")
	check("pseudonym key", n.PseudonymKey.File, "pseudonym")
	for _, s := range n.Sites {
		if s.Token.Env == "" { // an environment variable is the other way
			check("site "+s.ID+" token", s.Token.File, "sites")
		}
	}
}
