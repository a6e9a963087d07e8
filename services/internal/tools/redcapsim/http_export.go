package redcapsim

import (
	"bufio"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// exportSpec is a resolved record export request.
type exportSpec struct {
	cols          []int // storage columns in output order
	withID        bool  // cols[0] is the record-ID column
	withEvent     bool
	withRepeat    bool
	withDAG       bool
	withSurvey    bool
	label         bool
	labelHeaders  bool
	checkboxLabel bool
	blankGray     bool
	events        []bool // nil = all
	records       []*record
	logic         *logicExpr // longitudinal: filterLogic applies per row
	proj          *project
}

// selectColumns resolves fields/forms into storage columns, validating names
// with REDCap's 400 texts.
func (p *project) selectColumns(fields, forms []string) ([]int, error) {
	if len(fields) == 0 && len(forms) == 0 {
		all := make([]int, len(p.cols))
		for i := range all {
			all[i] = i
		}
		return all, nil
	}
	want := make([]bool, len(p.cols))
	var bad []string
	dataFields := 0
	for _, f := range fields {
		if i, ok := p.fieldByName[f]; ok {
			if p.finfo[i].FieldType == "descriptive" {
				continue
			}
			dataFields++
			for _, c := range p.finfo[i].cols {
				want[c] = true
			}
			continue
		}
		if c, ok := p.colByName[f]; ok && p.cols[c].kind != colSurveyTS {
			dataFields++
			want[c] = true
			continue
		}
		bad = append(bad, f)
	}
	if len(bad) > 0 {
		return nil, errorf(400, `The following values in the parameter "fields" are not valid: `+quoteList(bad))
	}
	if len(fields) > 0 && dataFields == 0 && len(forms) == 0 {
		return nil, errorf(400, `The variables provided in the parameter "fields" are not valid fields that contain data. This might happen if you only provided variables for Descriptive fields.`)
	}
	for _, f := range forms {
		fi, ok := p.formByName[f]
		if !ok {
			bad = append(bad, f)
			continue
		}
		for _, c := range p.forms[fi].cols {
			want[c] = true
		}
	}
	if len(bad) > 0 {
		return nil, errorf(400, `The following values in the parameter "forms" are not valid: `+quoteList(bad))
	}
	var out []int
	for i, w := range want {
		if w {
			out = append(out, i)
		}
	}
	return out, nil
}

func quoteList(vals []string) string {
	q := make([]string, len(vals))
	for i, v := range vals {
		q[i] = "'" + v + "'"
	}
	return strings.Join(q, ", ")
}

// surveyColumns adds the <form>_timestamp columns of the survey forms the
// selection touches (exportSurveyFields=true), or drops every one of them.
func (p *project) surveyColumns(cols []int, with bool) []int {
	touched := make([]bool, len(p.forms))
	out := cols[:0:0]
	for _, ci := range cols {
		if p.cols[ci].kind == colSurveyTS {
			continue
		}
		touched[p.cols[ci].form] = true
		out = append(out, ci)
	}
	if !with {
		return out
	}
	for fi, sv := range p.surveyOf {
		if sv != nil && touched[fi] {
			out = append(out, p.colByName[p.forms[fi].name+"_timestamp"])
		}
	}
	slices.Sort(out)
	return out
}

// parseRangeTime parses dateRangeBegin/End: Y-M-D with an optional H:M or
// H:M:S, "-" or "/", space or T. ok is false when it cannot be parsed.
func parseRangeTime(s string, end bool, loc *time.Location) (time.Time, bool) {
	s = strings.TrimSpace(strings.ReplaceAll(s, "/", "-"))
	s = strings.Replace(s, "T", " ", 1)
	for _, layout := range []string{"2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, loc); err == nil {
			if layout == "2006-01-02" && end {
				t = t.Add(24*time.Hour - time.Second)
			}
			return t, true
		}
	}
	return time.Time{}, false
}

