package redcapsim

import (
	"net/http"
	"slices"
)

// switchDAG is content=dag&action=switch: the token's own user moves to one
// of the DAGs the DAG Switcher allows it ("" = no assignment). From then on
// the user's calls see only that DAG's records. The answer is "1".
func (c *call) switchDAG(w http.ResponseWriter) error {
	dag := c.p.str("dag")
	p := c.proj
	p.mu.Lock()
	defer p.mu.Unlock()
	if dag != "" {
		if _, ok := p.dagByName[dag]; !ok {
			return errorf(400, dag+" is not a valid unique Data Access Group name for this project.")
		}
	}
	u := p.users[c.acc.user]
	if u == nil {
		return errorf(403, "")
	}
	if !slices.Contains(u.SwitchDAGs, dag) {
		name := dag
		if name == "" {
			name = "[No Assignment]"
		}
		return errorf(403, "You are not assigned to the Data Access Group "+name+" on the DAG Switcher page, so you cannot switch to it.")
	}
	u.DAG = dag
	details := "DAG = '" + dag + "'"
	l := logEntry{ts: c.s.now().Unix(), user: u.Name, action: "Switch DAG", details: details, kind: logManage}
	p.log = append(p.log, l)
	c.s.persistAccess(p, l)
	writeBody(w, c.rf, "1")
	return nil
}
