package heal

import (
	"encoding/csv"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/protocol"
)

// The CDE checklist: one row per core instrument of the protocol, from the
// protocol check of each exported site (run on the site's own dictionary,
// read with its token, as `relay check` does): used when a site collects it,
// substituted when a site collects an allowed substitute instead, not used
// when no site collects either. released_fields counts the package's
// columns mapped to it (0: collected, but no policy releases it).

// Checklist statuses.
const (
	CDEUsed        = "used"
	CDESubstituted = "substituted"
	CDENotUsed     = "not used"
)

var checklistHeader = []string{
	"instrument", "label", "heal_cde_id", "heal_data_platform_id", "crf_name", "status",
	"substitutes_used", "sites_used", "sites_substituted", "sites_not_used", "released_fields", "note",
}

// ChecklistRow is one core instrument.
type ChecklistRow struct {
	Instrument, Label, CURIE, HDP, CRFName, Status string
	Substitutes                                    []string // "phq8 (HEALCDE:patient-health-questionnaire-8)"
	Used, Substituted, NotUsed                     []string // site IDs
	Released                                       int
	Note                                           string
}

func checklist(p *protocol.Protocol, sites []*site, L *layout) []ChecklistRow {
	var out []ChecklistRow
	for i := range p.Instruments {
		in := &p.Instruments[i]
		r := ChecklistRow{Instrument: in.Name, Label: in.Label, Released: L.mapped[in.Name]}
		if ids, ok := p.CRFIDs(in); ok {
			r.CURIE, r.HDP, r.CRFName = ids.CURIE, ids.HDP, ids.Name
		} else {
			r.Note = "no HEAL CDE id in the protocol (crf:)"
		}
		subs := map[string]bool{}
		for _, s := range sites {
			pi := reportInstrument(s.report, in.Name)
			switch {
			case pi == nil || s.report.Status == messages.ProtocolError:
				r.NotUsed = append(r.NotUsed, s.cfg.ID)
			case pi.Status == messages.InstrumentPresent:
				r.Used = append(r.Used, s.cfg.ID)
			case pi.Status == messages.InstrumentIncomplete && pi.Substitute == "":
				// Collected, with items missing: used, and said so.
				r.Used = append(r.Used, s.cfg.ID)
				r.Note = joinNote(r.Note, "incomplete at site "+s.cfg.ID+" (items missing: see its protocol report)")
			case pi.Status == messages.InstrumentSubstituted || pi.Status == messages.InstrumentIncomplete:
				r.Substituted = append(r.Substituted, s.cfg.ID)
				if !subs[pi.Substitute] {
					subs[pi.Substitute] = true
					r.Substitutes = append(r.Substitutes, substituteName(p, pi.Substitute))
				}
				r.Released += L.mapped[pi.Substitute]
			default:
				r.NotUsed = append(r.NotUsed, s.cfg.ID)
			}
		}
		switch {
		case len(r.Used) > 0:
			r.Status = CDEUsed
		case len(r.Substituted) > 0:
			r.Status = CDESubstituted
		default:
			r.Status = CDENotUsed
		}
		if r.Status != CDENotUsed && r.Released == 0 {
			r.Note = joinNote(r.Note, "collected, but no site's policy releases its fields")
		}
		out = append(out, r)
	}
	return out
}

func joinNote(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

func substituteName(p *protocol.Protocol, name string) string {
	if ids, ok := p.CRFIDs(p.Instrument(name)); ok && ids.CURIE != "" {
		return name + " (" + ids.CURIE + ")"
	}
	return name
}

func reportInstrument(r *protocol.Report, name string) *messages.ProtocolInstrument {
	for i := range r.Instruments {
		if r.Instruments[i].Instrument == name {
			return &r.Instruments[i]
		}
	}
	return nil
}

func writeChecklist(w io.Writer, rows []ChecklistRow) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(checklistHeader); err != nil {
		return err
	}
	for _, r := range rows {
		rec := []string{r.Instrument, r.Label, r.CURIE, r.HDP, r.CRFName, r.Status,
			strings.Join(r.Substitutes, "; "), strings.Join(r.Used, "; "), strings.Join(r.Substituted, "; "),
			strings.Join(r.NotUsed, "; "), strconv.Itoa(r.Released), r.Note}
		if err := cw.Write(rec); err != nil {
			return fmt.Errorf("cde-checklist.csv: %w", err)
		}
	}
	cw.Flush()
	return cw.Error()
}