// resolveExport builds the export spec from the request. Callers hold p.mu.
func (c *call) resolveExport() (*exportSpec, error) {
	p := c.proj
	q := c.p
	if c.acc.noExport(p.forms) {
		return nil, errNoAccessExport
	}
	fields := q.array("fields", true)
	cols, err := p.selectColumns(fields, q.array("forms", true))
	if err != nil {
		return nil, err
	}
	cols = p.surveyColumns(cols, p.surveys && q.boolean("exportSurveyFields"))
	if cols = p.exportableColumns(c.acc, cols); len(cols) == 0 {
		return nil, errorf(400, "The API request cannot complete because all the fields you have specified are fields that your data export rights do not allow you to export.")
	}
	spec := &exportSpec{
		cols:          cols,
		withID:        len(cols) > 0 && cols[0] == 0,
		withEvent:     p.longitudinal,
		withRepeat:    p.hasRepeat,
		label:         q.oneOf("rawOrLabel", "raw", "raw", "label") == "label",
		labelHeaders:  q.oneOf("rawOrLabelHeaders", "raw", "raw", "label") == "label",
		checkboxLabel: q.boolean("exportCheckboxLabel"),
		blankGray:     q.boolean("exportBlankForGrayFormStatus"),
		withSurvey:    p.surveys && q.boolean("exportSurveyFields"),
	}
	dag := c.dagIndex()
	spec.withDAG = q.boolean("exportDataAccessGroups") && len(p.dags) > 0 && dag < 0
	if spec.withDAG && !c.acc.can("data_access_groups") {
		return nil, needBoth("API Export", "Data Access Groups")
	}
	if p.longitudinal {
		if evs := q.array("events", true); len(evs) > 0 {
			spec.events = make([]bool, p.numEvents())
			var bad []string
			for _, e := range evs {
				i, ok := p.eventByName[e]
				if !ok {
					bad = append(bad, e)
					continue
				}
				spec.events[i] = true
			}
			if len(bad) > 0 {
				return nil, errorf(400, `The following values in the parameter "events" are not valid: `+quoteList(bad))
			}
		}
	}
	var logic *logicExpr
	if fl := strings.TrimSpace(q.str("filterLogic")); fl != "" {
		logic, err = parseLogic(fl, p)
		if err != nil {
			return nil, errorf(400, "The parameter filterLogic is not valid: "+err.Error())
		}
	}

	// Records: the requested ones (unknown ignored) or all, in export order.
	var recs []*record
	if ids := q.array("records", false); len(ids) > 0 {
		seen := map[string]bool{}
		for _, id := range ids {
			if r := p.records[id]; r != nil && !seen[id] {
				seen[id] = true
				recs = append(recs, r)
			}
		}
		sortRecords(recs)
	} else {
		recs = p.sortedRecords()
	}
	filtered := recs[:0:0]
	changed := c.dateRangeSet()
	for _, r := range recs {
		if dag >= 0 && r.dag != dag {
			continue
		}
		if changed != nil && !changed[r.id] {
			continue
		}
		filtered = append(filtered, r)
	}
	if logic != nil {
		keep := filtered[:0:0]
		for _, r := range filtered {
			if logic.matchesRecord(p, r) {
				keep = append(keep, r)
			}
		}
		filtered = keep
	}
	spec.records = filtered
	if logic != nil && p.longitudinal {
		spec.logic, spec.proj = logic, p
	}
	return spec, nil
}

// dateRangeSet returns the IDs changed within dateRangeBegin..End, or nil
// when no usable bound was given.
func (c *call) dateRangeSet() map[string]bool {
	loc := c.s.now().Location()
	bs, es := c.p.str("dateRangeBegin"), c.p.str("dateRangeEnd")
	b, bok := parseRangeTime(bs, false, loc)
	e, eok := parseRangeTime(es, true, loc)
	if !bok && !eok {
		return nil
	}
	if !bok {
		b = time.Date(2004, 8, 1, 0, 0, 0, 0, loc)
	}
	if !eok {
		e = c.s.now()
	}
	bu, eu := b.Unix(), e.Unix()
	out := map[string]bool{}
	for i := range c.proj.log {
		l := &c.proj.log[i]
		if l.isRecordChange() && l.ts >= bu && l.ts <= eu {
			out[l.record] = true
		}
	}
	return out
}

