package redcap

import (
	"context"
	"net/http"
	"strconv"
	"strings"
)

// RenameRecord renames a record (content=record&action=rename; arm > 0:
// only in that arm of a multi-arm project). It needs the Rename Record
// right; REDCap answers "1".
func (c *Client) RenameRecord(ctx context.Context, oldID, newID string, arm int) error {
	const call = "rename record"
	f := content("record")
	f.Set("action", "rename")
	f.Set("record", oldID)
	f.Set("new_record_name", newID)
	if arm > 0 {
		f.Set("arm", strconv.Itoa(arm))
	}
	f.Set("returnFormat", "json")
	return c.wantOne(ctx, call, f)
}

// SwitchDAG moves the token's own user to another Data Access Group it is
// allowed on the DAG Switcher page ("" = no assignment); REDCap answers "1".
func (c *Client) SwitchDAG(ctx context.Context, dag string) error {
	const call = "switch DAG"
	f := content("dag")
	f.Set("action", "switch")
	f.Set("dag", dag)
	f.Set("returnFormat", "json")
	return c.wantOne(ctx, call, f)
}

func (c *Client) wantOne(ctx context.Context, call string, f map[string][]string) error {
	body, err := c.post(ctx, call, f, bodyText)
	if err != nil {
		return err
	}
	if s := strings.Trim(strings.TrimSpace(string(body)), `"`); s != "1" {
		return c.newError(call, http.StatusOK, KindTransient, "REDCap's answer is not \"1\"", "", nil)
	}
	return nil
}
