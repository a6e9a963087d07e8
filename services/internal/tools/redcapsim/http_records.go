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
	n := c.s.deleteLocked(p, uniq, arm, c.tok.user)
	writeBody(w, c.rf, strconv.Itoa(n))
	return nil
}
