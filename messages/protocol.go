package messages

import "time"

// ProtocolReport is the checker's verdict on one site against the protocol
// (core library): the body of relay.protocol.report.<site> on stream REPORTS
// and, byte for byte, the <site>.json file in the reports folder.
//
// It carries metadata (field names, types, choice codes and labels,
// validation types) and counts, never a data value.
type ProtocolReport struct {
	V               int       `json:"v"`
	Site            string    `json:"site"`
	SiteName        string    `json:"site_name,omitempty"`
	RunID           string    `json:"run_id,omitempty"`
	MetadataHash    string    `json:"metadata_hash,omitempty"`
	ProtocolName    string    `json:"protocol_name"`
	ProtocolVersion string    `json:"protocol_version"`
	CheckedAt       time.Time `json:"checked_at"`
	// Status is ProtocolConformant, ProtocolDeviations or ProtocolError.
	Status string `json:"status"`
	// Score is the conformance score 0..100 (see the protocol package's
	// documentation for the formula); nil when the site could not be checked.
	Score *float64 `json:"score"`
	// Error says why the site could not be checked (Status ProtocolError).
	Error    string `json:"error,omitempty"`
	Errors   int    `json:"errors"`   // findings with severity error
	Warnings int    `json:"warnings"` // findings with severity warning
	Infos    int    `json:"infos"`    // findings with severity info
	// Longitudinal is the site project's setting; Arms and Events count its design.
	Longitudinal bool                 `json:"longitudinal"`
	Arms         int                  `json:"arms"`
	Events       int                  `json:"events"`
	Instruments  []ProtocolInstrument `json:"instruments"`
	Findings     []ProtocolFinding    `json:"findings"`
	Completion   []ProtocolCompletion `json:"completion,omitempty"`
	// Changes compare this report with the previous one for the site.
	Changes []ProtocolChange `json:"changes,omitempty"`
	// PreviousCheckedAt is when the report that Changes compare with was made.
	PreviousCheckedAt *time.Time `json:"previous_checked_at,omitempty"`
}

// Report statuses.
const (
	ProtocolConformant = "conformant"
	ProtocolDeviations = "deviations"
	ProtocolError      = "error"
)

// Instrument statuses.
const (
	InstrumentPresent     = "present"
	InstrumentSubstituted = "substituted"
	InstrumentIncomplete  = "incomplete" // found, but items are missing (Substitute says by what)
	InstrumentMissing     = "missing"
	InstrumentError       = "error" // the protocol entry itself is broken
)

// Finding severities: errors are deviations (they make a site
// non-conformant and lower its score), warnings deserve a look, infos are
// notes.
const (
	SeverityError   = "error"
	SeverityWarning = "warning"
	SeverityInfo    = "info"
)

// ProtocolInstrument is one required instrument of the protocol at a site.
type ProtocolInstrument struct {
	Instrument string `json:"instrument"` // the protocol's instrument name
	Label      string `json:"label"`
	Status     string `json:"status"`
	// Form is the site's form that implements it ("" when missing).
	Form string `json:"form,omitempty"`
	// Parts are the other forms holding its items when the site split it.
	Parts []string `json:"parts,omitempty"`
	// Substitute names the protocol's allowed substitute the site uses.
	Substitute string `json:"substitute,omitempty"`
	// MatchedBy says how Form was found: name, alias, fields (items found
	// by name), content (items found by wording and answer codes).
	MatchedBy      string   `json:"matched_by,omitempty"`
	FieldsExpected int      `json:"fields_expected"`
	FieldsOK       int      `json:"fields_ok"` // present without an error-level difference
	EventsPlanned  []string `json:"events_planned,omitempty"`
	EventsMapped   []string `json:"events_mapped,omitempty"`
	// SiteFields are the field names of Form at the site (names only), so
	// the next report can say which fields were added or removed.
	SiteFields []string `json:"site_fields,omitempty"`
	Score      float64  `json:"score"` // 0..1
	Error      string   `json:"error,omitempty"`
}

