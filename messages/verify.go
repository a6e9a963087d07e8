package messages

import "time"

// SubjectVerify is where `relay verify` publishes each site's result on
// AUDIT (relay.verify.<site>). No request is ever sent on it: verification
// is started by the operator's command (or, later, the scheduler), so it
// overlaps no request subject.
const SubjectVerify = "relay.verify" // .<site>

// VerifySubject is the AUDIT subject of a site's verification results.
func VerifySubject(site string) string { return SubjectVerify + "." + site }

// Verification statuses.
const (
	VerifyEqual       = "equal"
	VerifyDifferences = "differences"
	VerifyError       = "error" // the site or the destination could not be read
)

// Repair reason of the export requests `relay verify --repair` publishes.
const ReasonRepair = "repair"

// VerifyResult is one site's comparison of the destination with the site:
// counts, field names and destination record IDs, never a value.
type VerifyResult struct {
	V      int          `json:"v"`
	Site   string       `json:"site"`
	Status string       `json:"status"`          // equal | differences | error
	Error  string       `json:"error,omitempty"` // why the site could not be verified
	Counts VerifyCounts `json:"counts"`
	// Fields counts, per destination field, the records whose value
	// differs at the destination (stale records only).
	Fields map[string]int `json:"fields,omitempty"`
	Policy VerifyPolicy   `json:"policy"`
	Files  VerifyFiles    `json:"files"`
	// Destination record IDs per kind (IDs are namespaced or keyed
	// hashes, never PHI by policy), each list capped at MaxVerifyIDs.
	Missing   []string `json:"missing,omitempty"`
	Stale     []string `json:"stale,omitempty"`
	Extra     []string `json:"extra,omitempty"`
	Refused   []string `json:"refused,omitempty"`
	Truncated bool     `json:"ids_truncated,omitempty"` // a list was longer than MaxVerifyIDs
	// Repair is what --repair published for the site (nil without).
	Repair     *VerifyRepair `json:"repair,omitempty"`
	StartedAt  time.Time     `json:"started_at"`
	FinishedAt time.Time     `json:"finished_at"`
}

// MaxVerifyIDs caps each ID list of a VerifyResult (the counts are exact).
const MaxVerifyIDs = 1000

// VerifyCounts are per-record outcomes. Records is the site's records the
// policy exports; Equal+Missing+Stale+Refused = Records.
type VerifyCounts struct {
	Records int `json:"records"`
	Equal   int `json:"equal"`
	Missing int `json:"missing"` // at the site, not at the destination
	Stale   int `json:"stale"`   // at both, the destination differs
	// Extra are destination records of the site's namespace the site does
	// not have. With propagate_deletions they are differences; without,
	// they are kept on purpose and counted in ExtraKept instead.
	Extra     int `json:"extra"`
	ExtraKept int `json:"extra_kept,omitempty"`
	Refused   int `json:"refused"` // the policy cannot transform them (dead-lettered by the transformer too)
}

// Differences is what makes a site's status "differences".
func (c VerifyCounts) Differences() int { return c.Missing + c.Stale + c.Extra }

// VerifyPolicy compares the policy version of the site's last sync (what
// the destination reflects) with the version the site's policy compiles to
// now. When they differ, StaleByPolicy stale records may differ only
// because the destination holds the older policy's output.
type VerifyPolicy struct {
	Current       string `json:"current"`
	Destination   string `json:"destination,omitempty"`
	Changed       bool   `json:"changed,omitempty"`
	StaleByPolicy int    `json:"stale_by_policy,omitempty"`
}

// VerifyFiles compares the files of kept file fields by SHA-256.
type VerifyFiles struct {
	Compared int `json:"compared"`
	Equal    int `json:"equal"`
	Missing  int `json:"missing"` // at the site, not at the destination
	Differ   int `json:"differ"`  // different SHA-256
	Extra    int `json:"extra"`   // at the destination, removed at the site
}

// VerifyRepair is what a repair published and how it ended.
type VerifyRepair struct {
	Runs      []string `json:"runs,omitempty"`      // the repair runs' IDs
	Records   int      `json:"records"`             // records exported again
	Deletes   int      `json:"deletes"`             // extras deleted at the destination
	Duplicate bool     `json:"duplicate,omitempty"` // an identical repair was already requested
	Error     string   `json:"error,omitempty"`
}
