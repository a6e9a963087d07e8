package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/redcap-relay/relay/services/internal/ops"
	"github.com/redcap-relay/relay/services/internal/pipeline/app"
	"github.com/redcap-relay/relay/services/internal/pipeline/broker"
)

// The test binary doubles as the relay binary for the scripts it runs
// (RELAY_BIN=<test binary>, RELAY_TEST_AS_RELAY=1).
func TestMain(m *testing.M) {
	if os.Getenv("RELAY_TEST_AS_RELAY") == "1" {
		os.Exit(run(os.Args[1:], os.Stderr))
	}
	os.Exit(m.Run())
}

const repo = "../../.."

// relay runs one command line in this process.
func relay(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	rootCmd.SetOut(&out)
	defer rootCmd.SetOut(nil)
	code = run(args, &errOut)
	return code, out.String(), errOut.String()
}

// exampleWithPlaceholders is deploy/network.example.yaml as shipped, with
// the secrets scripts/compose-secrets.sh --placeholders creates where
// docker-compose mounts them (/run/secrets/relay/... becomes a folder here),
// and policies/ and protocol/ beside it as the README says.
func exampleWithPlaceholders(t *testing.T) (network, secrets string) {
	t.Helper()
	dir := t.TempDir()
	secrets = filepath.Join(dir, "secrets")
	cmd := exec.Command("bash", filepath.Join(repo, "scripts", "compose-secrets.sh"), "--placeholders")
	cmd.Env = append(os.Environ(), "RELAY_SECRETS_DIR="+secrets, "RELAY_BIN="+os.Args[0], "RELAY_TEST_AS_RELAY=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("compose-secrets.sh --placeholders: %v\n%s", err, out)
	}
	raw, err := os.ReadFile(filepath.Join(repo, "deploy", "network.example.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, "config")
	if err := os.MkdirAll(config, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"policies", "protocol"} {
		abs, _ := filepath.Abs(filepath.Join(repo, "deploy", d))
		if err := os.Symlink(abs, filepath.Join(config, d)); err != nil {
			t.Fatal(err)
		}
	}
	network = filepath.Join(config, "network.yaml")
	body := strings.ReplaceAll(string(raw), "/run/secrets/relay/", secrets+"/")
	if err := os.WriteFile(network, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return network, secrets
}

// siteEnv sets the variables of secrets/sites.env, as docker-compose's
// env_file does for the exporter, the checker and ctl.
func siteEnv(t *testing.T, secrets string) {
	t.Helper()
	f, err := os.Open(filepath.Join(secrets, "sites.env"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			t.Setenv(k, v)
		}
	}
}

// The shipped example validates with the placeholder secrets the script
// creates, both token styles included (a file, and an env var from
// sites.env); without sites.env the env-var site is named.
func TestExampleNetworkValidatesWithThePlaceholderSecrets(t *testing.T) {
	network, secrets := exampleWithPlaceholders(t)
	t.Setenv("PITT_REDCAP_TOKEN", "")
	code, out, errOut := relay(t, "config", "validate", "-n", network)
	if code == 0 || !strings.Contains(out, "sites[pitt].token: environment variable PITT_REDCAP_TOKEN is not set") {
		t.Errorf("without sites.env: exit %d\n%s%s", code, out, errOut)
	}
	siteEnv(t, secrets)
	code, out, errOut = relay(t, "config", "validate", "-n", network)
	if code != 0 || !strings.Contains(out, "is valid: 2 site(s), destination https://redcap.center.example.org/api/") {
		t.Fatalf("the example with placeholder secrets: exit %d\n%s%s", code, out, errOut)
	}
	// The NATS server's copies are bcrypt hashes of the clients' passwords.
	for _, u := range []string{"admin", "ticker", "exporter", "transformer", "importer", "checker"} {
		pw, _ := os.ReadFile(filepath.Join(secrets, "nats", u+".password"))
		h, _ := os.ReadFile(filepath.Join(secrets, "nats", u+".bcrypt"))
		if err := bcrypt.CompareHashAndPassword(bytes.TrimSpace(h), bytes.TrimSpace(pw)); err != nil {
			t.Errorf("%s.bcrypt is not the hash of %s.password: %v", u, u, err)
		}
	}
	// Run again: everything is kept.
	before, _ := os.ReadFile(filepath.Join(secrets, "nats", "admin.bcrypt"))
	exampleAgain := exec.Command("bash", filepath.Join(repo, "scripts", "compose-secrets.sh"), "--placeholders")
	exampleAgain.Env = append(os.Environ(), "RELAY_SECRETS_DIR="+secrets, "RELAY_BIN="+os.Args[0], "RELAY_TEST_AS_RELAY=1")
	if out, err := exampleAgain.CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("a second run changed something: %v %s", err, out)
	}
	if after, _ := os.ReadFile(filepath.Join(secrets, "nats", "admin.bcrypt")); !bytes.Equal(before, after) {
		t.Error("a second run made a new hash")
	}
}

// jsonLines parses stderr as JSON log lines.
func jsonLines(t *testing.T, stderr string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(stderr), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not a JSON line: %q", line)
		}
		out = append(out, m)
	}
	return out
}

