package messages

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"io"
	"strconv"
)

// File-upload and signature fields travel as references: the exporter
// downloads a file the policy keeps into the BucketFiles object store,
// named by its content, and the record's message carries a FileRef; the
// importer uploads it to the destination after the record's rows.

// Buckets of files.
const (
	// BucketFiles (object store, kept as long as RECORDS_CLEAN) holds the
	// files themselves, named "sha256/<hex>".
	BucketFiles = "relay_files"
	// BucketDestFiles (KV) is what the destination holds at each file
	// location (the SHA-256 the importer uploaded), so a file is not
	// uploaded twice and a removed one is deleted there.
	BucketDestFiles = "relay_dest_files"
)

// FileRef is the file of one file-upload (or signature) field in one row of
// a record. An empty Object means the row has no file there: the
// destination's file at that place is deleted.
type FileRef struct {
	Field    string `json:"field"` // the site's field (RecordExported) or the destination's (RecordCleaned)
	Event    string `json:"event,omitempty"`
	Instance int    `json:"instance,omitempty"`
	Object   string `json:"object,omitempty"` // name in BucketFiles
	SHA256   string `json:"sha256,omitempty"`
	Size     int64  `json:"size,omitempty"`
	MIME     string `json:"mime,omitempty"`
	// Name is the original file name, only where the policy keeps it (a
	// file name can identify someone).
	Name string `json:"name,omitempty"`
}

// FileObject is a file's name in BucketFiles.
func FileObject(sha256Hex string) string { return "sha256/" + sha256Hex }

// HashRecord is a record's content hash: its rows and, when it has any, the
// contents of its files (a file replaced under the same name changes it).
func HashRecord(rows []Row, files []FileRef) string { return hashRecord(rows, files, "") }

// HashContent is a record's content hash without its ID (the idField
// column): the same content under another ID (a record renamed at the
// site) hashes the same.
func HashContent(rows []Row, files []FileRef, idField string) string {
	return hashRecord(rows, files, idField)
}

func hashRecord(rows []Row, files []FileRef, skip string) string {
	if len(files) == 0 {
		return hashRows(rows, skip)
	}
	h := sha256.New()
	io.WriteString(h, hashRows(rows, skip))
	var n [binary.MaxVarintLen64]byte
	put := func(s string) {
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(s)))])
		io.WriteString(h, s)
	}
	for _, f := range files {
		put(f.Field)
		put(f.Event)
		put(strconv.Itoa(f.Instance))
		put(f.SHA256)
		put(f.Name)
	}
	return hex.EncodeToString(h.Sum(nil))
}
