package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/pipeline/retry"
	"github.com/redcap-relay/relay/services/internal/pipeline/sitemeta"
	"github.com/redcap-relay/relay/services/internal/policy"
	"github.com/redcap-relay/relay/services/internal/redcap"
)

// BaselineResult is what one baseline run did.
type BaselineResult struct {
	Records   int           `json:"records"`
	Calls     int64         `json:"calls"`
	Wall      time.Duration `json:"wall_ns"`
	Export    time.Duration `json:"export_ns"`    // Export Records calls
	Transform time.Duration `json:"transform_ns"` // grouping + policy.Apply
	Import    time.Duration `json:"import_ns"`    // Import Records calls
	Meta      time.Duration `json:"meta_ns"`      // metadata snapshot + compile
	PeakRSS   int64         `json:"peak_rss_bytes,omitempty"`
	CPU       time.Duration `json:"cpu_ns,omitempty"` // user + system time of the child process
}

// Baseline syncs the way the original PHP tool does (background.md): for
// each site in turn, one Export Records call for all records, the transfer
// policy applied in memory, one Import Records call; no broker, no
// batching, nothing in parallel. It uses the project's own client and
// policy engine, and exports only the fields the policy approves (as the
// pipeline does), so the only difference measured is the approach.
func Baseline(ctx context.Context, net *config.Network) (BaselineResult, error) {
	var res BaselineResult
	start := time.Now()
	destTok, err := net.Destination.Token.Read()
	if err != nil {
		return res, err
	}
	dest, err := redcap.New(redcap.Options{Site: "destination", URL: net.Destination.URL, Token: destTok, CallsPerMinute: -1, Timeout: time.Hour})
	if err != nil {
		return res, err
	}
	var key []byte
	if net.PseudonymKey.IsSet() {
		k, err := net.PseudonymKey.Read()
		if err != nil {
			return res, err
		}
		key = []byte(k)
	}
	for i := range net.Sites {
		site := &net.Sites[i]
		tok, err := site.Token.Read()
		if err != nil {
			return res, err
		}
		c, err := redcap.New(redcap.Options{Site: site.ID, URL: site.URL, Token: tok, CallsPerMinute: -1, Timeout: time.Hour})
		if err != nil {
			return res, err
		}
		t := time.Now()
		snap, err := sitemeta.Fetch(ctx, c, site.ID, retry.Policy{MaxElapsed: time.Minute})
		if err != nil {
			return res, err
		}
		pol, err := policy.Load(site.Policy)
		if err != nil {
			return res, err
		}
		compiled, err := policy.Compile(pol, snap, policy.Options{Site: site.ID, Namespace: site.Namespace, DAG: site.DAG, Key: key})
		if err != nil {
			return res, err
		}
		res.Meta += time.Since(t)

		t = time.Now()
		rows, err := c.ExportRecords(ctx, redcap.ExportParams{Fields: compiled.ExportFields(), Events: compiled.ExportEvents()})
		if err != nil {
			return res, fmt.Errorf("site %s: export: %w", site.ID, err)
		}
		res.Export += time.Since(t)

		t = time.Now()
		idField := compiled.RecordIDField()
		var out []messages.Row
		version := time.Now().UnixMilli()
		n := 0
		for _, rec := range redcap.GroupRecords(rows, idField) {
			cl, err := compiled.Apply(messages.RecordExported{V: messages.V, Site: site.ID, RecordID: rec.ID, Version: version, Rows: rec.Rows})
			if err != nil {
				return res, err
			}
			out = append(out, cl.Rows...)
			n++
		}
		rows = nil
		res.Transform += time.Since(t)

		t = time.Now()
		if _, err := dest.ImportRecords(ctx, out, redcap.ImportParams{}); err != nil {
			return res, fmt.Errorf("site %s: import: %w", site.ID, err)
		}
		res.Import += time.Since(t)
		res.Records += n
		res.Calls += c.Calls()
	}
	res.Calls += dest.Calls()
	res.Wall = time.Since(start)
	return res, nil
}
