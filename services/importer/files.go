package importer

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"mime"
	"strconv"
	"strings"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/redcap"
)

// A record's files go to the destination after its rows, before its
// message is acked: a crash in between only means the message comes back
// and the (idempotent) rows and files are written again. The destination
// file bucket remembers the SHA-256 uploaded at each place, so the same
// file is not uploaded twice, and a file removed at the site is removed at
// the destination. A file the destination refuses is dead-lettered with
// REDCap's reason; the record's rows stay imported.

// fileKey names a file's place at the destination (KV keys allow only a
// few characters: the place is encoded).
func fileKey(record string, f messages.FileRef) string {
	return base64.RawURLEncoding.EncodeToString([]byte(record + "\x00" + f.Field + "\x00" + f.Event + "\x00" + strconv.Itoa(f.Instance)))
}

// transferFiles writes the items' files; it reports false when ctx ended
// first (the items are then redelivered).
func (im *Importer) transferFiles(ctx context.Context, items []*item) bool {
	for _, it := range items {
		for _, f := range it.rec.Files {
			for {
				if ctx.Err() != nil {
					return false
				}
				done, err := im.transferFile(ctx, it, f)
				if err == nil {
					if done != nil {
						it.files = append(it.files, *done)
					}
					break
				}
				if isValidation(err) || errors.Is(err, errFileGone) {
					im.fileDeadLetter(ctx, it, f, err)
					break
				}
				im.waitForDestination(ctx, err)
			}
		}
	}
	return true
}

// errFileGone: the files bucket no longer holds the file (past its
// retention): only a new export brings it back.
var errFileGone = errors.New("the file is no longer in the files bucket (past its retention): run `relay sync --site SITE --full` to export it again")

// transferFile uploads or removes one file; nil result when nothing changed.
func (im *Importer) transferFile(ctx context.Context, it *item, f messages.FileRef) (*messages.ImportedFile, error) {
	key := fileKey(it.rec.DestRecordID, f)
	at, err := im.d.Store.DestFile(ctx, key)
	if err != nil {
		return nil, err
	}
	ref := redcap.FileRef{Record: it.rec.DestRecordID, Field: f.Field, Event: f.Event, Instance: f.Instance}
	done := &messages.ImportedFile{Record: it.rec.DestRecordID, Field: f.Field, Event: f.Event, Instance: f.Instance, Size: f.Size}
	if f.Object == "" { // no file at the site (any more)
		if at == "" {
			return nil, nil
		}
		if err := im.d.Destination.DeleteFile(ctx, ref); err != nil && !noFileThere(err) {
			return nil, err
		}
		done.Removed = true
		return done, im.d.Store.SetDestFile(ctx, key, "")
	}
	if at == f.SHA256 && !it.rec.Repair { // a repair writes it again: verify found the destination's differs
		return nil, nil // uploaded before
	}
	r, err := im.d.Store.OpenFile(ctx, f.Object)
	if errors.Is(err, errFileGone) {
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("read file %s from %s: %w", f.Object, messages.BucketFiles, err)
	}
	defer r.Close()
	if err := im.d.Destination.ImportFile(ctx, ref, uploadName(f), r, f.Size); err != nil {
		return nil, err
	}
	im.markUp()
	return done, im.d.Store.SetDestFile(ctx, key, f.SHA256)
}

// uploadName is the file's name at the destination: its own where the
// policy keeps it, else the field's name with the type's extension.
func uploadName(f messages.FileRef) string {
	if f.Name != "" {
		return f.Name
	}
	ext := ".bin"
	if exts, _ := mime.ExtensionsByType(f.MIME); len(exts) > 0 {
		ext = exts[0]
		for _, e := range exts {
			if e == ".pdf" || e == ".jpg" || e == ".png" || e == ".txt" {
				ext = e
			}
		}
	}
	return f.Field + ext
}

func noFileThere(err error) bool {
	var e *redcap.Error
	return errors.As(err, &e) && e.Status == 400 && strings.Contains(strings.ToLower(e.Message), "no file")
}

func (im *Importer) fileDeadLetter(ctx context.Context, it *item, f messages.FileRef, cause error) {
	where := fmt.Sprintf("record %s, field %s", it.rec.DestRecordID, f.Field)
	if f.Event != "" {
		where += ", event " + f.Event
	}
	if f.Instance > 0 {
		where += fmt.Sprintf(", instance %d", f.Instance)
	}
	dl := messages.DeadLetter{Site: it.rec.Site, RunID: it.rec.RunID, RecordID: it.rec.DestRecordID,
		Error: fmt.Sprintf("site %s: %s: file not uploaded (the record's rows are imported): %v", it.rec.Site, where, cause)}
	if err := im.d.Store.DeadLetter(ctx, dl); err != nil {
		im.log.Warn("file dead letter not stored", "site", it.rec.Site, "record", it.rec.DestRecordID, "err", err)
	}
}
