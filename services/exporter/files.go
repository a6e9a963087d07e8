package exporter

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"strconv"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/pipeline/retry"
	"github.com/redcap-relay/relay/services/internal/policy"
	"github.com/redcap-relay/relay/services/internal/redcap"
)

// A file-upload or signature field the policy keeps travels by reference:
// the exporter downloads the file with the site's token (per event and
// repeat instance), streaming it through a temporary file on disk (a file
// never sits whole in memory), checks it against the policy's limits, and
// stores it in the files bucket under its SHA-256; the record's message
// carries a messages.FileRef. A file that cannot be transferred (REDCap's
// error, a cut download, over max_size, a type the policy refuses, the
// bucket full) is dead-lettered with the reason, naming the site, record,
// field and event; the record's other fields go on, and the record is
// exported again at the next run.

// fileOutcome is what a batch's files came to.
type fileOutcome struct {
	files  map[string][]messages.FileRef // record -> its files
	failed map[string]bool               // records with a file that did not make it
}

// attachFiles transfers the kept files of a batch's records.
func (e *Exporter) attachFiles(ctx context.Context, r *siteRun, recs []redcap.Record) (fileOutcome, error) {
	out := fileOutcome{files: map[string][]messages.FileRef{}, failed: map[string]bool{}}
	plans := r.compiled.Files()
	if len(plans) == 0 {
		return out, nil
	}
	for _, rec := range recs {
		for _, row := range rec.Rows {
			for _, fp := range plans {
				v, ok := row[fp.Field]
				if !ok {
					continue // not in this row's instrument or event
				}
				ref := messages.FileRef{Field: fp.Field, Event: row["redcap_event_name"]}
				ref.Instance, _ = strconv.Atoi(row["redcap_repeat_instance"])
				if v == "" {
					// No file here (none yet, or removed at the site).
					out.files[rec.ID] = append(out.files[rec.ID], ref)
					continue
				}
				stored, err := e.transferFile(ctx, r, rec.ID, fp, ref)
				if err != nil {
					if ctx.Err() != nil || isBrokerError(err) {
						return out, err
					}
					out.failed[rec.ID] = true
					if dlErr := e.fileDeadLetter(ctx, r, rec.ID, ref, err); dlErr != nil {
						return out, dlErr
					}
					continue
				}
				out.files[rec.ID] = append(out.files[rec.ID], stored)
			}
		}
	}
	return out, nil
}

// errTooBig stops a download at the policy's max_size.
var errTooBig = errors.New("over the policy's max_size")

// transferFile downloads one file and stores it by content.
func (e *Exporter) transferFile(ctx context.Context, r *siteRun, record string, fp policy.FilePlan, ref messages.FileRef) (messages.FileRef, error) {
	tmp, err := os.CreateTemp("", "relay-file-*")
	if err != nil {
		return ref, fmt.Errorf("a temporary file for the download: %w", err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	var sum hash.Hash
	info, err := retry.Value(ctx, r.retry, func() (redcap.FileInfo, error) {
		if _, err := tmp.Seek(0, io.SeekStart); err != nil {
			return redcap.FileInfo{}, retry.Permanent(err)
		}
		if err := tmp.Truncate(0); err != nil {
			return redcap.FileInfo{}, retry.Permanent(err)
		}
		sum = sha256.New()
		w := &cappedWriter{w: io.MultiWriter(tmp, sum), max: fp.MaxBytes}
		info, err := r.client.ExportFile(ctx, redcap.FileRef{Record: record, Field: fp.Field, Event: ref.Event, Instance: ref.Instance}, w)
		if errors.Is(err, errTooBig) {
			return info, retry.Permanent(fmt.Errorf("the file is over the policy's max_size of %d bytes", fp.MaxBytes))
		}
		return info, err
	})
	if err != nil {
		return ref, err
	}
	if err := fp.FileAllowed(info.Name, info.MIME, info.Size); err != nil {
		return ref, retry.Permanent(err)
	}
	ref.SHA256, ref.Size, ref.MIME, ref.Name = hex.EncodeToString(sum.Sum(nil)), info.Size, info.MIME, info.Name
	ref.Object = messages.FileObject(ref.SHA256)
	if have, err := e.d.Store.HasFile(ctx, ref.Object); err != nil {
		return ref, brokerError{err}
	} else if have {
		return ref, nil // the same content is stored already
	}
	if _, err := tmp.Seek(0, io.SeekStart); err != nil {
		return ref, err
	}
	if err := e.d.Store.PutFile(ctx, ref.Object, tmp, info.Size); err != nil {
		return ref, retry.Permanent(fmt.Errorf("store the file in %s: %w", messages.BucketFiles, err))
	}
	return ref, nil
}

// cappedWriter fails a write that would pass max bytes (0 = no cap).
type cappedWriter struct {
	w   io.Writer
	n   int64
	max int64
}

func (c *cappedWriter) Write(p []byte) (int, error) {
	if c.max > 0 && c.n+int64(len(p)) > c.max {
		return 0, errTooBig
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// brokerError is NATS trouble while storing a file: the run fails and is
// redone, nothing is dead-lettered for it.
type brokerError struct{ err error }

func (b brokerError) Error() string { return b.err.Error() }
func (b brokerError) Unwrap() error { return b.err }

func isBrokerError(err error) bool {
	var b brokerError
	return errors.As(err, &b)
}

// fileDeadLetter keeps a file that could not be transferred: where it is
// (site, record as the destination knows it, field, event, instance) and
// why; never its content or name.
func (e *Exporter) fileDeadLetter(ctx context.Context, r *siteRun, record string, ref messages.FileRef, cause error) error {
	dest := r.compiled.DestRecordID(record)
	where := fmt.Sprintf("record %s, field %s", dest, ref.Field)
	if ref.Event != "" {
		where += ", event " + ref.Event
	}
	if ref.Instance > 0 {
		where += fmt.Sprintf(", instance %d", ref.Instance)
	}
	dl := messages.DeadLetter{
		Stage: messages.StageExport, Site: r.site.ID, RunID: r.req.RunID, RecordID: dest,
		Error:   fmt.Sprintf("site %s: %s: file not transferred (the record's other fields are): %v", r.site.ID, where, cause),
		MsgID:   fmt.Sprintf("file.%s.%s.%s.%s.%d", r.req.RunID, dest, ref.Field, ref.Event, ref.Instance),
		Subject: messages.ExportRequestedSubject(r.site.ID),
	}
	e.log.Warn("file not transferred", "site", r.site.ID, "run", r.req.RunID, "record", dest, "field", ref.Field, "event", ref.Event, "reason", cause)
	return e.d.Store.DeadLetter(ctx, dl)
}
