package importer

import (
	"fmt"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/pipeline/router"
)

// item is one delivery with its decoded record.
type item struct {
	msg   router.Msg
	rec   messages.RecordCleaned
	files []messages.ImportedFile // written at the destination (for the audit)
	// renamed: the destination's record was renamed from rec.RenamedFrom;
	// replaceOld: it could not be (no Rename right): the old record is
	// deleted once the new one is imported.
	renamed, replaceOld bool
}

// batchPlan sorts a fetched batch; it does no I/O.
type batchPlan struct {
	// Upserts and Deletes are the newest version of each record in the
	// batch, newer than anything imported before.
	Upserts, Deletes []*item
	// Stale are older versions: acked without importing (latest wins).
	Stale []*item
	// Busy are records another worker is importing right now: handed back
	// for a moment so that worker finishes first.
	Busy []*item
	// Malformed deliveries are dead-lettered with Reason.
	Malformed []malformed
}

type malformed struct {
	msg    router.Msg
	rec    messages.RecordCleaned
	reason string
}

// planBatch decodes the batch and decides what each delivery needs.
// imported is the newest version imported per record; claim takes a record
// for this worker (false: another worker has it).
func planBatch(msgs []router.Msg, imported func(id string) int64, claim func(id string) bool) batchPlan {
	var p batchPlan
	latest := map[string]*item{}
	var order []string
	for _, m := range msgs {
		var rec messages.RecordCleaned
		if err := router.Decode(m.Data(), &rec); err != nil || rec.DestRecordID == "" {
			p.Malformed = append(p.Malformed, malformed{m, rec,
				fmt.Sprintf("malformed cleaned record (%d bytes): not the expected JSON contract v%d", len(m.Data()), messages.V)})
			continue
		}
		it := &item{msg: m, rec: rec}
		// Within one batch only the newest version of a record is imported.
		if prev, ok := latest[rec.DestRecordID]; ok {
			if prev.rec.Version > rec.Version {
				p.Stale = append(p.Stale, it)
				continue
			}
			p.Stale = append(p.Stale, prev)
		} else {
			order = append(order, rec.DestRecordID)
		}
		latest[rec.DestRecordID] = it
	}
	for _, id := range order {
		it := latest[id]
		switch {
		case it.rec.Version < imported(id):
			p.Stale = append(p.Stale, it)
		case !claim(id):
			p.Busy = append(p.Busy, it)
		case it.rec.Deleted:
			p.Deletes = append(p.Deletes, it)
		default:
			p.Upserts = append(p.Upserts, it)
		}
	}
	return p
}
