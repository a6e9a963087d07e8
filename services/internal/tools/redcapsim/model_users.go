package redcapsim

import (
	"sort"
	"strings"
)

// Users and roles: every token belongs to a user of its project, and what
// the token may do follows from that user's privileges (or its role's, when
// it has one), as in REDCap.

// privNames are REDCap's 0/1 user privileges, in its user export order.
var privNames = []string{"design", "alerts", "user_rights", "data_access_groups", "reports", "stats_and_charts",
	"manage_survey_participants", "calendar", "data_import_tool", "data_comparison_tool", "logging", "email_logging",
	"file_repository", "data_quality_create", "data_quality_execute", "api_export", "api_import", "api_modules",
	"mobile_app", "mobile_app_download_data", "record_create", "record_rename", "record_delete",
	"lock_records_customization", "lock_records", "lock_records_all_forms", "mycap_participants",
	"random_setup", "random_dashboard", "random_perform"}

var isPriv = func() map[string]bool {
	m := map[string]bool{}
	for _, n := range privNames {
		m[n] = true
	}
	return m
}()

// Data export levels (forms_export): REDCap's codes.
const (
	exportNone     = 0
	exportFull     = 1
	exportDeident  = 2 // identifiers, free text, notes and dates removed
	exportNoIdents = 3 // tagged identifiers removed
)

// privileges are one user's or role's rights. Forms or export levels of
// instruments the map does not name count as full (an instrument added
// after the user was).
type privileges struct {
	Priv        map[string]int `json:"priv"`
	Forms       map[string]int `json:"forms,omitempty"`        // 0 none, 1 view and edit, 2 read only, 3 edit survey responses
	FormsExport map[string]int `json:"forms_export,omitempty"` // exportNone … exportNoIdents
}

func (pv privileges) clone() privileges {
	cp := func(m map[string]int) map[string]int {
		if m == nil {
			return nil
		}
		out := make(map[string]int, len(m))
		for k, v := range m {
			out[k] = v
		}
		return out
	}
	return privileges{Priv: cp(pv.Priv), Forms: cp(pv.Forms), FormsExport: cp(pv.FormsExport)}
}

type user struct {
	Name       string `json:"username"`
	Email      string `json:"email,omitempty"`
	First      string `json:"firstname,omitempty"`
	Last       string `json:"lastname,omitempty"`
	Expiration string `json:"expiration,omitempty"` // Y-M-D, "" = never
	DAG        string `json:"dag,omitempty"`        // unique DAG name, "" = none
	Role       string `json:"role,omitempty"`       // unique role name, "" = none
	// SwitchDAGs are the DAGs the DAG Switcher lets the user switch to
	// ("" stands for no assignment).
	SwitchDAGs []string `json:"switch_dags,omitempty"`
	// MetadataOnly lets a token export the design without API Export (a
	// simulator convenience for tests of the destination check).
	MetadataOnly bool `json:"metadata_only,omitempty"`
	privileges
}

type role struct {
	ID     int    `json:"role_id,omitempty"` // REDCap's role_id (File Repository restrictions)
	Unique string `json:"unique_role_name"`
	Label  string `json:"role_label"`
	privileges
}

// access is what one call may do: the user's effective rights, copied under
// the project lock when the call starts.
type access struct {
	user   string
	dag    string
	meta   bool
	expiry string
	privileges
}

func (a *access) can(priv string) bool { return a.Priv[priv] == 1 }

// exportLevel is the data export level for one instrument.
func (a *access) exportLevel(form string) int {
	if v, ok := a.FormsExport[form]; ok {
		return v
	}
	return exportFull
}

// noExport is REDCap's "No Access" data export rights on every instrument.
func (a *access) noExport(forms []formInfo) bool {
	for _, f := range forms {
		if a.exportLevel(f.name) != exportNone {
			return false
		}
	}
	return len(forms) > 0
}

var errNoAccessExport = errorf(403, `The API request cannot complete because currently you have "No Access" data export rights. Higher level data export rights are required for this operation.`)

