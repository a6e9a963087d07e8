package dryrun

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/policy"
	"github.com/redcap-relay/relay/services/internal/redcap"
)

// File statuses. Without Options.Files a file is compared by presence only
// (StatusFilePresent: both have one, contents not compared).
const (
	StatusFileNew       = "new"       // the site has a file, the destination none
	StatusFileReplaced  = "replaced"  // both have one, with different contents
	StatusFileUnchanged = "unchanged" // the same SHA-256 on both sides
	StatusFilePresent   = "present"   // both have one (not downloaded)
	StatusFileRemoved   = "removed"   // the destination has one the site no longer has
	StatusFileRefused   = "refused"   // the policy's type or size limit (it would be dead-lettered)
)

// FileResult is one file location: a kept file field of one record, event
// and instance. It never holds a file name or content.
type FileResult struct {
	DestRecordID string `json:"dest_record_id"`
	Field        string `json:"field"` // destination field
	Event        string `json:"event,omitempty"`
	Instance     int    `json:"instance,omitempty"`
	Status       string `json:"status"`
	Size         int64  `json:"size,omitempty"` // the site's file, when downloaded
	Error        string `json:"error,omitempty"`
}

// fileCompare compares one batch's kept files.
type fileCompare struct {
	plans    []policy.FilePlan
	src, dst *redcap.Client
	download bool
}

// destFields are the destination's file fields the comparison reads.
func (fc fileCompare) destFields(destHas map[string]bool) []string {
	var out []string
	for _, fp := range fc.plans {
		if destHas[fp.Dest] {
			out = append(out, fp.Dest)
		}
	}
	return out
}

// compare lists the file locations of one record, site rows against the
// destination's rows (keyed like rowKey).
func (fc fileCompare) compare(ctx context.Context, siteID, srcID, destID string, srcRows []messages.Row, dest map[string]messages.Row) ([]FileResult, error) {
	var out []FileResult
	seen := map[string]bool{}
	for _, row := range srcRows {
		for _, fp := range fc.plans {
			v, ok := row[fp.Field]
			if !ok {
				continue
			}
			key := rowKey(row)
			d := dest[key]
			res := FileResult{DestRecordID: destID, Field: fp.Dest, Event: row["redcap_event_name"]}
			res.Instance, _ = strconv.Atoi(row["redcap_repeat_instance"])
			seen[key+"\x00"+fp.Dest] = true
			destHas := d[fp.Dest] != ""
			switch {
			case v == "" && destHas:
				res.Status = StatusFileRemoved
			case v == "":
				continue
			case !fc.download && destHas:
				res.Status = StatusFilePresent
			case !fc.download:
				res.Status = StatusFileNew
			default:
				ref := redcap.FileRef{Record: srcID, Field: fp.Field, Event: res.Event, Instance: res.Instance}
				info, sum, err := hashFile(ctx, fc.src, ref)
				if err != nil {
					return nil, fmt.Errorf("site %s: record %s, field %s: download: %w", siteID, destID, fp.Field, err)
				}
				res.Size = info.Size
				if err := fp.FileAllowed(info.Name, info.MIME, info.Size); err != nil {
					res.Status, res.Error = StatusFileRefused, err.Error()
					break
				}
				if !destHas {
					res.Status = StatusFileNew
					break
				}
				_, dsum, err := hashFile(ctx, fc.dst, redcap.FileRef{Record: destID, Field: fp.Dest, Event: res.Event, Instance: res.Instance})
				if err != nil {
					return nil, fmt.Errorf("destination: record %s, field %s: download: %w", destID, fp.Dest, err)
				}
				res.Status = StatusFileReplaced
				if dsum == sum {
					res.Status = StatusFileUnchanged
				}
			}
			out = append(out, res)
		}
	}
	// Destination rows the site no longer has, with a file in a kept field.
	keys := make([]string, 0, len(dest))
	for k := range dest {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, key := range keys {
		d := dest[key]
		for _, fp := range fc.plans {
			if d[fp.Dest] != "" && !seen[key+"\x00"+fp.Dest] {
				inst, _ := strconv.Atoi(d["redcap_repeat_instance"])
				out = append(out, FileResult{DestRecordID: destID, Field: fp.Dest, Event: d["redcap_event_name"], Instance: inst, Status: StatusFileRemoved})
			}
		}
	}
	return out, nil
}

// hashFile downloads a file into SHA-256, keeping nothing of it.
func hashFile(ctx context.Context, c *redcap.Client, ref redcap.FileRef) (redcap.FileInfo, string, error) {
	h := sha256.New()
	info, err := c.ExportFile(ctx, ref, h)
	if err != nil {
		return info, "", err
	}
	return info, hex.EncodeToString(h.Sum(nil)), nil
}
