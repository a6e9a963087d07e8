package redcapsim

import (
	"net/http"
	"strconv"
	"strings"
)

func (c *call) deleteRecords(w http.ResponseWriter) error {
	ids := c.p.array("records", false)
	if len(ids) == 0 {
		return errorf(400, "The parameter 'records' is missing or empty. Give the records to delete as records[]=.")
	}
	p := c.proj
	p.mu.Lock()
	defer p.mu.Unlock()
	dag := c.dagIndex()
	var missing []string
	seen := map[string]bool{}
	var uniq []string
	for _, id := range ids {
		if seen[id] {
			continue
		}
		seen[id] = true
		r := p.records[id]
		if r == nil || (dag >= 0 && r.dag != dag) {
			missing = append(missing, id)
			continue
		}
		uniq = append(uniq, id)
	}
	if len(missing) > 0 {
		return errorf(400, "One or more of the records provided cannot be deleted because they do not exist in the project. The following records do not exist: "+strings.Join(missing, ", "))
	}
	arm := 0
	if a := c.p.str("arm"); a != "" && p.longitudinal {
		arm = atoiDefault(a, 0)
		if _, ok := p.armFirstEv[arm]; !ok {
			return errorf(400, `The value of the parameter "arm" is not valid`)
		}
	}
	n := c.s.deleteLocked(p, uniq, arm, c.acc.user)
	writeBody(w, c.rf, strconv.Itoa(n))
	return nil
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
