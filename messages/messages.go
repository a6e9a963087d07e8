package messages

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"time"
)

// V is the contract version written into every body.
const V = 1

// HeaderMsgID is JetStream's dedupe header; HeaderSite and HeaderRun help
// operators filter without decoding bodies.
const (
	HeaderMsgID = "Nats-Msg-Id"
	HeaderSite  = "Relay-Site"
	HeaderRun   = "Relay-Run"
)

// ExportRequested asks the exporter to run one site. The ticker derives RunID
// from the site and the scheduled tick, so two tickers firing for the same
// tick publish the same message ID and JetStream keeps one.
type ExportRequested struct {
	V           int       `json:"v"`
	Site        string    `json:"site"`
	RunID       string    `json:"run_id"`
	Full        bool      `json:"full"`   // ignore the changed-since cursor
	Reason      string    `json:"reason"` // "schedule", "manual", "demo", "repair"
	RequestedAt time.Time `json:"requested_at"`
	// Records, set by `relay verify --repair`, makes the run a repair: it
	// exports exactly these site record IDs again, whatever the
	// known-record set says (forced), and moves no cursor.
	Records []string `json:"records,omitempty"`
	// DeleteDest (repair only) are destination record IDs of the site's
	// namespace the site no longer has: deleted at the destination when
	// the site's propagate_deletions allows (within max_deletions_per_run).
	DeleteDest []string `json:"delete_dest,omitempty"`
}

// Repair reports whether the request is a repair run.
func (m ExportRequested) Repair() bool { return len(m.Records) > 0 || len(m.DeleteDest) > 0 }

// MsgID is the dedupe ID of the request.
func (m ExportRequested) MsgID() string { return "export." + m.RunID }

// RunID builds a deterministic run ID from a site and a tick time.
func RunID(site string, tick time.Time) string {
	return site + "-" + tick.UTC().Format("20060102T150405Z")
}

// RecordExported is one REDCap record (every event/instance row of it) as the
// site exported it. It contains PHI only for fields the policy approved for
// export; it travels only on RECORDS_RAW.
//
// Version orders exports of the same record: it is the run's start time in
// Unix milliseconds, so a later run always wins over an earlier one, whatever
// order redeliveries happen in. Hash is the content hash of Rows.
type RecordExported struct {
	V            int    `json:"v"`
	Site         string `json:"site"`
	RunID        string `json:"run_id"`
	RecordID     string `json:"record_id"`
	Version      int64  `json:"version"`
	Hash         string `json:"hash"`
	MetadataHash string `json:"metadata_hash"`
	Deleted      bool   `json:"deleted,omitempty"` // the record no longer exists at the site
	// RenamedFrom is the ID the record had before it was renamed at the
	// site: the destination renames its record too (keeping its history).
	RenamedFrom string `json:"renamed_from,omitempty"`
	Rows        []Row  `json:"rows,omitempty"`
	// Files are the record's files the policy keeps (references into
	// BucketFiles, never the content).
	Files []FileRef `json:"files,omitempty"`
	// DestRecordID is set only on a repair's deletion of a destination
	// record the site does not have (RecordID is then empty): the
	// destination ID cannot be derived from a site ID.
	DestRecordID string `json:"dest_record_id,omitempty"`
	// Repair marks a record `relay verify --repair` exports again: the
	// importer writes its files even where its bookkeeping says the
	// destination has them (verify found otherwise).
	Repair     bool      `json:"repair,omitempty"`
	ExportedAt time.Time `json:"exported_at"`
}

// MsgID is site + record + version + content: redelivery of the same export
// dedupes, a new run of a changed record does not.
func (m RecordExported) MsgID() string {
	id := m.RecordID
	if id == "" && m.DestRecordID != "" {
		id = "dest-" + m.DestRecordID
	}
	return fmt.Sprintf("raw.%s.%s.%d.%s", m.Site, id, m.Version, short(m.Hash))
}

