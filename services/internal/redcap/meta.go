package redcap

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/redcap-relay/relay/messages"
)

func asError(err error, target **Error) bool { return errors.As(err, target) }

// exportJSON runs a metadata-style export and decodes its JSON into v.
func (c *Client) exportJSON(ctx context.Context, call string, f url.Values, v any) error {
	f.Set("format", "json")
	f.Set("returnFormat", "json")
	body, err := c.post(ctx, call, f, bodyJSON)
	if err != nil {
		return err
	}
	if err := decodeLoose(body, v); err != nil {
		if msg, _ := errorText(body); msg != "" && strings.HasPrefix(strings.TrimSpace(string(body)), `{"error"`) {
			return c.newError(call, http.StatusOK, KindTransient, msg, "REDCap sent an error with status 200", nil)
		}
		return c.parseError(call, err)
	}
	return nil
}

func content(name string) url.Values {
	f := url.Values{}
	f.Set("content", name)
	return f
}

// isClassicRefusal is REDCap's 400 for arm/event/mapping exports of a
// classic (non-longitudinal) project, or for repeating setups of a project
// without repeats (older versions).
func isClassicRefusal(err error) bool {
	var e *Error
	if !errors.As(err, &e) || e.Status != http.StatusBadRequest {
		return false
	}
	m := strings.ToLower(e.Message)
	return strings.Contains(m, "for classic projects") || strings.Contains(m, "does not contain any repeating")
}

// ExportMetadata exports the data dictionary, optionally only some forms.
func (c *Client) ExportMetadata(ctx context.Context, forms ...string) ([]messages.Field, error) {
	f := content("metadata")
	setArray(f, "forms", forms)
	var out []messages.Field
	return out, c.exportJSON(ctx, "export metadata", f, &out)
}

// ExportInstruments lists the instruments in project order.
func (c *Client) ExportInstruments(ctx context.Context) ([]messages.Instrument, error) {
	var out []messages.Instrument
	return out, c.exportJSON(ctx, "export instruments", content("instrument"), &out)
}

// ExportArms lists the arms; a classic project has none: (nil, nil).
func (c *Client) ExportArms(ctx context.Context) ([]messages.Arm, error) {
	var out []messages.Arm
	err := c.exportJSON(ctx, "export arms", content("arm"), &out)
	if isClassicRefusal(err) {
		return nil, nil
	}
	return out, err
}

// ExportEvents lists the events; a classic project has none: (nil, nil).
func (c *Client) ExportEvents(ctx context.Context) ([]messages.Event, error) {
	var out []messages.Event
	err := c.exportJSON(ctx, "export events", content("event"), &out)
	if isClassicRefusal(err) {
		return nil, nil
	}
	return out, err
}

// ExportFormEventMapping lists which forms each event holds; a classic
// project has none: (nil, nil).
func (c *Client) ExportFormEventMapping(ctx context.Context) ([]messages.FormEvent, error) {
	var out []messages.FormEvent
	err := c.exportJSON(ctx, "export form-event mapping", content("formEventMapping"), &out)
	if isClassicRefusal(err) {
		return nil, nil
	}
	return out, err
}

// ExportRepeating lists the repeating instruments and events (none: empty).
func (c *Client) ExportRepeating(ctx context.Context) ([]messages.RepeatingForm, error) {
	var out []messages.RepeatingForm
	err := c.exportJSON(ctx, "export repeating instruments and events", content("repeatingFormsEvents"), &out)
	if isClassicRefusal(err) {
		return nil, nil
	}
	return out, err
}

// ExportProjectInfo exports the project's settings.
func (c *Client) ExportProjectInfo(ctx context.Context) (messages.ProjectInfo, error) {
	var out messages.ProjectInfo
	err := c.exportJSON(ctx, "export project info", content("project"), &out)
	return out, err
}

var versionRE = regexp.MustCompile(`^[0-9]+(\.[0-9]+)*$`)

// ExportVersion returns the REDCap version, e.g. "14.7.3".
func (c *Client) ExportVersion(ctx context.Context) (string, error) {
	const call = "export version"
	f := content("version")
	f.Set("format", "json")
	f.Set("returnFormat", "json")
	body, err := c.post(ctx, call, f, bodyText)
	if err != nil {
		return "", err
	}
	v := strings.Trim(strings.TrimSpace(string(body)), `"`)
	if !versionRE.MatchString(v) {
		return "", c.newError(call, http.StatusOK, KindTransient, "REDCap's answer is not a version number", "", nil)
	}
	return v, nil
}

