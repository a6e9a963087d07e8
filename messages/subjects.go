package messages

import (
	"strings"
	"time"
)

// Subject prefixes. The last token of every subject is the site ID (and for
// dead letters the stage comes first), so consumers filter with wildcards.
const (
	SubjectExportRequested = "relay.export.requested" // .<site>
	SubjectRecordsRaw      = "relay.records.raw"      // .<site>: contains PHI
	SubjectMetadata        = "relay.metadata"         // .<site>
	SubjectRecordsClean    = "relay.records.clean"    // .<site>
	SubjectImportDone      = "relay.import.done"      // .<site>
	SubjectRun             = "relay.run"              // .<site>
	SubjectDLQ             = "relay.dlq"              // .<stage>.<site>
	SubjectProtocolReport  = "relay.protocol.report"  // .<site>
)

// Stream names (no dots allowed by JetStream).
const (
	StreamExportRequests = "EXPORT_REQUESTS"
	StreamRecordsRaw     = "RECORDS_RAW"
	StreamMetadata       = "METADATA"
	StreamRecordsClean   = "RECORDS_CLEAN"
	StreamAudit          = "AUDIT"
	StreamDLQ            = "DLQ"
	StreamReports        = "REPORTS"
)

// KV buckets for per-site state.
const (
	BucketSiteState   = "relay_site_state"   // key <site>: SiteState (cursor, known IDs digest, last run)
	BucketRecordIDs   = "relay_record_ids"   // key <site>: known record-ID set (for deletions)
	BucketLeases      = "relay_leases"       // key <site>: the run holding the site (TTL)
	BucketDestVersion = "relay_dest_version" // key <site>.<record>: newest version imported (latest wins)
)

// Pipeline stages, as used in dead-letter subjects and run status.
const (
	StageExport    = "export"
	StageTransform = "transform"
	StageImport    = "import"
	StageCheck     = "check"
	StageVerify    = "verify"
)

// Stages lists every stage that can dead-letter.
var Stages = []string{StageExport, StageTransform, StageImport, StageCheck, StageVerify}

func ExportRequestedSubject(site string) string { return SubjectExportRequested + "." + site }
func RecordsRawSubject(site string) string      { return SubjectRecordsRaw + "." + site }
func MetadataSubject(site string) string        { return SubjectMetadata + "." + site }
func RecordsCleanSubject(site string) string    { return SubjectRecordsClean + "." + site }
func ImportDoneSubject(site string) string      { return SubjectImportDone + "." + site }
func RunSubject(site string) string             { return SubjectRun + "." + site }
func ProtocolReportSubject(site string) string  { return SubjectProtocolReport + "." + site }
func DLQSubject(stage, site string) string      { return SubjectDLQ + "." + stage + "." + site }

// SiteFromSubject returns the last token of a subject: the site ID.
func SiteFromSubject(subject string) string {
	if i := strings.LastIndexByte(subject, '.'); i >= 0 {
		return subject[i+1:]
	}
	return subject
}

// BucketMetadata holds metadata snapshots by "<site>.<hash>" (and
// "destination.latest" for the destination's dictionary), so a transformer
// can compile the policy for exactly the metadata a record was exported under.
const BucketMetadata = "relay_metadata"

// MetadataKey is the BucketMetadata key of one snapshot.
func MetadataKey(site, hash string) string { return site + "." + hash }

// DestinationMetadataKey holds the destination's latest snapshot; the
// importer (which alone has the destination token) writes it.
const DestinationMetadataKey = "destination.latest"

// SubjectDestinationCheck is where an exporter asks the importer, by NATS
// request/reply, for the destination's data dictionary as it is now: a run
// never checks its policy against a dictionary older than the run.
const SubjectDestinationCheck = "relay.destination.metadata"

// DestinationRequest asks for a destination snapshot taken at or after
// NotBefore.
type DestinationRequest struct {
	V         int       `json:"v"`
	Site      string    `json:"site"`
	NotBefore time.Time `json:"not_before"`
}

// DestinationReply says where the snapshot is (BucketMetadata, key
// DestinationMetadataKey), or why the destination could not be read.
type DestinationReply struct {
	V       int       `json:"v"`
	Hash    string    `json:"hash,omitempty"`
	TakenAt time.Time `json:"taken_at,omitzero"`
	Error   string    `json:"error,omitempty"`
}

// SiteState is the value of BucketSiteState for one site: written by the
// exporter after each complete run, read by `relay status`.
type SiteState struct {
	// Cursor is when the last complete run started; the next incremental
	// run asks REDCap for records changed since Cursor minus the overlap.
	Cursor        time.Time `json:"cursor"`
	LastFull      time.Time `json:"last_full"`
	FieldsHash    string    `json:"fields_hash"`
	SnapshotHash  string    `json:"snapshot_hash"`
	PolicyVersion string    `json:"policy_version"`
	LastRun       string    `json:"last_run"`
	Records       int       `json:"records"`
	// DAGAccess is what the site's token saw of the project's data access
	// groups at the last measure: "all <hash of the DAG list>", or
	// "restricted" (the token is assigned to a DAG and sees only its
	// records). A change holds the run's deletions.
	DAGAccess string `json:"dag_access,omitempty"`
}
