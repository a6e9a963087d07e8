package redcapsim

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"

	"github.com/redcap-relay/relay/messages"
)

// AdminHandler serves the simulator's own admin calls (serve it on a
// separate port, next to the fault admin API; never on the API port):
//
//	POST /sim/silent-values?project=N&record=R   body: a JSON array of flat rows
//	     changes record R's values without a change-log entry
//	     (SetValuesSilently): dateRangeBegin exports and content=log miss it.
func (s *Server) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/sim/silent-values", s.adminSilentValues)
	return mux
}

func (s *Server) adminSilentValues(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost && r.Method != http.MethodPut {
		adminJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "use POST"})
		return
	}
	q := r.URL.Query()
	pid, err := strconv.Atoi(q.Get("project"))
	if err != nil || pid <= 0 {
		adminJSON(w, http.StatusBadRequest, map[string]string{"error": "project must be a project ID"})
		return
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, 64<<20))
	if err != nil {
		adminJSON(w, http.StatusBadRequest, map[string]string{"error": "cannot read the body"})
		return
	}
	var rows []messages.Row
	if err := json.Unmarshal(b, &rows); err != nil {
		adminJSON(w, http.StatusBadRequest, map[string]string{"error": "the body must be a JSON array of flat rows (objects of strings)"})
		return
	}
	if err := s.SetValuesSilently(pid, q.Get("record"), rows); err != nil {
		adminJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	adminJSON(w, http.StatusOK, map[string]int{"rows": len(rows)})
}

func adminJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