// ExportFieldNames lists the export column names (checkbox choices expanded,
// <form>_complete included, file and descriptive fields left out).
func (c *Client) ExportFieldNames(ctx context.Context) ([]messages.ExportFieldName, error) {
	var out []messages.ExportFieldName
	return out, c.exportJSON(ctx, "export field names", content("exportFieldNames"), &out)
}

// ExportDAGs lists the data access groups.
func (c *Client) ExportDAGs(ctx context.Context) ([]messages.DAG, error) {
	var out []messages.DAG
	return out, c.exportJSON(ctx, "export DAGs", content("dag"), &out)
}

// LogEntry is one row of Export Logging (newest first). Details can hold
// field values (`field = 'value'`): keep it inside the trust boundary.
type LogEntry struct {
	Timestamp string `json:"timestamp"` // "YYYY-MM-DD HH:MM", server time
	Username  string `json:"username"`
	Action    string `json:"action"`
	Details   string `json:"details"`
	Record    string `json:"record"`
}

// LogParams filter Export Logging. Zero times are unset; REDCap matches
// them to the minute.
type LogParams struct {
	Begin, End time.Time
	Record     string
	// LogType is one of export, manage, user, record, record_add,
	// record_edit, record_delete, lock_record, page_view; "" = all.
	LogType string
}

const logTime = "2006-01-02 15:04"

// ExportLogging exports the project's log (needs the Logging right).
func (c *Client) ExportLogging(ctx context.Context, p LogParams) ([]LogEntry, error) {
	f := content("log")
	if p.LogType != "" {
		f.Set("logtype", p.LogType)
	}
	if p.Record != "" {
		f.Set("record", p.Record)
	}
	if !p.Begin.IsZero() {
		f.Set("beginTime", p.Begin.Format(logTime))
	}
	if !p.End.IsZero() {
		f.Set("endTime", p.End.Format(logTime))
	}
	var raw []map[string]any
	if err := c.exportJSON(ctx, "export logging", f, &raw); err != nil {
		return nil, err
	}
	out := make([]LogEntry, len(raw))
	for i, m := range raw {
		out[i] = LogEntry{Timestamp: str(m["timestamp"]), Username: str(m["username"]), Action: str(m["action"]),
			Details: str(m["details"]), Record: str(m["record"])}
	}
	return out, nil
}

func str(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case nil:
		return ""
	case float64, json.Number, bool:
		b, _ := json.Marshal(x)
		return string(b)
	}
	return ""
}

// importJSON sends data as JSON with content (and action=import where
// REDCap needs it) and reads the count.
func (c *Client) importJSON(ctx context.Context, call string, f url.Values, data any) (int, error) {
	b, err := json.Marshal(data)
	if err != nil {
		return 0, &Error{Site: c.site, Call: call, Kind: KindPermanent, Message: "cannot encode the data as JSON", Err: jsonErrNoValue(err)}
	}
	f.Set("format", "json")
	f.Set("returnFormat", "json")
	f.Set("data", string(b))
	body, err := c.post(ctx, call, f, bodyText)
	if err != nil {
		return 0, err
	}
	return c.parseCount(call, body)
}

// ImportMetadata replaces the project's data dictionary (development
// projects only); returns the number of fields.
func (c *Client) ImportMetadata(ctx context.Context, fields []messages.Field) (int, error) {
	return c.importJSON(ctx, "import metadata", content("metadata"), fields)
}

// ImportArms adds or renames arms.
func (c *Client) ImportArms(ctx context.Context, arms []messages.Arm) (int, error) {
	f := content("arm")
	f.Set("action", "import")
	f.Set("override", "0")
	return c.importJSON(ctx, "import arms", f, arms)
}

// ImportEvents adds or updates events.
func (c *Client) ImportEvents(ctx context.Context, events []messages.Event) (int, error) {
	f := content("event")
	f.Set("action", "import")
	f.Set("override", "0")
	return c.importJSON(ctx, "import events", f, events)
}

// ImportFormEventMapping sets which forms each event holds.
func (c *Client) ImportFormEventMapping(ctx context.Context, m []messages.FormEvent) (int, error) {
	return c.importJSON(ctx, "import form-event mapping", content("formEventMapping"), m)
}

// ImportRepeating sets the repeating instruments and events.
func (c *Client) ImportRepeating(ctx context.Context, r []messages.RepeatingForm) (int, error) {
	return c.importJSON(ctx, "import repeating instruments and events", content("repeatingFormsEvents"), r)
}