// Without its network file every service and provisioning stop at once
// with one line saying what is missing and where it goes (as JSON under
// --log-json).
func TestMissingNetworkFileFailsFastWithOneLine(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "config", "network.yaml")
	for _, name := range append(append([]string{}, app.All...), "provision") {
		start := time.Now()
		code, _, stderr := relay(t, name, "-n", missing, "--log-json")
		lines := jsonLines(t, stderr)
		if code != 1 || len(lines) != 1 || time.Since(start) > 5*time.Second {
			t.Fatalf("%s: exit %d after %s, %d line(s): %s", name, code, time.Since(start), len(lines), stderr)
		}
		msg, _ := lines[0]["msg"].(string)
		if lines[0]["level"] != "ERROR" || !strings.Contains(msg, "network file "+missing+" does not exist") || !strings.Contains(msg, "./config/network.yaml") {
			t.Errorf("%s: %s", name, stderr)
		}
		if name != "provision" && lines[0]["service"] != name {
			t.Errorf("%s: the line does not name the service: %s", name, stderr)
		}
	}
	code, _, stderr := relay(t, "exporter", "-n", missing, "--log-json=false")
	if code != 1 || !strings.HasPrefix(stderr, "relay: network file ") || strings.Count(stderr, "\n") != 1 {
		t.Errorf("text mode: exit %d: %q", code, stderr)
	}
}

// A service that cannot read its secrets refuses to start with the full
// list, in one JSON line, before it tries NATS.
func TestUnreadableSecretsStopAServiceWithOneJSONLine(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"policy.yaml"} {
		os.WriteFile(filepath.Join(dir, f), []byte("name: x\n"), 0o600)
	}
	net := filepath.Join(dir, "network.yaml")
	os.WriteFile(net, []byte(`nats: {url: "nats://127.0.0.1:1"}
destination:
  url: https://center.example.org/api/
  token: {file: missing-destination.token}
pseudonym_key: {file: missing-pseudonym.key}
sites:
  - id: wake
    url: https://wake.example.org/api/
    token: {file: missing-wake.token}
    policy: policy.yaml
`), 0o600)
	start := time.Now()
	code, _, stderr := relay(t, "importer", "-n", net, "--log-json")
	lines := jsonLines(t, stderr)
	if code != 1 || len(lines) != 1 || time.Since(start) > 5*time.Second {
		t.Fatalf("exit %d after %s: %s", code, time.Since(start), stderr)
	}
	msg, _ := lines[0]["msg"].(string)
	if !strings.Contains(msg, "destination.token: read secret file") || strings.Contains(msg, "wake.token") || lines[0]["service"] != "importer" {
		t.Errorf("the importer's line: %s", stderr)
	}
}

// Every log line names its service once, though the command and the
// service both add it.
func TestLogLinesNameTheServiceOnce(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(onceAttrs{slog.NewJSONHandler(&buf, nil), nil}).With("service", "exporter")
	log.With("service", "exporter").With("site", "wake").Info("run started")
	line := buf.String()
	if strings.Count(line, `"service"`) != 1 || !strings.Contains(line, `"site":"wake"`) {
		t.Errorf("log line: %s", line)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(line), &m); err != nil || m["service"] != "exporter" {
		t.Errorf("log line: %s (%v)", line, err)
	}
}

// With TLS on the server (relay nats --tls-cert/--tls-key and the
// certificates `relay nats tls-certs` makes), a client that has the CA
// connects; one without it, or one that dials a name the certificate does
// not hold, is refused: every client verifies the server.
func TestTLSClientsVerifyTheServer(t *testing.T) {
	dir := t.TempDir()
	if code, out, errOut := relay(t, "nats", "tls-certs", "--out", dir, "--host", "localhost"); code != 0 {
		t.Fatalf("tls-certs: %s%s", out, errOut)
	}
	if code, out, _ := relay(t, "nats", "tls-certs", "--out", dir, "--host", "localhost"); code != 0 || !strings.Contains(out, "kept") {
		t.Errorf("a second tls-certs: %s", out)
	}
	srv, err := broker.StartEmbedded(broker.EmbeddedOptions{StoreDir: t.TempDir(), Port: -1,
		TLSCert: filepath.Join(dir, "server.pem"), TLSKey: filepath.Join(dir, "server.key")})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	port := srv.Addr().String()[strings.LastIndex(srv.Addr().String(), ":"):]
	dial := func(url, ca string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		nc, _, err := ops.Dial(ctx, ops.Conn{URL: url, CAFile: ca, Timeout: time.Second})
		if err == nil {
			nc.Close()
		}
		return err
	}
	ca := filepath.Join(dir, "ca.pem")
	if err := dial("tls://localhost"+port, ca); err != nil {
		t.Fatalf("with the CA: %v", err)
	}
	if err := dial("tls://localhost"+port, ""); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("without the CA: %v, want a certificate error", err)
	}
	if err := dial("tls://127.0.0.1"+port, ca); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("a name the certificate does not hold: %v, want a certificate error", err)
	}
	if err := dial("nats://localhost"+port, ""); err == nil {
		t.Error("a nats:// client without the CA connected to a TLS server")
	}
}
