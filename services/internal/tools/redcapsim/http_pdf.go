package redcapsim

import (
	"bytes"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/redcap-relay/relay/services/internal/tools/redcapsim/pdf"
)

// exportPDF is content=pdf: one page (or more, for long instruments) per
// instrument, blank or with a record's data (record, event, instrument,
// repeat_instance), or with every record's (allRecords). Data export rights
// apply: fields the user may not export are left out; compactDisplay
// leaves out fields without data.
func (c *call) exportPDF(w http.ResponseWriter) error {
	b, name, err := c.buildPDF()
	if err != nil {
		return err
	}
	p := c.proj
	p.mu.Lock()
	p.log = append(p.log, logEntry{ts: c.s.now().Unix(), user: c.acc.user, action: "Download PDF (API)", record: c.p.str("record"), kind: logManage})
	p.mu.Unlock()
	w.Header().Set("Content-Type", `application/pdf; name="`+name+`"`)
	w.Header().Set("Content-Length", strconv.Itoa(b.Len()))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b.Bytes())
	return nil
}

func (c *call) buildPDF() (*bytes.Buffer, string, error) {
	p := c.proj
	p.mu.RLock()
	defer p.mu.RUnlock()
	if c.acc.noExport(p.forms) {
		return nil, "", errNoAccessExport
	}
	forms := make([]int, 0, len(p.forms))
	if name := c.p.str("instrument"); name != "" && !c.p.has("allRecords") {
		fi, ok := p.formByName[name]
		if !ok {
			return nil, "", errorf(400, "Invalid instrument")
		}
		forms = append(forms, fi)
	} else {
		for fi := range p.forms {
			forms = append(forms, fi)
		}
	}
	compact := c.p.boolean("compactDisplay")
	var pages []pdf.Page
	_, allRecords := c.p.v["allRecords"]
	recID := c.p.str("record")
	switch {
	case allRecords || recID != "":
		recs, ev, inst, err := c.pdfRecords(allRecords, recID)
		if err != nil {
			return nil, "", err
		}
		for _, rec := range recs {
			for ri := range rec.rows {
				r := &rec.rows[ri]
				if (ev >= 0 && int(r.ev) != ev) || (inst > 0 && r.rep != repNone && int(r.inst) != inst) {
					continue
				}
				for _, fi := range forms {
					if p.applies(fi, r) {
						pages = append(pages, pdf.Split(p.pdfHeading(rec, r, fi), p.pdfLines(c.acc, fi, rec, r, compact))...)
					}
				}
			}
		}
	default:
		for _, fi := range forms {
			pages = append(pages, pdf.Split(p.forms[fi].label, p.pdfLines(c.acc, fi, nil, nil, false))...)
		}
	}
	var b bytes.Buffer
	if err := pdf.Write(&b, p.title, pages); err != nil {
		return nil, "", err
	}
	return &b, strings.NewReplacer(`"`, "", "/", "_").Replace(p.title) + ".pdf", nil
}

// pdfRecords resolves which records (and event and instance) a PDF with
// data shows. Callers hold c.proj.mu.
func (c *call) pdfRecords(all bool, id string) ([]*record, int, int, error) {
	p := c.proj
	dag := c.dagIndex()
	var recs []*record
	for _, r := range p.sortedRecords() {
		if (all || r.id == id) && (dag < 0 || r.dag == dag) {
			recs = append(recs, r)
		}
	}
	if !all && len(recs) == 0 {
		return nil, 0, 0, errorf(400, "The record \""+id+"\" does not exist")
	}
	ev, inst := -1, 0
	if all {
		return recs, ev, inst, nil
	}
	if e := c.p.str("event"); e != "" && p.longitudinal {
		i, ok := p.eventByName[e]
		if !ok {
			return nil, 0, 0, errorf(400, "Invalid event")
		}
		ev = i
	}
	if n, err := strconv.Atoi(c.p.str("repeat_instance")); err == nil && n > 0 {
		inst = n
	}
	return recs, ev, inst, nil
}

func (p *project) pdfHeading(rec *record, r *row, fi int) string {
	h := fmt.Sprintf("%s - record %s", p.forms[fi].label, rec.id)
	if p.longitudinal {
		h += " - " + p.eventLabel(int(r.ev))
	}
	if r.rep != repNone {
		h += fmt.Sprintf(" - instance %d", r.inst)
	}
	return h
}

// pdfLines lists an instrument's fields: "label: value", or on a blank
// form the label with a line to write on (and the choices).
func (p *project) pdfLines(a *access, fi int, rec *record, r *row, compact bool) []string {
	spec := &exportSpec{label: true}
	var out []string
	for _, i := range p.forms[fi].fields {
		info := &p.finfo[i]
		if !p.exportableColumn(a, info.cols[0]) {
			continue
		}
		label := info.FieldLabel
		if label == "" {
			label = info.FieldName
		}
		if r == nil {
			out = append(out, label+": ______________________")
			for _, ch := range info.choices {
				out = append(out, "    [ ] "+ch.label)
			}
			continue
		}
		var vals []string
		for _, ci := range info.cols {
			v := p.cellValue(spec, rec, r, ci)
			if p.cols[ci].kind == colCheckbox {
				if v != "Checked" {
					continue
				}
				v = p.cols[ci].label
			}
			if v != "" {
				vals = append(vals, v)
			}
		}
		if compact && len(vals) == 0 {
			continue
		}
		out = append(out, label+": "+strings.Join(vals, ", "))
	}
	if r != nil {
		out = append(out, "", "Form status: "+p.cellValue(spec, rec, r, p.forms[fi].completeCol))
	}
	return out
}
