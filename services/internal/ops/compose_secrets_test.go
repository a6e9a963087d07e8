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
		"checker":     "sites",                       // reads site data for the protocol check
		"notifier":    "alerts",                      // the SMTP password and webhook URLs
		"verifier":    "destination pseudonym sites", // compares sites with the destination through the policies
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

// The production compose file is safe to run for years: the broker holds
// only password hashes, site tokens given as environment variables reach
// only the services that read them, the operator's tools start nothing,
// a plain `up` keeps the transformers, and every long-running container
// has memory and CPU limits, rotated logs and a restart policy that gives
// up on a configuration mistake.
func TestComposeFileIsReadyForProduction(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "..", "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Services map[string]struct {
			Secrets   []string       `yaml:"secrets"`
			EnvFile   []string       `yaml:"env_file"`
			DependsOn map[string]any `yaml:"depends_on"`
			Scale     string         `yaml:"scale"`
			MemLimit  string         `yaml:"mem_limit"`
			CPUs      any            `yaml:"cpus"`
			Restart   string         `yaml:"restart"`
			Logging   struct {
				Options map[string]string `yaml:"options"`
			} `yaml:"logging"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(raw, &file); err != nil {
		t.Fatal(err)
	}
	for _, s := range file.Services["nats"].Secrets {
		if !strings.HasSuffix(s, "_hash") && s != "nats_store_key" {
			t.Errorf("the NATS server gets %s: it should get only the users' bcrypt hashes", s)
		}
	}
	for name, svc := range file.Services {
		envFile := len(svc.EnvFile) > 0
		if want := name == "exporter" || name == "checker" || name == "verifier" || name == "ctl"; envFile != want {
			t.Errorf("service %s: env_file (site tokens) %v, want %v", name, envFile, want)
		}
		if svc.MemLimit == "" || svc.Logging.Options["max-size"] == "" {
			t.Errorf("service %s: memory limit %q, log rotation %v", name, svc.MemLimit, svc.Logging.Options)
		}
		if name != "ctl" && svc.CPUs == nil {
			t.Errorf("service %s has no CPU limit", name)
		}
		if svc.Restart == "unless-stopped" || svc.Restart == "always" {
			t.Errorf("service %s restarts for ever (%s): a configuration mistake would spin", name, svc.Restart)
		}
	}
	if d := file.Services["ctl"].DependsOn; len(d) != 0 {
		t.Errorf("ctl depends on %v: `run --rm ctl` would start the broker", d)
	}
	if file.Services["provision"].Restart != "no" {
		t.Errorf("provision restarts (%s): `up` would wait on it for ever", file.Services["provision"].Restart)
	}
	if !strings.Contains(file.Services["transformer"].Scale, "3") {
		t.Errorf("transformer scale %q: a plain up would drop to one", file.Services["transformer"].Scale)
	}
}
