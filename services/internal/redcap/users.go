package redcap

import (
	"context"
	"encoding/json"
	"strconv"
)

// User is one project user as Export Users gives it. Privileges holds the
// 0/1 (user_rights: 0-2) attributes by REDCap's names (api_export,
// api_import, record_delete, record_rename, logging, design,
// data_access_groups, user_rights, …); Forms the per-instrument form rights
// (0 none, 1 view and edit, 2 read only, 3 edit survey responses) and
// FormsExport the data export levels (0 No Access, 1 Full Data Set,
// 2 De-Identified, 3 Remove Identifier Fields). A user in a role has the
// role's rights.
type User struct {
	Username, Email, Firstname, Lastname string
	Expiration                           string // "YYYY-MM-DD" or ""
	DataAccessGroup                      string // unique DAG name, "" = none
	Privileges                           map[string]int
	Forms, FormsExport                   map[string]int
}

// ExportUsers lists the project's users and their rights (needs API Export
// and User Rights).
func (c *Client) ExportUsers(ctx context.Context) ([]User, error) {
	var raw []map[string]json.RawMessage
	if err := c.exportJSON(ctx, "export users", content("user"), &raw); err != nil {
		return nil, err
	}
	out := make([]User, 0, len(raw))
	for _, m := range raw {
		u := User{Privileges: map[string]int{}}
		for k, v := range m {
			switch k {
			case "username":
				u.Username = rawString(v)
			case "email":
				u.Email = rawString(v)
			case "firstname":
				u.Firstname = rawString(v)
			case "lastname":
				u.Lastname = rawString(v)
			case "expiration":
				u.Expiration = rawString(v)
			case "data_access_group":
				u.DataAccessGroup = rawString(v)
			case "data_access_group_id":
			case "forms":
				u.Forms = rawForms(v)
			case "forms_export":
				u.FormsExport = rawForms(v)
			default:
				if n, err := strconv.Atoi(rawString(v)); err == nil {
					u.Privileges[k] = n
				}
			}
		}
		out = append(out, u)
	}
	return out, nil
}

// rawString reads a JSON string or number as text.
func rawString(v json.RawMessage) string {
	var s string
	if json.Unmarshal(v, &s) == nil {
		return s
	}
	var n json.Number
	if json.Unmarshal(v, &n) == nil {
		return n.String()
	}
	return ""
}

// rawForms reads {"form": 1} (or REDCap's older [{"form": 1}]).
func rawForms(v json.RawMessage) map[string]int {
	out := map[string]int{}
	var m map[string]json.RawMessage
	if json.Unmarshal(v, &m) == nil {
		for k, x := range m {
			if n, err := strconv.Atoi(rawString(x)); err == nil {
				out[k] = n
			}
		}
		return out
	}
	var list []map[string]json.RawMessage
	if json.Unmarshal(v, &list) == nil {
		for _, m := range list {
			for k, x := range m {
				if n, err := strconv.Atoi(rawString(x)); err == nil {
					out[k] = n
				}
			}
		}
	}
	return out
}