// header returns the output column names.
func (p *project) header(spec *exportSpec) []string {
	var h []string
	i := 0
	if spec.withID {
		h = append(h, p.headerName(spec, 0))
		i = 1
	}
	if spec.withEvent {
		h = append(h, pick(spec.labelHeaders, "Event Name", "redcap_event_name"))
	}
	if spec.withRepeat {
		h = append(h, pick(spec.labelHeaders, "Repeat Instrument", "redcap_repeat_instrument"), pick(spec.labelHeaders, "Repeat Instance", "redcap_repeat_instance"))
	}
	if spec.withDAG {
		h = append(h, pick(spec.labelHeaders, "Data Access Group", "redcap_data_access_group"))
	}
	if spec.withSurvey {
		h = append(h, pick(spec.labelHeaders, "Survey Identifier", "redcap_survey_identifier"))
	}
	for _, ci := range spec.cols[i:] {
		h = append(h, p.headerName(spec, ci))
	}
	return h
}

func pick(b bool, yes, no string) string {
	if b {
		return yes
	}
	return no
}

func (p *project) headerName(spec *exportSpec, ci int) string {
	col := p.cols[ci]
	if !spec.labelHeaders {
		return col.name
	}
	switch col.kind {
	case colComplete:
		return "Complete?"
	case colSurveyTS:
		return "Survey Timestamp"
	case colCheckbox:
		return p.finfo[col.field].FieldLabel + " (choice=" + col.label + ")"
	}
	return p.finfo[col.field].FieldLabel
}

// cellValue is the exported value of one storage column on one row.
func (p *project) cellValue(spec *exportSpec, rec *record, r *row, ci int) string {
	if ci == 0 {
		return rec.id
	}
	col := &p.cols[ci]
	if !p.applies(col.form, r) {
		return ""
	}
	v := r.cell(ci)
	switch col.kind {
	case colSurveyTS:
		return v
	case colFile:
		return p.docName(v) // flat exports give the file name (EAV the doc_id)
	case colCheckbox:
		checked := v == "1"
		if spec.label {
			if spec.checkboxLabel {
				if checked {
					return col.label
				}
				return ""
			}
			if checked {
				return "Checked"
			}
			return "Unchecked"
		}
		if checked {
			return "1"
		}
		return "0"
	case colComplete:
		if v == "" {
			if spec.blankGray {
				return ""
			}
			v = "0"
		}
		if spec.label {
			switch v {
			case "0":
				return "Incomplete"
			case "1":
				return "Unverified"
			case "2":
				return "Complete"
			}
		}
		return v
	}
	if spec.label && v != "" {
		if fi := &p.finfo[col.field]; fi.choiceSet != nil {
			if l, ok := fi.choiceSet[v]; ok {
				return l
			}
		}
	}
	return v
}

func (p *project) repeatInstrument(spec *exportSpec, r *row) string {
	if r.rep < 0 {
		return ""
	}
	if spec.label {
		return p.forms[r.rep].label
	}
	return p.forms[r.rep].name
}

func (p *project) dagValue(spec *exportSpec, rec *record) string {
	if rec.dag < 0 {
		return ""
	}
	if spec.label {
		return p.dags[rec.dag].Name
	}
	return p.dags[rec.dag].Unique
}

func (c *call) exportRecords(w http.ResponseWriter) error {
	if err := c.writeRecords(w); err != nil {
		return err
	}
	// REDCap logs every API export; its time is the server's clock, which
	// clients compare with the HTTP Date header.
	p := c.proj
	p.mu.Lock()
	p.log = append(p.log, logEntry{ts: c.s.now().Unix(), user: c.acc.user, action: "Export data (API)", kind: logExport})
	p.mu.Unlock()
	return nil
}

func (c *call) writeRecords(w http.ResponseWriter) error {
	p := c.proj
	p.mu.RLock()
	defer p.mu.RUnlock()
	spec, err := c.resolveExport()
	if err != nil {
		return err
	}
	format := c.p.format()
	eav := c.p.oneOf("type", "flat", "flat", "eav") == "eav"
	w.Header().Set("Content-Type", contentType(map[string]string{"json": "json", "csv": "csv"}[format]))
	w.WriteHeader(http.StatusOK)
	bw := bufio.NewWriterSize(w, 64<<10)
	var rows int64
	switch {
	case eav:
		rows = p.writeEAV(bw, spec, format)
	case format == "json":
		rows = p.writeFlatJSON(bw, spec)
	case format == "csv":
		rows = p.writeFlatCSV(bw, spec, byte(c.p.csvDelimiter()))
	default:
		rows = p.writeFlatXML(bw, spec)
	}
	_ = bw.Flush()
	c.s.recExported.Add(int64(len(spec.records)))
	c.s.rowsExported.Add(rows)
	return nil
}

