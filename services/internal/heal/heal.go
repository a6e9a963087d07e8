// Package heal builds a network's HEAL Data Platform submission package
// from the coordinating center's REDCap (`relay export heal`):
//
//	vlmd/data-dictionary.json   HEAL VLMD dictionary (schema 0.3.2), one field per released column
//	vlmd/data-dictionary.csv    the same in HEAL's CSV form
//	data/<study>.csv            the destination's records, one row per record x event x repeat instance
//	cde-checklist.csv           per core CDE instrument: used / substituted / not used
//	README.md                   study, sites, policies, how dates were shifted and IDs assigned
//	manifest.csv                every other file with its size and MD5
//
// Only what the chosen sites' transfer policies release is in it: the
// columns each policy writes (compiled against the site's dictionary, read
// with the site's token, exactly as the pipeline compiles it), and in each
// record only the columns its own site's policy writes. The dictionary is
// mapped from the destination's REDCap dictionary the way HEAL's converter
// does it (package vlmd), with standards mappings to the HEAL CDE
// instrument and item of every field of a core-library instrument.
package heal

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/heal/vlmd"
	"github.com/redcap-relay/relay/services/internal/pipeline/retry"
	"github.com/redcap-relay/relay/services/internal/pipeline/sitemeta"
	"github.com/redcap-relay/relay/services/internal/protocol"
	"github.com/redcap-relay/relay/services/internal/redcap"
)

// Package files.
const (
	FileDictJSON  = "vlmd/data-dictionary.json"
	FileDictCSV   = "vlmd/data-dictionary.csv"
	FileChecklist = "cde-checklist.csv"
	FileReadme    = "README.md"
	FileManifest  = "manifest.csv"
)

// Options configure an export.
type Options struct {
	Network  *config.Network
	Protocol *protocol.Protocol
	Out      string   // a new or empty folder
	Sites    []string // site IDs; empty = every site
	// StudyTitle names the study (default: the destination project's title).
	StudyTitle string
	// Validate checks the written package against HEAL's schemas.
	Validate bool
	// BatchSize is records per Export Records call (default 1000);
	// Concurrency the calls at once (default 2).
	BatchSize, Concurrency int
	Logger                 *slog.Logger
	Retry                  retry.Policy
	Now                    func() time.Time
}

// Result is what was written.
type Result struct {
	Dir       string
	DataFile  string // relative to Dir
	Records   int
	Rows      int
	Fields    int
	Files     []ManifestEntry
	Checklist []ChecklistRow
	// Warnings name fields, sites or instruments, never values.
	Warnings []string
	// Violations are set by Validate: every way the package breaks HEAL's
	// schemas or is inconsistent with itself.
	Violations []string
	Validated  bool
}

