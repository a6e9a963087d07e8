package messages

import "time"

// Deletions: a record that disappears from a site's record-ID list is only a
// candidate for deletion. The exporter checks it with a direct export, keeps
// it pending until it is absent in a later run too (or for the site's
// deletion_delay), and holds every deletion of a run that would delete more
// than the site's max_deletions_per_run, or whose token's access changed,
// until an operator approves or rejects them (`relay deletions`).

// SubjectDeletions carries the operator's decisions on held deletions and
// the restores of deleted records (on the AUDIT stream): who did what, when.
const SubjectDeletions = "relay.deletions" // .<site>

func DeletionsSubject(site string) string { return SubjectDeletions + "." + site }

// Buckets of the deletion safety net.
const (
	// BucketDeletions (object store) holds one DeletionState per site,
	// written by the exporter.
	BucketDeletions = "relay_deletions"
	// BucketDeletionDecisions (KV) holds the operator's decision on a held
	// run, key "<site>.<run>", written by `relay deletions approve|reject`.
	BucketDeletionDecisions = "relay_deletion_decisions"
	// BucketDeletedRecords (object store, retention streams.deleted_retention)
	// holds each record's destination rows as they were just before the
	// importer deleted it, for `relay deletions restore`. Name
	// "<site>/<destination record ID>".
	BucketDeletedRecords = "relay_deleted_records"
)

// DeletionState is what the exporter knows of a site's pending and held
// deletions.
type DeletionState struct {
	V int `json:"v"`
	// Pending are records absent (and confirmed absent by a direct export)
	// since a run, waiting for the deletion delay.
	Pending map[string]PendingDeletion `json:"pending,omitempty"`
	// Held is the newest run whose deletions wait for an operator.
	Held *HeldDeletions `json:"held,omitempty"`
}

// PendingDeletion is when a record was first found absent.
type PendingDeletion struct {
	Since time.Time `json:"since"`
	Run   string    `json:"run"`
}

// Reasons deletions are held.
const (
	HeldOverLimit     = "limit"
	HeldAccessChanged = "access"
)

// HeldDeletions are a run's deletions waiting for `relay deletions approve`
// or `reject`. Records is the sites' record IDs (inside the trust boundary:
// the tools show the destination's IDs).
type HeldDeletions struct {
	Run     string    `json:"run"`
	At      time.Time `json:"at"`
	Reason  string    `json:"reason"` // HeldOverLimit or HeldAccessChanged
	Detail  string    `json:"detail"` // in words, for status and alerts
	Limit   int       `json:"limit,omitempty"`
	Records []string  `json:"records"`
	// DestRecords are the same records as the destination knows them.
	DestRecords []string `json:"dest_records"`
}

// Decisions on held deletions.
const (
	DecisionApprove = "approve"
	DecisionReject  = "reject"
)

// DeletionDecision is an operator's decision on one held run.
type DeletionDecision struct {
	V        int       `json:"v"`
	Site     string    `json:"site"`
	Run      string    `json:"run"`
	Decision string    `json:"decision"` // DecisionApprove or DecisionReject
	By       string    `json:"by"`
	At       time.Time `json:"at"`
	Records  int       `json:"records"`
}

// DeletionDecisionKey is the BucketDeletionDecisions key of a held run.
func DeletionDecisionKey(site, run string) string { return site + "." + run }

// DeletionAudit is one entry on relay.deletions.<site>: a decision taken, a
// held run carried out or rejected, or a deleted record restored.
type DeletionAudit struct {
	V      int       `json:"v"`
	Site   string    `json:"site"`
	Action string    `json:"action"` // approve, reject, restore
	Run    string    `json:"run,omitempty"`
	By     string    `json:"by"`
	At     time.Time `json:"at"`
	// Records are destination record IDs (never a site ID the policy hides).
	Records []string `json:"records,omitempty"`
}

// DeletedRecord is a record's destination rows kept for a while after the
// importer deleted it (de-identified: they are the destination's rows).
type DeletedRecord struct {
	V            int       `json:"v"`
	Site         string    `json:"site"`
	DestRecordID string    `json:"dest_record_id"`
	Run          string    `json:"run"`
	DeletedAt    time.Time `json:"deleted_at"`
	Rows         []Row     `json:"rows"`
}

// DeletedRecordName is the BucketDeletedRecords object name of a record.
func DeletedRecordName(site, destRecord string) string { return site + "/" + destRecord }
