// Package report writes protocol-check reports: per site a JSON file, a CSV
// file and an HTML page that holds only that site's findings (to forward
// to the site as it is), and the network page index.html (the summary of
// every site and what changed); print-friendly, no JavaScript. It compares
// each report with the site's previous one.
//
// The reports folder holds <site>.json (the messages.ProtocolReport schema,
// the same body as relay.protocol.report.<site>), <site>.csv, <site>.html
// and index.html.
package report

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/redcap-relay/relay/messages"
)

var writeMu sync.Mutex

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9_-]`)

// FileBase is the file name (without extension) of a site's reports.
func FileBase(site string) string {
	s := unsafeName.ReplaceAllString(site, "_")
	if s == "" {
		s = "_"
	}
	return s
}

// Write stores reports in dir: for each, it reads the site's previous
// <site>.json, fills Changes against it, then writes <site>.json,
// <site>.csv and <site>.html (atomically); last it rebuilds index.html
// from every <site>.json in dir, so the page always shows the whole network.
func Write(dir string, reports ...*messages.ProtocolReport) error {
	return WriteWith(dir, Options{}, reports...)
}

// Options of the HTML pages.
type Options struct {
	// Location is the time zone times are shown in (nil: UTC).
	Location *time.Location
}

// WriteWith is Write with page options.
func WriteWith(dir string, o Options, reports ...*messages.ProtocolReport) error {
	writeMu.Lock()
	defer writeMu.Unlock()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("reports folder %s: %w", dir, err)
	}
	for _, r := range reports {
		base := filepath.Join(dir, FileBase(r.Site))
		if prev, err := readReport(base + ".json"); err == nil && prev != nil {
			r.Changes = Diff(prev, r)
			at := prev.CheckedAt
			r.PreviousCheckedAt = &at
		}
		var jb bytes.Buffer
		if err := JSON(&jb, r); err != nil {
			return err
		}
		if err := writeAtomic(base+".json", jb.Bytes()); err != nil {
			return err
		}
		var cb bytes.Buffer
		if err := CSV(&cb, r); err != nil {
			return err
		}
		if err := writeAtomic(base+".csv", cb.Bytes()); err != nil {
			return err
		}
		var sb bytes.Buffer
		if err := SiteHTML(&sb, o, r); err != nil {
			return err
		}
		if err := writeAtomic(base+".html", sb.Bytes()); err != nil {
			return err
		}
	}
	all, err := ReadDir(dir)
	if err != nil {
		return err
	}
	var hb bytes.Buffer
	if err := HTMLWith(&hb, o, all); err != nil {
		return err
	}
	return writeAtomic(filepath.Join(dir, "index.html"), hb.Bytes())
}

// ReadDir loads every <site>.json report in dir, sorted by site.
func ReadDir(dir string) ([]*messages.ProtocolReport, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	var out []*messages.ProtocolReport
	for _, p := range paths {
		r, err := readReport(p)
		if err != nil {
			return nil, err
		}
		if r != nil {
			out = append(out, r)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Site < out[j].Site })
	return out, nil
}

func readReport(path string) (*messages.ProtocolReport, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("report %s: %w", path, err)
	}
	var r messages.ProtocolReport
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("report %s is not a protocol report (%v): remove or fix it", path, err)
	}
	if r.Site == "" {
		return nil, nil // some other JSON file
	}
	return &r, nil
}

func writeAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// JSON writes one report, indented.
func JSON(w io.Writer, r *messages.ProtocolReport) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

func findingKey(f messages.ProtocolFinding) string {
	return strings.Join([]string{f.Severity, f.Kind, f.Instrument, f.Field, f.Event}, "|")
}

// Diff lists what changed from prev to cur: score and status, instrument
// status, fields added to or removed from a site form, and findings that
// are new or resolved.
func Diff(prev, cur *messages.ProtocolReport) []messages.ProtocolChange {
	var out []messages.ProtocolChange
	site := cur.Site
	if ps, cs := scoreText(prev), scoreText(cur); ps != cs {
		out = append(out, messages.ProtocolChange{Kind: messages.ChangeScore, Before: ps, After: cs,
			Message: fmt.Sprintf("site %s: score %s → %s", site, ps, cs)})
	}
	prevInst := map[string]messages.ProtocolInstrument{}
	for _, in := range prev.Instruments {
		prevInst[in.Instrument] = in
	}
	fieldChanged := map[string]bool{}
	for _, in := range cur.Instruments {
		pi, ok := prevInst[in.Instrument]
		if !ok {
			continue
		}
		if pi.Status != in.Status || pi.Form != in.Form || pi.Substitute != in.Substitute {
			out = append(out, messages.ProtocolChange{Kind: messages.ChangeInstrument, Instrument: in.Instrument,
				Before: instText(pi), After: instText(in),
				Message: fmt.Sprintf("site %s: %s was %s, now %s", site, in.Instrument, instText(pi), instText(in))})
		}
		if pi.Form != in.Form || in.Form == "" {
			continue
		}
		before, after := set(pi.SiteFields), set(in.SiteFields)
		for _, f := range pi.SiteFields {
			if !after[f] {
				fieldChanged[f] = true
				out = append(out, messages.ProtocolChange{Kind: messages.ChangeFieldRemoved, Instrument: in.Instrument, Field: f,
					Message: fmt.Sprintf("site %s removed field %s from form %s since the last check", site, f, in.Form)})
			}
		}
		for _, f := range in.SiteFields {
			if !before[f] {
				fieldChanged[f] = true
				out = append(out, messages.ProtocolChange{Kind: messages.ChangeFieldAdded, Instrument: in.Instrument, Field: f,
					Message: fmt.Sprintf("site %s added field %s to form %s since the last check", site, f, in.Form)})
			}
		}
	}
	prevF, curF := map[string]messages.ProtocolFinding{}, map[string]messages.ProtocolFinding{}
	for _, f := range prev.Findings {
		prevF[findingKey(f)] = f
	}
	for _, f := range cur.Findings {
		curF[findingKey(f)] = f
	}
	covered := func(f messages.ProtocolFinding) bool {
		return (f.Kind == "field_missing" || f.Kind == "field_extra") && fieldChanged[f.Field]
	}
	for _, f := range cur.Findings {
		if _, ok := prevF[findingKey(f)]; ok || covered(f) {
			continue
		}
		out = append(out, messages.ProtocolChange{Kind: messages.ChangeNewFinding, Instrument: f.Instrument, Field: f.Field,
			After: f.Kind, Message: "new since the last check: " + f.Message})
	}
	for _, f := range prev.Findings {
		if _, ok := curF[findingKey(f)]; ok || covered(f) {
			continue
		}
		out = append(out, messages.ProtocolChange{Kind: messages.ChangeResolvedFinding, Instrument: f.Instrument, Field: f.Field,
			Before: f.Kind, Message: "resolved since the last check: " + f.Message})
	}
	if prev.Error != cur.Error {
		switch {
		case cur.Error != "":
			out = append(out, messages.ProtocolChange{Kind: messages.ChangeNewFinding, After: "error", Message: "the site could not be checked: " + cur.Error})
		case prev.Error != "":
			out = append(out, messages.ProtocolChange{Kind: messages.ChangeResolvedFinding, Before: "error", Message: "the site can be checked again"})
		}
	}
	return out
}

func set(xs []string) map[string]bool {
	m := make(map[string]bool, len(xs))
	for _, x := range xs {
		m[x] = true
	}
	return m
}

func instText(in messages.ProtocolInstrument) string {
	switch {
	case in.Substitute != "":
		return fmt.Sprintf("%s by %s (form %s)", in.Status, in.Substitute, in.Form)
	case in.Form != "":
		return fmt.Sprintf("%s (form %s)", in.Status, in.Form)
	}
	return in.Status
}

func scoreText(r *messages.ProtocolReport) string {
	if r.Score == nil {
		return "n/a"
	}
	return fmt.Sprintf("%.1f", *r.Score)
}