// visibleRows yields the rows of a record that the export includes.
func (spec *exportSpec) rowVisible(rec *record, r *row) bool {
	if spec.events != nil && !spec.events[r.ev] {
		return false
	}
	return spec.logic == nil || spec.logic.eval(spec.proj, rec, r)
}

func (p *project) writeFlatJSON(bw *bufio.Writer, spec *exportSpec) int64 {
	hdr := p.header(spec)
	keys := make([][]byte, len(hdr))
	for i, h := range hdr {
		k := appendJSONString(nil, h)
		keys[i] = append(k, ':')
	}
	var n int64
	buf := make([]byte, 0, 4096)
	bw.WriteByte('[')
	for _, rec := range spec.records {
		for ri := range rec.rows {
			r := &rec.rows[ri]
			if !spec.rowVisible(rec, r) {
				continue
			}
			buf = buf[:0]
			if n > 0 {
				buf = append(buf, ',')
			}
			buf = append(buf, '{')
			k := 0
			field := func(v string) {
				if k > 0 {
					buf = append(buf, ',')
				}
				buf = append(buf, keys[k]...)
				buf = appendJSONString(buf, v)
				k++
			}
			start := 0
			if spec.withID {
				field(rec.id)
				start = 1
			}
			if spec.withEvent {
				field(pick(spec.label, p.eventLabel(int(r.ev)), p.eventUnique(int(r.ev))))
			}
			if spec.withRepeat {
				field(p.repeatInstrument(spec, r))
				if r.inst > 0 {
					buf = append(buf, ',')
					buf = append(buf, keys[k]...)
					buf = strconv.AppendInt(buf, int64(r.inst), 10)
					k++
				} else {
					field("")
				}
			}
			if spec.withDAG {
				field(p.dagValue(spec, rec))
			}
			if spec.withSurvey {
				field(p.surveyIdents[rec.id])
			}
			for _, ci := range spec.cols[start:] {
				field(p.cellValue(spec, rec, r, ci))
			}
			buf = append(buf, '}')
			bw.Write(buf)
			n++
		}
	}
	bw.WriteByte(']')
	return n
}

func (p *project) flatCells(spec *exportSpec, rec *record, r *row, out []string) []string {
	out = out[:0]
	start := 0
	if spec.withID {
		out = append(out, rec.id)
		start = 1
	}
	if spec.withEvent {
		out = append(out, pick(spec.label, p.eventLabel(int(r.ev)), p.eventUnique(int(r.ev))))
	}
	if spec.withRepeat {
		out = append(out, p.repeatInstrument(spec, r))
		if r.inst > 0 {
			out = append(out, strconv.Itoa(int(r.inst)))
		} else {
			out = append(out, "")
		}
	}
	if spec.withDAG {
		out = append(out, p.dagValue(spec, rec))
	}
	if spec.withSurvey {
		out = append(out, p.surveyIdents[rec.id])
	}
	for _, ci := range spec.cols[start:] {
		out = append(out, p.cellValue(spec, rec, r, ci))
	}
	return out
}

func (p *project) writeFlatCSV(bw *bufio.Writer, spec *exportSpec, delim byte) int64 {
	hdr := p.header(spec)
	buf := make([]byte, 0, 4096)
	for i, h := range hdr {
		if i > 0 {
			buf = append(buf, delim)
		}
		buf = append(buf, h...)
	}
	buf = append(buf, '\n')
	bw.Write(buf)
	var n int64
	var cells []string
	for _, rec := range spec.records {
		for ri := range rec.rows {
			r := &rec.rows[ri]
			if !spec.rowVisible(rec, r) {
				continue
			}
			cells = p.flatCells(spec, rec, r, cells)
			buf = buf[:0]
			for i, v := range cells {
				if i > 0 {
					buf = append(buf, delim)
				}
				buf = appendCSVField(buf, v, delim)
			}
			buf = append(buf, '\n')
			bw.Write(buf)
			n++
		}
	}
	return n
}

