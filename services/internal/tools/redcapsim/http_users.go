package redcapsim

import (
	"crypto/rand"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// Users and rights calls: content=user, userRole, userRoleMapping and
// userDagMapping, with REDCap's attributes, answer shapes (JSON, CSV, XML)
// and texts. Changes are logged (logtype=user) and persisted.

// userPrivOrder and rolePrivOrder are the privilege attributes in the
// order REDCap exports them.
var userPrivOrder = []string{"design", "alerts", "user_rights", "data_access_groups", "reports", "stats_and_charts",
	"manage_survey_participants", "calendar", "data_import_tool", "data_comparison_tool", "logging", "email_logging",
	"file_repository", "data_quality_create", "data_quality_execute", "api_export", "api_import", "api_modules",
	"mobile_app", "mobile_app_download_data", "record_create", "record_rename", "record_delete",
	"lock_records_all_forms", "lock_records", "lock_records_customization", "mycap_participants",
	"random_setup", "random_dashboard", "random_perform"}

var rolePrivOrder = []string{"design", "alerts", "user_rights", "data_access_groups", "reports", "stats_and_charts",
	"manage_survey_participants", "calendar", "data_import_tool", "data_comparison_tool", "logging", "email_logging",
	"file_repository", "data_quality_create", "data_quality_execute", "api_export", "api_import", "api_modules",
	"mobile_app", "mobile_app_download_data", "record_create", "record_rename", "record_delete",
	"lock_records_customization", "lock_records", "lock_records_all_forms", "mycap_participants",
	"random_setup", "random_dashboard", "random_perform"}

func userRights(api string) func(*call) error {
	return func(c *call) error {
		if !c.acc.can(api) || !c.acc.can("user_rights") {
			if api == "api_export" {
				return errorf(403, "Insufficient user privileges: You must have 'API Export' privileges and 'User Rights' privileges (Full Access or Read Only) in the project.")
			}
			return errorf(403, "Insufficient user privileges: You must have 'API Import/Update' privileges and 'User Rights' privileges in the project in order to import/update users via the API Import Users method.")
		}
		return nil
	}
}

// kv is one attribute of an exported user or role: a value, a JSON
// number, or a per-form map.
type kv struct {
	key   string
	val   string
	num   bool
	forms [][2]string
	isMap bool
}

func formsKV(key string, forms []formInfo, m map[string]int, dflt int) kv {
	out := kv{key: key, isMap: true}
	for _, f := range forms {
		v, ok := m[f.name]
		if !ok {
			v = dflt
		}
		out.forms = append(out.forms, [2]string{f.name, strconv.Itoa(v)})
	}
	return out
}

// writeObjects renders users or roles: JSON objects (maps as objects),
// CSV ("form:1,form2:0" for maps) or XML.
func writeObjects(w http.ResponseWriter, format string, objs [][]kv) {
	switch format {
	case "json":
		buf := []byte{'['}
		for i, o := range objs {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = append(buf, '{')
			for j, a := range o {
				if j > 0 {
					buf = append(buf, ',')
				}
				buf = appendJSONString(buf, a.key)
				buf = append(buf, ':')
				switch {
				case a.isMap:
					buf = append(buf, '{')
					for k, f := range a.forms {
						if k > 0 {
							buf = append(buf, ',')
						}
						buf = appendJSONString(buf, f[0])
						buf = append(buf, ':')
						buf = append(buf, f[1]...)
					}
					buf = append(buf, '}')
				case a.num:
					buf = append(buf, a.val...)
				default:
					buf = appendJSONString(buf, a.val)
				}
			}
			buf = append(buf, '}')
		}
		writeBody(w, "json", string(append(buf, ']')))
	case "csv":
		var hdr []string
		var rows [][]string
		for i, o := range objs {
			var row []string
			for _, a := range o {
				if i == 0 {
					hdr = append(hdr, a.key)
				}
				if a.isMap {
					parts := make([]string, len(a.forms))
					for k, f := range a.forms {
						parts[k] = f[0] + ":" + f[1]
					}
					row = append(row, strings.Join(parts, ","))
				} else {
					row = append(row, a.val)
				}
			}
			rows = append(rows, row)
		}
		writeBody(w, "csv", csvTable(hdr, rows))
	default:
		var b strings.Builder
		b.WriteString(xmlHeader + "<records>\n")
		for _, o := range objs {
			b.WriteString("<item>")
			for _, a := range o {
				b.WriteString("<" + a.key + ">")
				if a.isMap {
					for _, f := range a.forms {
						b.WriteString("<" + f[0] + ">" + f[1] + "</" + f[0] + ">")
					}
				} else {
					b.WriteString("<![CDATA[" + a.val + "]]>")
				}
				b.WriteString("</" + a.key + ">")
			}
			b.WriteString("</item>\n")
		}
		b.WriteString("</records>")
		writeBody(w, "xml", b.String())
	}
}

func (c *call) exportUsers(w http.ResponseWriter) error {
	p := c.proj
	p.mu.RLock()
	defer p.mu.RUnlock()
	var objs [][]kv
	for _, name := range p.userNames() {
		u := p.users[name]
		a := p.accessOf(u) // users in a role export the role's rights
		dagID := ""
		if i := p.dagIndexOf(u.DAG); i >= 0 {
			dagID = strconv.Itoa(p.dags[i].ID)
		}
		o := []kv{{key: "username", val: u.Name}, {key: "email", val: u.Email}, {key: "firstname", val: u.First}, {key: "lastname", val: u.Last},
			{key: "expiration", val: u.Expiration}, {key: "data_access_group", val: u.DAG}, {key: "data_access_group_id", val: dagID}}
		for _, pv := range userPrivOrder {
			o = append(o, kv{key: pv, val: strconv.Itoa(a.Priv[pv]), num: true})
		}
		o = append(o, formsKV("forms", p.forms, a.Forms, 1), formsKV("forms_export", p.forms, a.FormsExport, exportFull))
		objs = append(objs, o)
	}
	writeObjects(w, c.p.format(), objs)
	return nil
}

func (c *call) exportRoles(w http.ResponseWriter) error {
	p := c.proj
	p.mu.RLock()
	defer p.mu.RUnlock()
	var objs [][]kv
	for _, r := range p.roles {
		o := []kv{{key: "unique_role_name", val: r.Unique}, {key: "role_label", val: r.Label}}
		for _, pv := range rolePrivOrder {
			o = append(o, kv{key: pv, val: strconv.Itoa(r.Priv[pv])}) // role privileges export as strings
		}
		o = append(o, formsKV("forms", p.forms, r.Forms, 1), formsKV("forms_export", p.forms, r.FormsExport, exportFull))
		objs = append(objs, o)
	}
	writeObjects(w, c.p.format(), objs)
	return nil
}

// parseRights reads the attributes of one imported user or role into pv
// (only those given change it). Callers hold c.proj.mu.
func (p *project) parsePrivileges(r map[string]string, who string, pv *privileges) string {
	for k, v := range r {
		switch {
		case isPriv[k]:
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil || n < 0 || n > 1 {
				if k == "user_rights" && n == 2 {
					break // Read Only
				}
				return fmt.Sprintf("The value '%s' of '%s' for %s is not valid: it must be 0 (No Access) or 1 (Access).", v, k, who)
			}
			pv.Priv[k] = n
		case k == "forms" || k == "forms_export":
			m := pv.Forms
			if k == "forms_export" {
				m = pv.FormsExport
			}
			for _, part := range splitFormRights(v) {
				form, val, _ := strings.Cut(part, ":")
				form, val = strings.TrimSpace(form), strings.TrimSpace(val)
				if form == "" {
					continue
				}
				if !p.isForm(form) {
					return fmt.Sprintf("The form named '%s' is incorrect for the user '%s'. The form does not exist in this project.", form, who)
				}
				n, err := strconv.Atoi(val)
				if err != nil || n < 0 || n > 3 {
					return fmt.Sprintf("The form named '%s' with value '%s' is not a valid form-level rights value. It must be 0, 1, 2 or 3.", form, val)
				}
				m[form] = n
			}
		}
	}
	return ""
}

// splitFormRights reads forms as REDCap sends them: "f1:1,f2:0" (CSV),
// or the JSON object flattened to the same by parseData.
func splitFormRights(v string) []string {
	v = strings.Trim(strings.TrimSpace(v), "{}[]")
	v = strings.NewReplacer(`"`, "", "\n", ",").Replace(v)
	return strings.Split(v, ",")
}

func emptyPrivileges(forms []formInfo) privileges {
	pv := privileges{Priv: map[string]int{}, Forms: map[string]int{}, FormsExport: map[string]int{}}
	for _, n := range privNames {
		pv.Priv[n] = 0
	}
	for _, f := range forms {
		pv.Forms[f.name], pv.FormsExport[f.name] = 0, exportNone
	}
	return pv
}

func (c *call) importUsers(w http.ResponseWriter) error {
	rows, err := c.parseDesign()
	if err != nil {
		return err
	}
	p := c.proj
	p.mu.Lock()
	defer p.mu.Unlock()
	// Check every row before changing anything.
	next := map[string]*user{}
	var logged []logEntry
	for i, r := range rows {
		name := strings.TrimSpace(r["username"])
		if name == "" {
			return errorf(400, fmt.Sprintf("The username is missing for user #%d in the list of users provided.", i+1))
		}
		if !validUsername(name) {
			return errorf(400, "'"+name+"' is not in a valid username format.")
		}
		old := p.users[name]
		var u user
		action := "Edit user " + name
		if old != nil {
			u = *old
			u.privileges = old.privileges.clone()
		} else {
			u = user{Name: name, privileges: emptyPrivileges(p.forms)}
			action = "Add user " + name
		}
		if old != nil && old.Role != "" && hasPrivilegeAttrs(r) {
			return errorf(400, "The user '"+name+"' cannot have their user privileges modified because the user belongs to a user role. Users in roles cannot have their privileges modified via the 'Import User' API method.")
		}
		if msg := p.parsePrivileges(r, name, &u.privileges); msg != "" {
			return errorf(400, msg)
		}
		for k, dst := range map[string]*string{"email": &u.Email, "firstname": &u.First, "lastname": &u.Last, "expiration": &u.Expiration} {
			if v, ok := r[k]; ok {
				*dst = strings.TrimSpace(v)
			}
		}
		if v, ok := r["data_access_group"]; ok {
			// Given but blank: no assignment (the user sees every record).
			// Not given: an existing user keeps theirs.
			v = strings.TrimSpace(v)
			if v != "" && p.dagIndexOf(v) < 0 {
				return errorf(400, v+" is not a valid unique Data Access Group name for this project.")
			}
			if v != "" && c.acc.dag != "" && v != c.acc.dag {
				return errorf(403, "You do not have permission to import User-DAG Assignment because you have been assigned to a Data Access Group.")
			}
			u.DAG = v
		}
		next[name] = &u
		logged = append(logged, logEntry{ts: c.s.now().Unix(), user: c.acc.user, action: action, details: "user = '" + name + "'", kind: logUser})
	}
	for name, u := range next {
		p.users[name] = u
	}
	p.log = append(p.log, logged...)
	c.s.persistAccess(p, logged...)
	writeCount(w, c.rf, len(next))
	return nil
}

func hasPrivilegeAttrs(r map[string]string) bool {
	for k := range r {
		if isPriv[k] || k == "forms" || k == "forms_export" {
			return true
		}
	}
	return false
}

// flattenFormObjects turns "forms":{"a":1,"b":2} (or [{"a":1},{"b":2}]) into
// "forms":"a:1,b:2", so the flat parser can read user rows.
func flattenFormObjects(data string) string {
	for _, key := range []string{`"forms"`, `"forms_export"`} {
		var b strings.Builder
		rest := data
		for {
			i := strings.Index(rest, key)
			if i < 0 {
				b.WriteString(rest)
				break
			}
			j := i + len(key)
			for j < len(rest) && (rest[j] == ' ' || rest[j] == ':') {
				j++
			}
			if j >= len(rest) || (rest[j] != '{' && rest[j] != '[') {
				b.WriteString(rest[:j])
				rest = rest[j:]
				continue
			}
			end := matchingClose(rest, j)
			if end < 0 {
				b.WriteString(rest)
				break
			}
			inner := rest[j+1 : end]
			inner = strings.NewReplacer("{", "", "}", "", `"`, "", " ", "").Replace(inner)
			b.WriteString(rest[:i] + key + `:"` + inner + `"`)
			rest = rest[end+1:]
		}
		data = b.String()
	}
	return data
}

func matchingClose(s string, open int) int {
	depth, inStr := 0, false
	for i := open; i < len(s); i++ {
		switch c := s[i]; {
		case inStr && c == '\\':
			i++
		case c == '"':
			inStr = !inStr
		case inStr:
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			depth--
			if depth == 0 {
				return i
			}
		}
	}
	return -1
}

func (c *call) deleteUsers(w http.ResponseWriter) error {
	names := c.p.array("users", false)
	if len(names) == 0 {
		return errorf(400, "The 'users' parameter is either missing or is not an array. It must be provided as an array even if it only contains one value.")
	}
	p := c.proj
	p.mu.Lock()
	defer p.mu.Unlock()
	var missing []string
	for _, n := range names {
		if p.users[n] == nil {
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		return errorf(400, "One or more of the users provided are not valid usernames that do not exist in this project. Note: No users were deleted. Users that do not exist: "+strings.Join(missing, ", "))
	}
	var logged []logEntry
	seen := map[string]bool{}
	for _, n := range names {
		if seen[n] {
			continue
		}
		seen[n] = true
		delete(p.users, n) // its tokens stop working
		logged = append(logged, logEntry{ts: c.s.now().Unix(), user: c.acc.user, action: "Delete user " + n, details: "user = '" + n + "'", kind: logUser})
	}
	p.log = append(p.log, logged...)
	c.s.persistAccess(p, logged...)
	writeBody(w, c.rf, strconv.Itoa(len(seen))) // a bare count, as Delete Records
	return nil
}

func nextRoleID(roles []*role) int {
	n := 0
	for _, r := range roles {
		n = max(n, r.ID)
	}
	return n + 1
}

func newRoleName() string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	b := make([]byte, 10)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return "U-" + string(b)
}

func (c *call) importRoles(w http.ResponseWriter) error {
	rows, err := c.parseDesign()
	if err != nil {
		return err
	}
	p := c.proj
	p.mu.Lock()
	defer p.mu.Unlock()
	roles := make([]*role, len(p.roles))
	for i, r := range p.roles {
		cp := *r
		cp.privileges = r.privileges.clone()
		roles[i] = &cp
	}
	var logged []logEntry
	for i, r := range rows {
		unique, label := strings.TrimSpace(r["unique_role_name"]), strings.TrimSpace(r["role_label"])
		var target *role
		for _, x := range roles {
			if unique != "" && x.Unique == unique {
				target = x
			}
		}
		if unique != "" && target == nil {
			return errorf(400, "The unique role name '"+unique+"' does not exist in this project (leave unique_role_name blank to create a role).")
		}
		action := "Edit user role"
		if target == nil {
			if label == "" {
				return errorf(400, fmt.Sprintf("The role_label is missing for user role #%d in the list of roles provided.", i+1))
			}
			target = &role{ID: nextRoleID(roles), Unique: newRoleName(), privileges: emptyPrivileges(p.forms)}
			roles = append(roles, target)
			action = "Add user role"
		}
		if label != "" {
			target.Label = label
		}
		if msg := p.parsePrivileges(r, target.Label, &target.privileges); msg != "" {
			return errorf(400, msg)
		}
		logged = append(logged, logEntry{ts: c.s.now().Unix(), user: c.acc.user, action: action, details: "role = '" + target.Label + "'", kind: logUser})
	}
	p.roles = roles
	p.log = append(p.log, logged...)
	c.s.persistAccess(p, logged...)
	writeCount(w, c.rf, len(rows))
	return nil
}

func (c *call) deleteRoles(w http.ResponseWriter) error {
	names := c.p.array("roles", false)
	if len(names) == 0 {
		return errorf(400, "The 'roles' parameter is either missing or is not an array. It must be provided as an array even if it only contains one value.")
	}
	p := c.proj
	p.mu.Lock()
	defer p.mu.Unlock()
	del := map[string]bool{}
	var missing []string
	for _, n := range names {
		if p.roleByName(n) == nil {
			missing = append(missing, n)
		}
		del[n] = true
	}
	if len(missing) > 0 {
		return errorf(400, "One or more of the roles provided are not valid rolenames that do not exist in this project. Note: No roles were deleted. Roles that do not exist: "+strings.Join(missing, ", "))
	}
	var logged []logEntry
	p.roles = filter(p.roles, func(r *role) bool {
		if del[r.Unique] {
			logged = append(logged, logEntry{ts: c.s.now().Unix(), user: c.acc.user, action: "Delete user role", details: "role = '" + r.Label + "'", kind: logUser})
			return false
		}
		return true
	})
	for _, u := range p.users {
		if del[u.Role] {
			u.Role = "" // back to the user's own privileges
		}
	}
	p.log = append(p.log, logged...)
	c.s.persistAccess(p, logged...)
	writeBody(w, c.rf, strconv.Itoa(len(del)))
	return nil
}

func (c *call) exportRoleMapping(w http.ResponseWriter) error {
	p := c.proj
	p.mu.RLock()
	defer p.mu.RUnlock()
	t := &table{header: []string{"username", "unique_role_name"}}
	for _, n := range p.userNames() {
		t.rows = append(t.rows, []string{n, p.users[n].Role})
	}
	t.write(w, c.p.format())
	return nil
}

func (c *call) importRoleMapping(w http.ResponseWriter) error {
	rows, err := c.parseDesign()
	if err != nil {
		return err
	}
	p := c.proj
	p.mu.Lock()
	defer p.mu.Unlock()
	type change struct {
		user, role, dag string
		dagSet          bool
	}
	var changes []change
	for _, r := range rows {
		name, role := strings.TrimSpace(r["username"]), strings.TrimSpace(r["unique_role_name"])
		if p.users[name] == nil {
			return errorf(400, "The username '"+name+"' for unique role name '"+role+"' is incorrect for the user role: the user does not exist in this project.")
		}
		if role != "" && p.roleByName(role) == nil {
			return errorf(400, "The username '"+name+"' for unique role name '"+role+"' is incorrect for the user role: the role does not exist in this project.")
		}
		ch := change{user: name, role: role}
		if d, ok := r["data_access_group"]; ok {
			d = strings.TrimSpace(d)
			if d != "" && p.dagIndexOf(d) < 0 {
				return errorf(400, d+" is not a valid unique Data Access Group name for this project.")
			}
			ch.dag, ch.dagSet = d, true
		}
		changes = append(changes, ch)
	}
	var logged []logEntry
	for _, ch := range changes {
		u := p.users[ch.user]
		u.Role = ch.role
		if ch.dagSet {
			u.DAG = ch.dag
		}
		logged = append(logged, logEntry{ts: c.s.now().Unix(), user: c.acc.user, action: "Assign user to role", details: "user = '" + ch.user + "', role = '" + ch.role + "'", kind: logUser})
	}
	p.log = append(p.log, logged...)
	c.s.persistAccess(p, logged...)
	writeCount(w, c.rf, len(changes))
	return nil
}

func (c *call) exportDAGMapping(w http.ResponseWriter) error {
	p := c.proj
	p.mu.RLock()
	defer p.mu.RUnlock()
	t := &table{header: []string{"username", "redcap_data_access_group"}}
	names := p.userNames()
	sort.Strings(names)
	for _, n := range names {
		t.rows = append(t.rows, []string{n, p.users[n].DAG})
	}
	t.write(w, c.p.format())
	return nil
}

func (c *call) importDAGMapping(w http.ResponseWriter) error {
	rows, err := c.parseDesign()
	if err != nil {
		return err
	}
	p := c.proj
	p.mu.Lock()
	defer p.mu.Unlock()
	set := map[string]string{}
	var order []string
	for _, r := range rows {
		name, dag := strings.TrimSpace(r["username"]), strings.TrimSpace(r["redcap_data_access_group"])
		if p.users[name] == nil {
			return errorf(400, "The user '"+name+"' does not exist in this project.")
		}
		if dag != "" && p.dagIndexOf(dag) < 0 {
			return errorf(400, dag+" is not a valid unique Data Access Group name for this project.")
		}
		if _, dup := set[name]; !dup {
			order = append(order, name)
		}
		set[name] = dag // no column (or blank): no group
	}
	var logged []logEntry
	for _, name := range order {
		p.users[name].DAG = set[name]
		logged = append(logged, logEntry{ts: c.s.now().Unix(), user: c.acc.user, action: "Assign user to data access group", details: "user = '" + name + "', group = '" + set[name] + "'", kind: logUser})
	}
	p.log = append(p.log, logged...)
	c.s.persistAccess(p, logged...)
	writeCount(w, c.rf, len(order))
	return nil
}
