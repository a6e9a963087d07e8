package redcapsim

import (
	"net/http"
	"strconv"
	"strings"
)

// deleteRecords is Delete Records: whole records (every arm, or one arm),
// or with instrument, event and repeat_instance only that part of them
// (the records stay). Any bad record or parameter deletes nothing.
func (c *call) deleteRecords(w http.ResponseWriter) error {
	if !c.acc.can("api_import") {
		return errorf(400, "Insufficient user privileges: You must have 'API Import/Update' privileges and 'Delete Records' privileges in the project in order to utilize this API method.")
	}
	ids := c.p.array("records", false)
	if len(ids) == 0 && !c.p.has("records") {
		return errorf(400, "Incorrect format for 'records' parameter. It must be passed as an array, even if it only contains a single record name.")
	}
	if len(ids) == 0 {
		return errorf(400, "The 'records' parameter is an empty array. The parameter must be an array containing one or more record names to delete.")
	}
	p := c.proj
	p.mu.Lock()
	defer p.mu.Unlock()
	dag := c.dagIndex()
	var missing, uniq []string
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			continue
		}
		seen[id] = true
		if r := p.records[id]; r == nil || (dag >= 0 && r.dag != dag) {
			missing = append(missing, id)
			continue
		}
		uniq = append(uniq, id)
	}
	sel := deleteSel{ev: -1, form: -1}
	if a := c.p.str("arm"); a != "" && p.longitudinal && len(p.armFirstEv) > 1 {
		sel.arm = atoiDefault(a, 0)
		if _, ok := p.armFirstEv[sel.arm]; !ok {
			return errorf(400, "The arm provided is not correct for the project.")
		}
	}
	if len(missing) > 0 {
		return errorf(400, "One or more of the records provided cannot be deleted because they do not exist in the project. The following records do not exist: "+strings.Join(missing, ", "))
	}
	if msg := c.deleteSelection(&sel); msg != "" {
		per := make([]string, len(uniq))
		for i, id := range uniq {
			per[i] = id + ": " + msg
		}
		return errorf(400, "One or more of the records provided are either do not exist in this project or not valid with selected params. Note: No records were deleted. Records that do not exist: "+strings.Join(per, ", "))
	}
	n := c.s.deleteLocked(p, uniq, sel, c.acc.user)
	writeBody(w, c.rf, strconv.Itoa(n))
	return nil
}

// deleteSelection reads instrument, event and repeat_instance into sel,
// or says (in REDCap's words) what is wrong with them. Callers hold
// c.proj.mu.
func (c *call) deleteSelection(sel *deleteSel) string {
	p := c.proj
	inst, ev, ri := c.p.str("instrument"), c.p.str("event"), c.p.str("repeat_instance")
	if inst == "" && ev == "" && ri == "" {
		return ""
	}
	sel.inst = 1
	if ri != "" {
		n, err := strconv.Atoi(ri)
		if err != nil || n < 1 {
			return "Repeating instance should be numeric."
		}
		sel.inst = n
	}
	if inst != "" {
		f, ok := p.formByName[inst]
		if !ok {
			return "Invalid instrument."
		}
		sel.form = f
	}
	if p.longitudinal {
		switch {
		case ev != "":
			e, ok := p.eventByName[ev]
			if !ok {
				return "Invalid Unique Event Name."
			}
			sel.ev = e
		case inst != "":
			return "Event is mandatory for longitudinal project."
		}
	}
	if sel.form < 0 && sel.ev < 0 {
		// repeat_instance alone narrows nothing: whole records.
		sel.inst = 0
	}
	return ""
}

// renameRecord is content=record&action=rename: record, new_record_name and
// (multi-arm projects) arm. The answer is "1".
func (c *call) renameRecord(w http.ResponseWriter) error {
	old := strings.TrimSpace(c.p.str("record"))
	if old == "" {
		return errorf(400, "Current record name must be provided.")
	}
	new := strings.TrimSpace(c.p.str("new_record_name"))
	if new == "" {
		return errorf(400, "New record name must be provided.")
	}
	if msg := recordNameProblem(new); msg != "" {
		return errorf(400, msg)
	}
	p := c.proj
	p.mu.Lock()
	defer p.mu.Unlock()
	arm := 0
	if a := c.p.str("arm"); a != "" && p.longitudinal && len(p.armFirstEv) > 1 {
		arm = atoiDefault(a, 0)
		if _, ok := p.armFirstEv[arm]; !ok {
			return errorf(400, "The arm provided is not correct for the project.")
		}
	}
	if old == new {
		writeBody(w, c.rf, "1")
		return nil
	}
	if msg := p.renameProblem(old, new, arm, c.dagIndex()); msg != "" {
		return errorf(400, msg)
	}
	c.s.renameLocked(p, old, new, arm, c.acc.user)
	writeBody(w, c.rf, "1")
	return nil
}

// recordNameProblem is REDCap's rule for record names: no + & # or '.
func recordNameProblem(id string) string {
	if strings.ContainsAny(id, "+&#'") {
		return "The record name (" + id + ") cannot contain a plus sign (+), ampersand (&), pound sign (#), or apostrophe."
	}
	return ""
}