// RecordCleaned is a record after the transfer policy: only approved fields,
// renamed and recoded into the destination's names, with the destination's
// record ID. It travels on RECORDS_CLEAN, the replay window.
type RecordCleaned struct {
	V             int    `json:"v"`
	Site          string `json:"site"`
	RunID         string `json:"run_id"`
	SourceRecord  string `json:"source_record"` // the site's record ID (never PHI by policy: IDs are namespaced or hashed)
	DestRecordID  string `json:"dest_record_id"`
	Version       int64  `json:"version"`
	Hash          string `json:"hash"` // hash of the cleaned rows
	PolicyVersion string `json:"policy_version"`
	DAG           string `json:"dag,omitempty"`
	Deleted       bool   `json:"deleted,omitempty"`
	// RenamedFrom is the destination ID of the record before the site
	// renamed it.
	RenamedFrom string `json:"renamed_from,omitempty"`
	Rows        []Row  `json:"rows,omitempty"`
	// Files go to the destination after the rows (destination field names).
	Files []FileRef `json:"files,omitempty"`
	// Repair: see RecordExported.Repair.
	Repair    bool      `json:"repair,omitempty"`
	CleanedAt time.Time `json:"cleaned_at"`
}

func (m RecordCleaned) MsgID() string {
	return fmt.Sprintf("clean.%s.%s.%d.%s", m.Site, m.DestRecordID, m.Version, short(m.Hash))
}

// MetadataSnapshot is everything the checker and transformer need to know
// about a site's project, taken once per run.
type MetadataSnapshot struct {
	V                int             `json:"v"`
	Site             string          `json:"site"`
	RunID            string          `json:"run_id"`
	Hash             string          `json:"hash"` // over the metadata only, not RunID/TakenAt
	TakenAt          time.Time       `json:"taken_at"`
	REDCapVersion    string          `json:"redcap_version"`
	Project          ProjectInfo     `json:"project"`
	Fields           []Field         `json:"fields"`
	Instruments      []Instrument    `json:"instruments"`
	Arms             []Arm           `json:"arms,omitempty"`
	Events           []Event         `json:"events,omitempty"`
	FormEventMapping []FormEvent     `json:"form_event_mapping,omitempty"`
	Repeating        []RepeatingForm `json:"repeating,omitempty"`
}

// ComputeHash fills Hash from the metadata content.
func (m *MetadataSnapshot) ComputeHash() string {
	m.Hash = HashJSON(struct {
		P  ProjectInfo
		F  []Field
		I  []Instrument
		A  []Arm
		E  []Event
		FE []FormEvent
		R  []RepeatingForm
	}{m.Project, m.Fields, m.Instruments, m.Arms, m.Events, m.FormEventMapping, m.Repeating})
	return m.Hash
}

func (m MetadataSnapshot) MsgID() string { return "meta." + m.Site + "." + m.RunID }

// ImportDone is the audit record of one import: which records and which
// fields moved under which policy version. Never values.
type ImportDone struct {
	V       int      `json:"v"`
	Site    string   `json:"site"`
	Records []string `json:"records"`           // destination record IDs imported
	Deleted []string `json:"deleted,omitempty"` // destination record IDs deleted
	// Renamed are the records renamed at the destination ("old -> new").
	Renamed []string `json:"renamed,omitempty"`
	Fields  []string `json:"fields"` // field names written
	// Files are the files uploaded (or removed) at the destination: where
	// and how big, never their content or (unless the policy keeps it)
	// their original name.
	Files         []ImportedFile `json:"files,omitempty"`
	PolicyVersion string         `json:"policy_version"`
	Runs          []string       `json:"runs"`
	At            time.Time      `json:"at"`
}

// ImportedFile is one file the importer uploaded or removed.
type ImportedFile struct {
	Record   string `json:"record"`
	Field    string `json:"field"`
	Event    string `json:"event,omitempty"`
	Instance int    `json:"instance,omitempty"`
	Size     int64  `json:"size"`
	Removed  bool   `json:"removed,omitempty"`
}

// Run phases.
const (
	PhaseStarted   = "started"
	PhaseRetrying  = "retrying" // a call failed and is retried (Error, Attempt, NextAt)
	PhaseExported  = "exported"
	PhaseCompleted = "completed"
	PhaseFailed    = "failed"
)

