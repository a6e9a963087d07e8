package demo

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// WriteOptions places the demo network in a folder for docker-compose: the
// simulators there load projects/sites and projects/destination, and the
// services read network.yaml (pointing at SiteURL and DestinationURL).
type WriteOptions struct {
	Dir            string
	SiteURL        string // how the services reach the site simulator
	DestinationURL string // and the destination simulator
	ReportsDir     string // "" = <Dir>/reports
	Scale          float64
	// Replicas, above 1, writes streams.replicas (a JetStream cluster:
	// deploy/compose.cluster.yml).
	Replicas int
}

// Write builds the demo in a throw-away simulator, then writes every project
// as REDCap project XML (design and data) with its tokens.csv, and the
// network file, policy and secrets. A folder that already holds a network
// file is left as it is, so a restarted init container never changes the tokens.
func Write(ctx context.Context, o WriteOptions) error {
	if _, err := os.Stat(filepath.Join(o.Dir, "network.yaml")); err == nil {
		return nil
	}
	simd, err := startSimulated(nil, simOptions{dir: o.Dir, scale: o.Scale})
	if err != nil {
		return err
	}
	defer simd.close()
	st := simd.setup
	simURL := st.SimURL
	for name, pid := range st.Projects {
		folder, rights := filepath.Join(o.Dir, "projects", "sites", name), "export|metadata|logging"
		if name == "destination" {
			folder, rights = filepath.Join(o.Dir, "projects", "destination", name), "all"
		}
		tokFile := filepath.Join(o.Dir, "secrets", name+".token")
		tok, err := os.ReadFile(tokFile)
		if err != nil {
			return err
		}
		token := strings.TrimSpace(string(tok))
		xml, err := projectXML(ctx, simURL, token, name != "destination")
		if err != nil {
			return fmt.Errorf("demo: project %s (%d): %w", name, pid, err)
		}
		if err := os.MkdirAll(folder, 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(folder, "project.xml"), xml, 0o644); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(folder, "tokens.csv"), []byte("token,rights,dag\n"+token+","+rights+",\n"), 0o600); err != nil {
			return err
		}
	}
	reports := o.ReportsDir
	if reports == "" {
		reports = "reports"
	}
	net := networkYAMLFor(o.SiteURL, o.DestinationURL, reports, "", Sites)
	if o.Replicas > 1 {
		net += fmt.Sprintf("streams:\n  replicas: %d   # every stream and bucket on %d nodes of the JetStream cluster\n", o.Replicas, o.Replicas)
	}
	return os.WriteFile(st.NetworkFile, []byte(net), 0o644)
}

// projectXML downloads a project's XML (metadata and records) through the API.
func projectXML(ctx context.Context, apiURL, token string, withData bool) ([]byte, error) {
	form := url.Values{"token": {token}, "content": {"project_xml"}, "returnMetadataOnly": {fmt.Sprint(!withData)}, "returnFormat": {"json"}}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, apiURL, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("project XML export: HTTP %d", resp.StatusCode)
	}
	return b, nil
}
