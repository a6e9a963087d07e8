package checker

import (
	"archive/zip"
	"bytes"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/protocol"
	"github.com/redcap-relay/relay/services/internal/tools/redcapsim/odm"
)

// Offline is a site checked from files instead of its REDCap API, e.g. a
// project a site sends before it goes live.
type Offline struct {
	Site string
	// Dictionary is a data dictionary CSV (API or UI layout), a REDCap
	// instrument zip (instrument.csv inside), or a project XML ("Download
	// project XML": dictionary, arms, events, designations and repeating
	// setup in one file).
	Dictionary string
	// Arms, Events, Mapping (instrument designation) and Repeating are the
	// project's CSVs as REDCap exports them; optional. Without any of them
	// (and without a project XML) events are not checked, and the report
	// says so.
	Arms, Events, Mapping, Repeating string
}

// CheckOffline checks sites from files. A file that cannot be read or
// parsed gets an error report naming it; the other sites are still checked.
func CheckOffline(p *protocol.Protocol, sites []Offline) []*messages.ProtocolReport {
	out := make([]*messages.ProtocolReport, 0, len(sites))
	for _, o := range sites {
		snap, known, err := LoadOffline(o)
		if err != nil {
			out = append(out, protocol.Failed(p, o.Site, err))
			continue
		}
		out = append(out, protocol.CheckWith(p, o.Site, snap, nil, protocol.Options{EventsUnknown: !known}))
	}
	return out
}

// CheckFiles checks data dictionary files alone, one per site (see
// CheckOffline).
func CheckFiles(p *protocol.Protocol, files map[string]string, order []string) []*messages.ProtocolReport {
	var sites []Offline
	for _, s := range order {
		sites = append(sites, Offline{Site: s, Dictionary: files[s]})
	}
	return CheckOffline(p, sites)
}

// LoadOffline builds a site's metadata snapshot from its files; known says
// whether the project's events were given (a project XML, or any of the
// arms, events and mapping CSVs).
func LoadOffline(o Offline) (snap *messages.MetadataSnapshot, known bool, err error) {
	snap = &messages.MetadataSnapshot{V: messages.V, Site: o.Site}
	raw, err := os.ReadFile(o.Dictionary)
	if err != nil {
		return nil, false, fmt.Errorf("site %s: dictionary file: %w", o.Site, err)
	}
	switch strings.ToLower(filepath.Ext(o.Dictionary)) {
	case ".xml":
		pr, err := odm.Parse(bytes.NewReader(raw))
		if err != nil {
			return nil, false, fmt.Errorf("site %s: project XML %s: %w", o.Site, o.Dictionary, err)
		}
		snap.Project.ProjectTitle = pr.Title
		snap.Fields, snap.Instruments, snap.Arms, snap.Events = pr.Fields, pr.Instruments, pr.Arms, pr.Events
		snap.FormEventMapping, snap.Repeating = pr.FEM, pr.Repeating
		known = true
	case ".zip":
		if raw, err = instrumentCSV(raw); err != nil {
			return nil, false, fmt.Errorf("site %s: instrument zip %s: %w", o.Site, o.Dictionary, err)
		}
		fallthrough
	default:
		if snap.Fields, err = protocol.ParseDictionary(bytes.NewReader(raw)); err != nil {
			return nil, false, fmt.Errorf("site %s: dictionary %s: %w", o.Site, o.Dictionary, err)
		}
		snap.Instruments = protocol.InstrumentsOf(snap.Fields)
	}
	read := func(what, path string, parse func(io.Reader) error) error {
		if path == "" {
			return nil
		}
		known = true
		f, err := os.Open(path)
		if err != nil {
			return fmt.Errorf("site %s: %s file: %w", o.Site, what, err)
		}
		defer f.Close()
		if err := parse(f); err != nil {
			return fmt.Errorf("site %s: %s file %s: %w", o.Site, what, path, err)
		}
		return nil
	}
	err = read("arms", o.Arms, func(r io.Reader) (err error) { snap.Arms, err = protocol.ParseArms(r); return })
	if err == nil {
		err = read("events", o.Events, func(r io.Reader) (err error) { snap.Events, err = protocol.ParseEvents(r); return })
	}
	if err == nil {
		err = read("instrument designation", o.Mapping, func(r io.Reader) (err error) {
			snap.FormEventMapping, err = protocol.ParseFormEventMapping(r)
			return
		})
	}
	if err == nil && o.Repeating != "" {
		f, ferr := os.Open(o.Repeating)
		if ferr != nil {
			return nil, false, fmt.Errorf("site %s: repeating instruments file: %w", o.Site, ferr)
		}
		snap.Repeating, err = protocol.ParseRepeating(f)
		f.Close()
		if err != nil {
			err = fmt.Errorf("site %s: repeating instruments file %s: %w", o.Site, o.Repeating, err)
		}
	}
	if err != nil {
		return nil, false, err
	}
	if len(snap.Events) > 0 || len(snap.FormEventMapping) > 0 {
		snap.Project.IsLongitudinal = 1
	}
	if len(snap.Repeating) > 0 {
		snap.Project.HasRepeatingInstrumentsOrEvents = 1
	}
	snap.ComputeHash()
	return snap, known, nil
}

// instrumentCSV takes instrument.csv out of a REDCap instrument zip.
func instrumentCSV(raw []byte) ([]byte, error) {
	zr, err := zip.NewReader(bytes.NewReader(raw), int64(len(raw)))
	if err != nil {
		return nil, err
	}
	for _, f := range zr.File {
		if strings.EqualFold(filepath.Base(f.Name), "instrument.csv") {
			rc, err := f.Open()
			if err != nil {
				return nil, err
			}
			defer rc.Close()
			return io.ReadAll(io.LimitReader(rc, 64<<20))
		}
	}
	return nil, fmt.Errorf("no instrument.csv inside (is it a REDCap instrument zip?)")
}

// NetworkLocation is the time zone reports show times in: the sites' time
// zone when they all share one (the usual case: a network in one region),
// else UTC; the machine's own zone for an offline check.
func NetworkLocation(n *config.Network) *time.Location {
	if n == nil {
		return time.Local
	}
	zone := ""
	for _, s := range n.Sites {
		switch {
		case zone == "":
			zone = s.TimeZone
		case s.TimeZone != zone:
			return time.UTC
		}
	}
	if loc, err := time.LoadLocation(zone); err == nil && zone != "" {
		return loc
	}
	return time.UTC
}