// ProtocolFinding is one difference between a site and the protocol.
// Expected and Actual hold metadata (types, codes, labels), never data.
type ProtocolFinding struct {
	Severity   string `json:"severity"`
	Kind       string `json:"kind"`
	Instrument string `json:"instrument,omitempty"`
	Form       string `json:"form,omitempty"`
	Field      string `json:"field,omitempty"`      // the protocol's field name
	SiteField  string `json:"site_field,omitempty"` // the site's name when it differs
	Event      string `json:"event,omitempty"`
	Expected   string `json:"expected,omitempty"`
	Actual     string `json:"actual,omitempty"`
	Message    string `json:"message"`
	// Wording is the protocol item's question, for people who read the
	// report without the library at hand.
	Wording string `json:"wording,omitempty"`
	// Match says how a site field was tied to the protocol's item when
	// their names differ (renamed, ambiguous and conflicting matches).
	Match *ProtocolMatch `json:"match,omitempty"`
	// Categories are the HIPAA Safe Harbor identifier categories of an
	// identifier finding.
	Categories []string `json:"categories,omitempty"`
}

// ProtocolMatch is how a site field was found for a protocol item under
// another name.
type ProtocolMatch struct {
	// By is "name_variant" (the corrections table or the protocol's
	// field_aliases) or "content" (question wording, answer codes and
	// labels, type and validation).
	By string `json:"by"`
	// Score is the content match's strength, 0..1 (1: the same item).
	Score float64 `json:"score,omitempty"`
	// Basis lists what agreed: wording, choices, codes, type, validation.
	Basis []string `json:"basis,omitempty"`
	// Candidates are, for an ambiguous match, every site field (or
	// protocol item) that fits as well as the best.
	Candidates []string `json:"candidates,omitempty"`
	// Recode maps the site's answer codes to the protocol's where only the
	// codes differ (same labels): the transfer policy's recode.
	Recode map[string]string `json:"recode,omitempty"`
}

// ProtocolCompletion is form completion of one instrument at one event,
// from the site's <form>_complete values (0 incomplete, 1 unverified,
// 2 complete, blank never saved).
type ProtocolCompletion struct {
	Instrument string  `json:"instrument"`
	Form       string  `json:"form"`
	Event      string  `json:"event,omitempty"` // the site's unique event name
	Planned    string  `json:"planned,omitempty"`
	Records    int     `json:"records"` // records with a row at the event
	Complete   int     `json:"complete"`
	Unverified int     `json:"unverified"`
	Incomplete int     `json:"incomplete"`
	Blank      int     `json:"blank"`
	Rate       float64 `json:"rate"` // Complete / Records
	// Items is per-item missingness among saved forms, when item values
	// were fetched.
	Items []ProtocolItemMissing `json:"items,omitempty"`
}

// ProtocolItemMissing counts empty answers of one item in saved forms.
type ProtocolItemMissing struct {
	Field   string  `json:"field"`
	Missing int     `json:"missing"`
	Saved   int     `json:"saved"`
	Rate    float64 `json:"rate"` // Missing / Saved
}

// Change kinds.
const (
	ChangeNewFinding      = "new_finding"
	ChangeResolvedFinding = "resolved_finding"
	ChangeFieldRemoved    = "field_removed"
	ChangeFieldAdded      = "field_added"
	ChangeInstrument      = "instrument_status"
	ChangeScore           = "score"
)

// ProtocolChange is one difference from the previous report.
type ProtocolChange struct {
	Kind       string `json:"kind"`
	Instrument string `json:"instrument,omitempty"`
	Field      string `json:"field,omitempty"`
	Before     string `json:"before,omitempty"`
	After      string `json:"after,omitempty"`
	Message    string `json:"message"`
}

// MsgID dedupes redeliveries of the same check.
func (r ProtocolReport) MsgID() string {
	run := r.RunID
	if run == "" { // on-demand checks have no run: each is its own report
		run = r.CheckedAt.UTC().Format("20060102T150405.000000000Z")
	}
	return "protocol." + r.Site + "." + run + "." + short(r.MetadataHash) + "." + r.ProtocolVersion
}
