package redcapsim

import (
	"bytes"
	"net/http"
	"strings"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/tools/redcapsim/odm"
)

func (c *call) exportProjectXML(w http.ResponseWriter) error {
	p := c.proj
	p.mu.RLock()
	defer p.mu.RUnlock()
	var recs []*record
	if !c.p.boolean("returnMetadataOnly") {
		spec, err := c.resolveExport()
		if err != nil {
			return err
		}
		recs = spec.records
	}
	var buf bytes.Buffer
	if err := odm.Write(&buf, p.odmProject(c.s.opts.Version, recs), recs != nil, c.s.now().Format("2006-01-02T15:04:05")); err != nil {
		return err
	}
	writeBody(w, "xml", buf.String())
	return nil
}

// createProjectAPI is content=project with data and a super token: it
// creates a project (from the odm parameter when given: fields, forms,
// events, arms, mapping, repeats, DAGs, surveys and data) and answers with
// exactly the new project's 32-character API token, of a user with full
// rights. Without odm the project gets REDCap's defaults: one instrument
// with a record_id field (and, longitudinal, one arm with one event).
func (s *Server) createProjectAPI(w http.ResponseWriter, q params, rf string) {
	format := q.format()
	if format == "odm" {
		format = "xml"
	}
	rows, notArray, err := parseData(q.str("data"), format, "flat", ',')
	switch {
	case err != nil || notArray || len(rows) == 0:
		writeError(w, rf, 400, "The data being imported is not formatted correctly. Send the project's attributes, as in [{\"project_title\":\"My project\",\"purpose\":\"0\"}].")
		return
	case len(rows) > 1:
		writeError(w, rf, 400, "Only one project can be created at a time using the API 'Create Project' method. It appears that you have provided attributes for more than one project in the API request.")
		return
	}
	attrs := rows[0]
	title := strings.TrimSpace(attrs["project_title"])
	purpose := strings.TrimSpace(attrs["purpose"])
	if title == "" || len(purpose) != 1 || purpose < "0" || purpose > "4" {
		writeError(w, rf, 400, "You must provide a value for 'project_title' and 'purpose'. Also, 'purpose' must have a value of 0, 1, 2, 3, or 4.")
		return
	}
	if purpose == "1" && strings.TrimSpace(attrs["purpose_other"]) == "" {
		writeError(w, rf, 400, "You must provide some text for 'purpose_other' since you specified 'purpose' as '1' (Other).")
		return
	}
	var spec ProjectSpec
	var data []messages.Row
	if x := q.str("odm"); x != "" {
		op, err := odm.Parse(strings.NewReader(x))
		if err != nil {
			writeError(w, rf, 400, "The project XML in the odm parameter could not be read: "+err.Error())
			return
		}
		spec, data = specFromODM(op), op.Rows
		inferDAGIDs(&spec, data)
	} else {
		spec.Fields = []messages.Field{{FieldName: "record_id", FormName: "my_first_instrument", FieldType: "text", FieldLabel: "Record ID"}}
		spec.Instruments = []messages.Instrument{{InstrumentName: "my_first_instrument", InstrumentLabel: "My First Instrument"}}
		spec.Longitudinal = attrs["is_longitudinal"] == "1"
		spec.Autonumbering = true // REDCap's default for a new project
	}
	spec.Title = title
	spec.Purpose = atoiDefault(purpose, spec.Purpose)
	if v, ok := attrs["surveys_enabled"]; ok {
		spec.SurveysEnabled = v == "1"
	}
	if v, ok := attrs["record_autonumbering_enabled"]; ok {
		spec.Autonumbering = v == "1"
	}
	id, err := s.CreateProject(spec)
	if err != nil {
		writeError(w, rf, 400, "The project could not be created: "+err.Error())
		return
	}
	if len(data) > 0 {
		if err := s.seed(id, data); err != nil {
			s.dropProject(id) // all or nothing
			writeError(w, rf, 400, "The project could not be created because its data could not be imported: "+err.Error())
			return
		}
	}
	tok := newToken()
	if err := s.AddToken(id, tok, FullRights(), ""); err != nil {
		writeError(w, rf, 500, "")
		return
	}
	writeBody(w, "csv", tok)
}
