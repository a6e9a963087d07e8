package protocol

import "strings"

// CRFIDs are an instrument's identifiers in the HEAL CRF table
// (heal-crf-ids.csv): what a HEAL submission's standards mappings cite.
type CRFIDs struct {
	Name  string // CRF Name, e.g. "PEG Pain Screening Tool"
	CURIE string // HEAL CDE CURIE, e.g. "HEALCDE:peg"; "" when the table has NA
	HDP   string // HEAL Data Platform CURIE, e.g. "HEALDATAPLATFORM:HDPCDE5111"; may be ""
}

// CRFIDs returns the CRF-table row of an instrument's crf: key (a HEAL CDE
// CURIE or a CRF Name, compared without case); false when the instrument
// has no crf: or the table has no such row.
func (p *Protocol) CRFIDs(in *Instrument) (CRFIDs, bool) {
	if in == nil || in.CRF == "" {
		return CRFIDs{}, false
	}
	row, ok := p.crfs[strings.ToLower(in.CRF)]
	if !ok {
		return CRFIDs{}, false
	}
	return CRFIDs{Name: row.Name, CURIE: row.CURIE, HDP: row.HDP}, true
}
