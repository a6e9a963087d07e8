package redcap

import (
	"context"
	"net/http"
	"regexp"
	"strings"
)

var nextNameRE = regexp.MustCompile(`^[0-9]+(-[0-9]+)?$`)

// GenerateNextRecordName is REDCap's next auto-number: the largest numeric
// record ID plus one, or "<DAG id>-<n>" for a token assigned to a data
// access group. Any token may call it (no design or DAG rights needed), which
// makes it the exporter's cheap test of whether a token is DAG-restricted.
func (c *Client) GenerateNextRecordName(ctx context.Context) (string, error) {
	const call = "generate next record name"
	f := content("generateNextRecordName")
	// CSV, as PyCap asks: a DAG user's "<dagId>-<n>" is not valid JSON.
	f.Set("format", "csv")
	f.Set("returnFormat", "json")
	body, err := c.post(ctx, call, f, bodyText)
	if err != nil {
		return "", err
	}
	v := strings.Trim(strings.TrimSpace(string(body)), `"`)
	if !nextNameRE.MatchString(v) {
		return "", c.newError(call, http.StatusOK, KindTransient, "REDCap's answer is not a record name", "", nil)
	}
	return v, nil
}