func (p *project) writeFlatXML(bw *bufio.Writer, spec *exportSpec) int64 {
	hdr := p.header(spec)
	bw.WriteString(xmlHeader + "\n<records>\n")
	var n int64
	var cells []string
	for _, rec := range spec.records {
		for ri := range rec.rows {
			r := &rec.rows[ri]
			if !spec.rowVisible(rec, r) {
				continue
			}
			cells = p.flatCells(spec, rec, r, cells)
			bw.WriteString("<item>")
			for i, v := range cells {
				bw.WriteString("<" + hdr[i] + "><![CDATA[" + strings.ReplaceAll(v, "]]>", "]]]]><![CDATA[>") + "]]></" + hdr[i] + ">")
			}
			bw.WriteString("</item>\n")
			n++
		}
	}
	bw.WriteString("</records>\n")
	return n
}

// eavRow is one EAV output row.
type eavRow struct {
	record, event, repInstr string
	inst                    int32
	field, value            string
}

func (p *project) eavRows(spec *exportSpec, fn func(eavRow)) {
	start := 0
	if spec.withID {
		start = 1
	}
	for _, rec := range spec.records {
		for ri := range rec.rows {
			r := &rec.rows[ri]
			if !spec.rowVisible(rec, r) {
				continue
			}
			base := eavRow{record: rec.id, inst: r.inst, repInstr: p.repeatInstrument(spec, r)}
			if p.longitudinal {
				base.event = pick(spec.label, p.eventLabel(int(r.ev)), p.eventUnique(int(r.ev)))
			}
			if spec.withID && r.rep == repNone {
				e := base
				e.field, e.value = p.cols[0].name, rec.id
				fn(e)
			}
			for _, ci := range spec.cols[start:] {
				col := &p.cols[ci]
				if !p.applies(col.form, r) {
					continue
				}
				v := r.cell(ci)
				if v == "" {
					continue
				}
				e := base
				switch col.kind {
				case colCheckbox:
					e.field = p.finfo[col.field].FieldName
					e.value = col.code
					if spec.label {
						e.value = col.label
					}
				case colComplete:
					e.field = col.name
					e.value = p.cellValue(spec, rec, r, ci)
				case colFile:
					e.field, e.value = col.name, v // EAV exports give the doc_id
				default:
					e.field = col.name
					e.value = p.cellValue(spec, rec, r, ci)
				}
				fn(e)
			}
		}
	}
}

func (p *project) writeEAV(bw *bufio.Writer, spec *exportSpec, format string) int64 {
	hasRep := false
	p.eavRows(spec, func(e eavRow) {
		if e.inst > 0 {
			hasRep = true
		}
	})
	hdr := []string{"record"}
	if p.longitudinal {
		hdr = append(hdr, "redcap_event_name")
	}
	if hasRep {
		hdr = append(hdr, "redcap_repeat_instrument", "redcap_repeat_instance")
	}
	hdr = append(hdr, "field_name", "value")
	cells := func(e eavRow) []string {
		out := []string{e.record}
		if p.longitudinal {
			out = append(out, e.event)
		}
		if hasRep {
			inst := ""
			if e.inst > 0 {
				inst = strconv.Itoa(int(e.inst))
			}
			out = append(out, e.repInstr, inst)
		}
		return append(out, e.field, e.value)
	}
	var n int64
	switch format {
	case "json":
		bw.WriteByte('[')
		var buf []byte
		p.eavRows(spec, func(e eavRow) {
			buf = buf[:0]
			if n > 0 {
				buf = append(buf, ',')
			}
			buf = append(buf, '{')
			for i, v := range cells(e) {
				if i > 0 {
					buf = append(buf, ',')
				}
				buf = appendJSONString(buf, hdr[i])
				buf = append(buf, ':')
				if hdr[i] == "redcap_repeat_instance" && e.inst > 0 {
					buf = strconv.AppendInt(buf, int64(e.inst), 10)
				} else {
					buf = appendJSONString(buf, v)
				}
			}
			buf = append(buf, '}')
			bw.Write(buf)
			n++
		})
		bw.WriteByte(']')
	case "csv":
		var rows [][]string
		p.eavRows(spec, func(e eavRow) { rows = append(rows, cells(e)); n++ })
		bw.WriteString(csvTable(hdr, rows))
	default:
		var rows [][]string
		p.eavRows(spec, func(e eavRow) { rows = append(rows, cells(e)); n++ })
		bw.WriteString(xmlTable(hdr, rows))
	}
	return n
}