// RunEvent is one step of a site run's lifecycle, on relay.run.<site>.
type RunEvent struct {
	V         int    `json:"v"`
	Site      string `json:"site"`
	RunID     string `json:"run_id"`
	Phase     string `json:"phase"`
	Full      bool   `json:"full"`
	Exported  int    `json:"exported"` // records published
	Deleted   int    `json:"deleted"`  // deletions published
	Unchanged int    `json:"unchanged,omitempty"`
	Calls     int    `json:"calls"`           // REDCap API calls made
	Error     string `json:"error,omitempty"` // never values or tokens
	// Deletions not carried out in this run: pending (waiting for the
	// site's deletion delay) and held (waiting for an operator).
	DeletionsPending int `json:"deletions_pending,omitempty"`
	DeletionsHeld    int `json:"deletions_held,omitempty"`
	// ShortAnswers counts REDCap answers that lacked records or rows the
	// run asked for (retried until complete).
	ShortAnswers int `json:"short_answers,omitempty"`
	// Attempt and NextAt describe a retrying run's latest failed attempt.
	Attempt int       `json:"attempt,omitempty"`
	NextAt  time.Time `json:"next_at,omitzero"`
	// Warnings are what the operator should know of a run that succeeded
	// (held deletions, a record-ID list that answered incompletely).
	Warnings []string  `json:"warnings,omitempty"`
	At       time.Time `json:"at"`
}

func (m RunEvent) MsgID() string {
	if m.Phase == PhaseRetrying {
		return fmt.Sprintf("run.%s.%s.%d", m.RunID, m.Phase, m.Attempt)
	}
	return "run." + m.RunID + "." + m.Phase
}

// DeadLetter is a message a stage could not process, with the reason.
// Payload is the original body: it may hold PHI (raw records), so the DLQ
// stream is kept inside the trust boundary and tools redact it by default.
type DeadLetter struct {
	V        int    `json:"v"`
	Stage    string `json:"stage"`
	Site     string `json:"site"`
	RunID    string `json:"run_id,omitempty"`
	RecordID string `json:"record_id,omitempty"`
	Error    string `json:"error"`
	// Details are per-field problems (REDCap's validation lines) without values.
	Details  []FieldProblem  `json:"details,omitempty"`
	Attempts int             `json:"attempts"`
	Subject  string          `json:"subject"` // where the payload came from, for retry
	MsgID    string          `json:"msg_id,omitempty"`
	Payload  json.RawMessage `json:"payload,omitempty"`
	At       time.Time       `json:"at"`
}

// FieldProblem is one problem with one field of one record.
type FieldProblem struct {
	Record  string `json:"record"`
	Field   string `json:"field"`
	Message string `json:"message"`
}

// HashJSON is the hex SHA-256 of v's JSON encoding (maps encode with sorted
// keys, so it is deterministic).
func HashJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("messages: hash of unencodable value: %v", err))
	}
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// HashRows hashes record rows independent of map order: per row, the
// fields sorted by name, each name and value length-prefixed (so no value
// can imitate a separator). It is on every record's path, so it avoids JSON.
func HashRows(rows []Row) string { return hashRows(rows, "") }

// hashRows hashes rows, leaving out the column skip ("" = none).
func hashRows(rows []Row, skip string) string {
	h := sha256.New()
	var keys []string
	var n [binary.MaxVarintLen64]byte
	put := func(s string) {
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(s)))])
		io.WriteString(h, s)
	}
	for _, r := range rows {
		keys = keys[:0]
		for k := range r {
			if k != skip {
				keys = append(keys, k)
			}
		}
		sort.Strings(keys)
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(keys)))])
		for _, k := range keys {
			put(k)
			put(r[k])
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// FieldNames returns the sorted union of field names across rows.
func FieldNames(rows []Row) []string {
	seen := map[string]struct{}{}
	for _, r := range rows {
		for k := range r {
			seen[k] = struct{}{}
		}
	}
	out := make([]string, 0, len(seen))
	for k := range seen {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func short(h string) string {
	if len(h) > 16 {
		return h[:16]
	}
	return h
}

// More routing headers: the record and original subject travel in headers so
// that a dead letter can name them even when the body cannot be decoded.
const (
	HeaderRecord  = "Relay-Record"
	HeaderSubject = "Relay-Subject"
)