// exportableColumns drops the columns the user's data export rights hold
// back: every column of a "No Access" instrument; tagged identifiers with
// "Remove Identifier Fields"; with "De-Identified" also free text, notes
// and dates. The record-ID column stays. Callers hold p.mu.
func (p *project) exportableColumns(a *access, cols []int) []int {
	out := cols[:0:0]
	for _, ci := range cols {
		if ci == 0 || p.exportableColumn(a, ci) {
			out = append(out, ci)
		}
	}
	return out
}

func (p *project) exportableColumn(a *access, ci int) bool {
	col := &p.cols[ci]
	level := a.exportLevel(p.forms[col.form].name)
	switch level {
	case exportNone:
		return false
	case exportFull:
		return true
	}
	if col.field < 0 {
		return true // form status
	}
	f := &p.finfo[col.field]
	if f.Identifier == "y" || f.Identifier == "1" {
		return false
	}
	if level == exportNoIdents {
		return true
	}
	switch {
	case f.FieldType == "notes", f.FieldType == "file":
		return false
	case f.FieldType == "text" && f.validation == "":
		return false
	case f.FieldType == "text" && (strings.HasPrefix(f.validation, "date") || strings.HasPrefix(f.validation, "datetime")):
		return false
	}
	return true
}

// accessOf resolves a user's effective rights. Callers hold p.mu.
func (p *project) accessOf(u *user) *access {
	a := &access{user: u.Name, dag: u.DAG, meta: u.MetadataOnly, expiry: u.Expiration, privileges: u.privileges}
	if u.Role != "" {
		if r := p.roleByName(u.Role); r != nil {
			a.privileges = r.privileges
		}
	}
	return a
}

func (p *project) roleByName(unique string) *role {
	for _, r := range p.roles {
		if r.Unique == unique {
			return r
		}
	}
	return nil
}

// userNames lists the project's users in REDCap's order (by username).
func (p *project) userNames() []string {
	names := make([]string, 0, len(p.users))
	for n := range p.users {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// userList is the users in REDCap's order, for persistence.
func (p *project) userList() []*user {
	out := make([]*user, 0, len(p.users))
	for _, n := range p.userNames() {
		out = append(out, p.users[n])
	}
	return out
}

func (p *project) setUsers(us []*user) {
	p.users = make(map[string]*user, len(us))
	for _, u := range us {
		p.users[u.Name] = u
	}
}

// privilegesFromRights turns the Go API's Rights into REDCap privileges.
func privilegesFromRights(r Rights, forms []formInfo) privileges {
	b := func(v bool) int {
		if v {
			return 1
		}
		return 0
	}
	pv := privileges{Priv: map[string]int{}, Forms: map[string]int{}, FormsExport: map[string]int{}}
	for _, n := range privNames {
		pv.Priv[n] = 0
	}
	for k, v := range map[string]bool{
		"api_export": r.Export, "api_import": r.Import, "record_create": r.Import, "data_import_tool": r.Import,
		"record_delete": r.Delete, "logging": r.Logging, "design": r.DesignImport, "record_rename": r.Rename,
		"user_rights": r.UserRights, "data_access_groups": r.DAGs, "file_repository": r.FileRepository,
		"manage_survey_participants": r.SurveyTools, "reports": true, "stats_and_charts": true, "calendar": true,
	} {
		pv.Priv[k] = b(v)
	}
	for _, f := range forms {
		pv.Forms[f.name] = 1
		level := exportFull
		if !r.Export {
			level = exportNone
		}
		if v, ok := r.FormExport[f.name]; ok {
			level = v
		}
		pv.FormsExport[f.name] = level
	}
	return pv
}

// validUsername follows REDCap's username rule: letters, digits and
// _ - . @ only.
func validUsername(s string) bool {
	if s == "" || len(s) > 255 {
		return false
	}
	return strings.IndexFunc(s, func(c rune) bool {
		return !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("_-.@", c))
	}) < 0
}
