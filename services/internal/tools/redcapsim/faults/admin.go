package faults

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"time"
)

// State is the admin view: every setting, the banned IPs and the counters.
type State struct {
	Faults map[string]Faults `json:"faults"` // by project ID, "0" = every project
	Banned []string          `json:"banned"`
	Stats  map[string]int64  `json:"stats"`
}

// AdminHandler serves the fault settings (serve it on a separate port):
//
//	GET    /faults[?project=N]   the settings (all, or one project's)
//	PUT    /faults[?project=N]   replace them with the JSON body (a Faults);
//	                             "outage_for": "30s" sets an outage window from now
//	DELETE /faults?project=N     clear one project's (N=0: the every-project setting)
//	DELETE /faults               clear everything, lift IP bans, zero counters
//	                             (the ban threshold set at start stays)
//	DELETE /faults/bans          lift IP bans only
func (in *Injector) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/faults", in.adminFaults)
	mux.HandleFunc("/faults/bans", func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet:
			writeJSON(w, http.StatusOK, in.Banned())
		case http.MethodDelete:
			in.ResetBans()
			w.WriteHeader(http.StatusNoContent)
		default:
			adminError(w, http.StatusMethodNotAllowed, "use GET or DELETE")
		}
	})
	return mux
}

func (in *Injector) adminFaults(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	project, hasProject := 0, q.Has("project")
	if hasProject {
		n, err := strconv.Atoi(q.Get("project"))
		if err != nil || n < 0 {
			adminError(w, http.StatusBadRequest, "project must be a project ID (0 = every project)")
			return
		}
		project = n
	}
	switch r.Method {
	case http.MethodGet:
		if hasProject {
			f, ok := in.Get(project)
			if !ok {
				adminError(w, http.StatusNotFound, fmt.Sprintf("no faults set for project %d", project))
				return
			}
			writeJSON(w, http.StatusOK, f)
			return
		}
		writeJSON(w, http.StatusOK, in.State())
	case http.MethodPut, http.MethodPost:
		b, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			adminError(w, http.StatusBadRequest, "cannot read the body")
			return
		}
		var body struct {
			Faults
			OutageFor *Duration `json:"outage_for"`
		}
		if err := json.Unmarshal(b, &body); err != nil {
			adminError(w, http.StatusBadRequest, "body must be a JSON object of fault settings: "+err.Error())
			return
		}
		f := body.Faults
		if body.OutageFor != nil {
			f.OutageFrom = in.now()
			f.OutageUntil = f.OutageFrom.Add(time.Duration(*body.OutageFor))
		}
		if err := in.Set(project, f); err != nil {
			adminError(w, http.StatusBadRequest, err.Error())
			return
		}
		got, _ := in.Get(project)
		writeJSON(w, http.StatusOK, got)
	case http.MethodDelete:
		if hasProject {
			in.Clear(project)
		} else {
			in.Reset()
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		adminError(w, http.StatusMethodNotAllowed, "use GET, PUT or DELETE")
	}
}

// State returns every setting, the bans and the counters.
func (in *Injector) State() State {
	in.mu.RLock()
	ids := make([]int, 0, len(in.scopes))
	for id := range in.scopes {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	fs := make(map[string]Faults, len(ids))
	for _, id := range ids {
		fs[strconv.Itoa(id)] = in.scopes[id].f
	}
	in.mu.RUnlock()
	return State{Faults: fs, Banned: in.Banned(), Stats: in.Stats()}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}

func adminError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}
