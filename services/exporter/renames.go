package exporter

import (
	"context"
	"regexp"
	"strings"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/redcap"
)

// A record renamed at the site ("Rename record" in REDCap) looks like a
// deletion plus a new record. Carried over as a rename, the destination
// keeps the record's history (and nothing is deleted). A rename is found in
// the site's log, where the token has the Logging right; otherwise by
// content: the one record gone and the one new record of the run with the
// same content (its ID left out of the content hash).

// maxHeldNew bounds the new records a run holds back while it looks for
// renames (they are published once it knows); past it, content matching is
// given up for the run.
const maxHeldNew = 2000

// heldRecord is a new record held back until renames are known.
type heldRecord struct {
	msg     messages.RecordExported
	content string // its content hash (ID left out)
}

// detectRenames pairs records gone at the site with new ones: new ID -> old.
func (e *Exporter) detectRenames(ctx context.Context, r *siteRun, st messages.SiteState, absent []string, prev Known, held []heldRecord) map[string]string {
	renamed := map[string]string{}
	if len(absent) == 0 || len(held) == 0 {
		return renamed
	}
	gone := make(map[string]bool, len(absent))
	for _, id := range absent {
		gone[id] = true
	}
	fresh := make(map[string]bool, len(held))
	for _, h := range held {
		fresh[h.msg.RecordID] = true
	}
	used := map[string]bool{}
	// 1. The site's log says so.
	since := st.Cursor.Add(-r.site.Overlap.D()).In(r.site.ServerLocation())
	if logs, err := r.client.ExportLogging(ctx, redcap.LogParams{Begin: since, LogType: "record"}); err == nil {
		for _, l := range logs {
			old, new, ok := parseRename(l)
			if ok && gone[old] && fresh[new] && !used[old] && renamed[new] == "" {
				renamed[new], used[old] = old, true
			}
		}
	} else {
		e.log.Debug("site log not readable; renames found by content only", "site", r.site.ID, "err", err)
	}
	// 2. The same content under a new ID, where both are unique.
	oldBy := map[string][]string{}
	for _, id := range absent {
		if !used[id] && prev[id] != "" {
			oldBy[prev[id]] = append(oldBy[prev[id]], id)
		}
	}
	newBy := map[string][]heldRecord{}
	for _, h := range held {
		if renamed[h.msg.RecordID] == "" && substantive(h.msg.Rows, r.compiled.RecordIDField()) {
			newBy[shortHash(h.content)] = append(newBy[shortHash(h.content)], h)
		}
	}
	for content, olds := range oldBy {
		if news := newBy[content]; len(olds) == 1 && len(news) == 1 {
			renamed[news[0].msg.RecordID] = olds[0]
		}
	}
	return renamed
}

// renameRE reads REDCap's log entry of a rename.
var renameRE = regexp.MustCompile(`old_record\s*=\s*'([^']*)'.*new_record\s*=\s*'([^']*)'`)

func parseRename(l redcap.LogEntry) (old, new string, ok bool) {
	if !strings.HasPrefix(strings.ToLower(l.Action), "rename record") {
		return "", "", false
	}
	m := renameRE.FindStringSubmatch(strings.ReplaceAll(l.Details, "\n", " "))
	if m == nil || m[1] == "" || m[2] == "" {
		return "", "", false
	}
	return m[1], m[2], true
}

// substantive reports whether a record holds data beyond its ID and form
// statuses: two empty records are alike, which says nothing of a rename.
func substantive(rows []messages.Row, idField string) bool {
	for _, row := range rows {
		for k, v := range row {
			if v == "" || k == idField || strings.HasPrefix(k, "redcap_") || strings.HasSuffix(k, "_complete") {
				continue
			}
			return true
		}
	}
	return false
}