// Export writes the package. Errors name the site, setting or field.
func Export(ctx context.Context, o Options) (*Result, error) {
	if err := o.defaults(); err != nil {
		return nil, err
	}
	if err := emptyDir(o.Out); err != nil {
		return nil, err
	}
	n, p := o.Network, o.Protocol
	chosen, err := sitesOf(n, o.Sites)
	if err != nil {
		return nil, err
	}
	var sites []*site
	byID := map[string]*site{}
	for _, st := range chosen {
		s, err := loadSite(ctx, n, p, st, o.Retry, o.Logger)
		if err != nil {
			return nil, err
		}
		sites = append(sites, s)
		byID[st.ID] = s
	}
	dc, err := destinationClient(n, o.Logger)
	if err != nil {
		return nil, err
	}
	dest, err := sitemeta.Fetch(ctx, dc, "destination", o.Retry)
	if err != nil {
		return nil, destErr("read the project's metadata", err)
	}
	res := &Result{Dir: o.Out}
	dags, err := retry.Value(ctx, o.Retry, func() ([]messages.DAG, error) { return dc.ExportDAGs(ctx) })
	if err != nil {
		res.Warnings = append(res.Warnings, "destination: data access groups could not be read, so the data file has no site column: "+err.Error())
		dags = nil
	}
	L, err := buildLayout(p, dest, dags, sites)
	if err != nil {
		return nil, err
	}
	res.Warnings = append(res.Warnings, L.warnings...)
	res.Fields = len(L.fields)
	title := o.StudyTitle
	if title == "" {
		title = dest.Project.ProjectTitle
	}
	res.DataFile = "data/" + slug(title) + ".csv"

	when := o.Now().UTC()
	var stats *dataStats
	e, err := writeFile(o.Out, res.DataFile, "de-identified records: one row per record x event x repeat instance, columns as in the dictionary", func(w io.Writer) error {
		var err error
		stats, err = writeData(ctx, w, dc, L, newSiteIndex(n, byID), o.BatchSize, o.Concurrency, o.Retry)
		return err
	})
	if err != nil {
		return nil, err
	}
	res.Records, res.Rows = stats.Records, stats.Rows
	for _, s := range sites {
		s.records = stats.PerSite[s.cfg.ID]
	}
	res.Warnings = append(res.Warnings, stats.withheldText()...)
	if stats.Unknown > 0 {
		res.Warnings = append(res.Warnings, fmt.Sprintf("destination: %d record(s) whose ID matches no site's namespace were left out (entered at the center, or from a site no longer in the network)", stats.Unknown))
	}
	files := []ManifestEntry{e}

	dict := &vlmd.Dictionary{
		Title:         title,
		Description:   fmt.Sprintf("Variable-level metadata of %s: the de-identified data the network's sites transfer to the coordinating center's REDCap, as released by each site's IRB-approved transfer policy.", title),
		SchemaVersion: vlmd.SchemaVersion,
		Version:       when.Format("2006-01-02T15:04:05Z"),
		Custom:        vlmd.Pairs{{Key: "generator", Value: "REDCap Relay (relay export heal)"}, {Key: "dataFile", Value: res.DataFile}, {Key: "protocol", Value: p.Name + " " + p.Version}},
		Fields:        L.fields,
	}
	for _, f := range []struct {
		rel, desc string
		fill      func(io.Writer) error
	}{
		{FileDictJSON, "HEAL VLMD data dictionary (JSON, schema " + vlmd.SchemaVersion + ")", dict.WriteJSON},
		{FileDictCSV, "HEAL VLMD data dictionary (CSV template, schema " + vlmd.SchemaVersion + ")", func(w io.Writer) error { return vlmd.WriteCSV(w, L.fields) }},
	} {
		e, err := writeFile(o.Out, f.rel, f.desc, f.fill)
		if err != nil {
			return nil, err
		}
		files = append(files, e)
	}
	res.Checklist = checklist(p, sites, L)
	e, err = writeFile(o.Out, FileChecklist, "HEAL core CDE checklist from the protocol check of each site", func(w io.Writer) error { return writeChecklist(w, res.Checklist) })
	if err != nil {
		return nil, err
	}
	files = append(files, e)
	e, err = writeFile(o.Out, FileReadme, "what the package holds and how it was de-identified", func(w io.Writer) error {
		return writeReadme(w, readmeData{title: title, when: when, dest: dest, sites: sites, res: res, stats: stats, files: files, protocol: p, layout: L})
	})
	if err != nil {
		return nil, err
	}
	res.Files = append(files, e)
	if _, err := writeFile(o.Out, FileManifest, "", func(w io.Writer) error { return writeManifest(w, res.Files) }); err != nil {
		return nil, err
	}
	if o.Validate {
		if res.Violations, err = Validate(o.Out); err != nil {
			return res, err
		}
		res.Validated = true
	}
	return res, nil
}

func (o *Options) defaults() error {
	if o.Network == nil || o.Protocol == nil {
		return fmt.Errorf("heal export: network and protocol are required")
	}
	if o.Out == "" {
		return fmt.Errorf("give the package folder with --out DIR")
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 1000
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 2
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Retry.MaxElapsed == 0 && o.Retry.Budget == nil {
		o.Retry = retry.Policy{MaxElapsed: 2 * time.Minute}
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return nil
}

// emptyDir makes sure the package goes into a new or empty folder, so no
// file of an older package (or anything else) is mistaken for part of it.
func emptyDir(dir string) error {
	es, err := os.ReadDir(dir)
	switch {
	case os.IsNotExist(err):
		return os.MkdirAll(dir, 0o755)
	case err != nil:
		return fmt.Errorf("--out %s: %w", dir, err)
	case len(es) > 0:
		return fmt.Errorf("--out %s is not empty: give a new or empty folder for the package", dir)
	}
	return nil
}

func destinationClient(n *config.Network, log *slog.Logger) (*redcap.Client, error) {
	d := n.Destination
	tok, err := d.ReadExportToken()
	if err != nil {
		return nil, fmt.Errorf("destination: %w", err)
	}
	c, err := redcap.New(redcap.Options{Site: "destination", URL: d.URL, Token: tok, CAFile: d.CAFile,
		CallsPerMinute: d.CallsPerMinute, Timeout: d.Timeout.D(), Logger: log})
	if err != nil {
		return nil, fmt.Errorf("destination: %w", err)
	}
	return c, nil
}

var slugRe = regexp.MustCompile(`[^a-z0-9]+`)

// slug makes a file name of the study title.
func slug(title string) string {
	s := strings.Trim(slugRe.ReplaceAllString(strings.ToLower(title), "-"), "-")
	if s == "" {
		return "study"
	}
	if len(s) > 60 {
		s = strings.TrimRight(s[:60], "-")
	}
	return s
}
