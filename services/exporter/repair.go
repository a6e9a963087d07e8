package exporter

import (
	"context"
	"fmt"
	"sort"
	"sync/atomic"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/pipeline/broker"
	"github.com/redcap-relay/relay/services/internal/pipeline/retry"
)

// repair is a run of its own for `relay verify --repair`: it exports
// exactly the records asked for again (forced: the known-record set says
// they were sent, the destination says otherwise), and deletes the
// destination records the verification found extra where the site's
// propagate_deletions allows. Its version is its request time, newer than
// anything the importer stored, so latest-wins takes it. The site's cursor
// and deletion state do not move: the next scheduled run is what it would
// have been.
func (e *Exporter) repair(ctx context.Context, r *siteRun, st messages.SiteState, res *result) error {
	site, req := r.site, r.req
	r.plan = runPlan{Full: false, Force: true}
	var ids []string
	if len(req.Records) > 0 {
		rows, err := e.exportIDRows(ctx, r, req.Records)
		if err != nil {
			return err
		}
		list := newIDList()
		list.add(rows, r.compiled.RecordIDField())
		for _, id := range req.Records {
			if list.has(id) {
				ids = append(ids, id) // the others were deleted at the site since the verification
			}
		}
		prev, err := e.d.Store.Known(ctx, site.ID)
		if err != nil {
			return err
		}
		next := make(Known, len(prev))
		for id, h := range prev {
			next[id] = h
		}
		current := make(map[string]struct{}, len(ids))
		for _, id := range ids {
			current[id] = struct{}{}
		}
		var short atomic.Int64
		var held []heldRecord // nil: nothing is held back
		if res.exported, res.unchanged, err = e.exportRecords(ctx, r, ids, list, prev, next, current, &short, &held); err != nil {
			return err
		}
		r.short += int(short.Load())
		if err := r.pub.Wait(ctx); err != nil {
			return err
		}
		if err := e.d.Store.SaveKnown(ctx, site.ID, next); err != nil {
			return err
		}
	}
	if len(req.DeleteDest) > 0 {
		n, err := repairDeletions(site, st, req.DeleteDest)
		if err != nil {
			return retry.Permanent(err)
		}
		dels := append([]string(nil), req.DeleteDest[:n]...)
		sort.Strings(dels)
		for _, dest := range dels {
			m := messages.RecordExported{V: messages.V, Site: site.ID, RunID: req.RunID, DestRecordID: dest, Version: r.version(),
				Hash: "deleted", MetadataHash: r.snap.Hash, Deleted: true, ExportedAt: r.start}
			if err := r.pub.Add(ctx, messages.RecordsRawSubject(site.ID), m.MsgID(), broker.Route{Site: site.ID, Run: req.RunID}, m); err != nil {
				return err
			}
		}
		res.deleted = len(dels)
		if err := r.pub.Wait(ctx); err != nil {
			return err
		}
	}
	res.short = r.short
	return nil
}

// repairDeletions is how many of a repair's deletions may be carried out:
// all of them, or an error when the site does not propagate deletions or
// they exceed max_deletions_per_run (the deletion safety holds for repairs).
func repairDeletions(site *config.Site, st messages.SiteState, dels []string) (int, error) {
	if !site.PropagateDeletions {
		return 0, fmt.Errorf("site %s: the repair asks to delete %d destination record(s), and the site's propagate_deletions is off: nothing was deleted", site.ID, len(dels))
	}
	if limit := site.MaxDeletionsPerRun.Of(st.Records); limit > 0 && len(dels) > limit {
		return 0, fmt.Errorf("site %s: the repair asks to delete %d destination record(s), more than max_deletions_per_run (%s of %d records = %d): nothing was deleted; raise the limit for one run if the deletions are right",
			site.ID, len(dels), site.MaxDeletionsPerRun, st.Records, limit)
	}
	return len(dels), nil
}
