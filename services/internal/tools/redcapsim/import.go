package redcapsim

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/redcap-relay/relay/messages"
)

// inRow is one incoming flat row: column name -> value (present keys only).
type inRow map[string]string

// parseData decodes the data parameter into flat rows. notArray is set for
// a JSON object instead of an array (REDCap answers 200 with count 0).
func parseData(data, format, typ string, delim rune) (rows []inRow, notArray bool, err error) {
	switch format {
	case "json":
		rows, notArray, err = parseJSONRows(data)
	case "csv":
		rows, err = parseCSVRows(data, delim)
	default:
		rows, err = parseXMLRows(data)
	}
	if err != nil || typ != "eav" {
		return rows, notArray, err
	}
	return eavToFlat(rows)
}

func parseJSONRows(data string) ([]inRow, bool, error) {
	trimmed := strings.TrimSpace(data)
	if strings.HasPrefix(trimmed, "{") {
		var obj map[string]any
		if err := json.Unmarshal([]byte(trimmed), &obj); err == nil {
			return nil, true, nil
		}
	}
	dec := json.NewDecoder(strings.NewReader(trimmed))
	dec.UseNumber()
	var raw []map[string]any
	if err := dec.Decode(&raw); err != nil {
		return nil, false, errorf(400, "The data being imported is not formatted correctly. PHP error from JSON decoder: Syntax error ("+jsonErrText(err)+"). The JSON must be in an array, as in [{ ... }].")
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, false, errorf(400, "The data being imported is not formatted correctly. PHP error from JSON decoder: Syntax error (trailing data after the array). The JSON must be in an array, as in [{ ... }].")
	}
	rows := make([]inRow, 0, len(raw))
	for i, m := range raw {
		r := make(inRow, len(m))
		for k, v := range m {
			switch x := v.(type) {
			case nil:
				r[k] = ""
			case string:
				r[k] = x
			case json.Number:
				r[k] = x.String()
			case bool:
				if x {
					r[k] = "1"
				} else {
					r[k] = "0"
				}
			default:
				return nil, false, errorf(400, fmt.Sprintf("The data being imported is not formatted correctly. Item %d, key %q holds an array or object; every value must be a string or number. The JSON must be in an array, as in [{ ... }].", i+1, k))
			}
		}
		rows = append(rows, r)
	}
	return rows, false, nil
}

// jsonErrText describes a decode error without echoing the payload.
func jsonErrText(err error) string {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("at byte %d", se.Offset)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("a %s where an array of objects was expected, at byte %d", te.Value, te.Offset)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "unexpected end of data"
	}
	return "malformed JSON"
}

func parseCSVRows(data string, delim rune) ([]inRow, error) {
	data = strings.TrimPrefix(data, "\ufeff")
	cr := csv.NewReader(strings.NewReader(data))
	cr.Comma = delim
	cr.FieldsPerRecord = -1
	recs, err := cr.ReadAll()
	if err != nil {
		var pe *csv.ParseError
		line := 0
		if errors.As(err, &pe) {
			line = pe.Line
		}
		return nil, errorf(400, fmt.Sprintf("The data being imported is not formatted correctly. The CSV could not be parsed near line %d (check quoting).", line))
	}
	if len(recs) == 0 {
		return nil, nil
	}
	hdr := recs[0]
	for i := range hdr {
		hdr[i] = strings.TrimSpace(hdr[i])
	}
	rows := make([]inRow, 0, len(recs)-1)
	for li, rec := range recs[1:] {
		if len(rec) == 1 && rec[0] == "" {
			continue
		}
		if len(rec) != len(hdr) {
			return nil, errorf(400, fmt.Sprintf("The data being imported is not formatted correctly. Line %d has %d values but the header has %d columns.", li+2, len(rec), len(hdr)))
		}
		r := make(inRow, len(hdr))
		for i, h := range hdr {
			r[h] = rec[i]
		}
		rows = append(rows, r)
	}
	return rows, nil
}

func parseXMLRows(data string) ([]inRow, error) {
	dec := xml.NewDecoder(strings.NewReader(data))
	var rows []inRow
	var cur inRow
	var field string
	var text bytes.Buffer
	depth := 0
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, errorf(400, "The data being imported is not formatted correctly. Error: the XML could not be parsed ("+xmlErrText(err)+").")
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			switch depth {
			case 2:
				cur = inRow{}
			case 3:
				field = t.Name.Local
				text.Reset()
			}
		case xml.CharData:
			if depth == 3 {
				text.Write(t)
			}
		case xml.EndElement:
			switch depth {
			case 3:
				cur[field] = text.String()
			case 2:
				rows = append(rows, cur)
			}
			depth--
		}
	}
	return rows, nil
}

func xmlErrText(err error) string {
	var se *xml.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("line %d", se.Line)
	}
	return "malformed XML"
}

// eavToFlat groups EAV rows (record, field_name, value, ...) into flat rows.
func eavToFlat(rows []inRow) ([]inRow, bool, error) {
	type key struct{ rec, ev, ri, inst string }
	var order []key
	byKey := map[key]inRow{}
	for i, r := range rows {
		f, ok := r["field_name"]
		if !ok {
			return nil, false, errorf(400, fmt.Sprintf("The data being imported is not formatted correctly. EAV row %d has no field_name.", i+1))
		}
		k := key{r["record"], r["redcap_event_name"], r["redcap_repeat_instrument"], r["redcap_repeat_instance"]}
		fr, ok := byKey[k]
		if !ok {
			fr = inRow{"\x00record": k.rec}
			if _, has := r["redcap_event_name"]; has {
				fr["redcap_event_name"] = k.ev
			}
			if _, has := r["redcap_repeat_instrument"]; has {
				fr["redcap_repeat_instrument"] = k.ri
			}
			if _, has := r["redcap_repeat_instance"]; has {
				fr["redcap_repeat_instance"] = k.inst
			}
			byKey[k] = fr
			order = append(order, k)
		}
		fr[f] = r["value"]
	}
	out := make([]inRow, len(order))
	for i, k := range order {
		out[i] = byKey[k]
	}
	return out, false, nil
}

// importOpts are the import parameters.
type importOpts struct {
	overwrite  bool
	dateFormat string
	forceAuto  bool
	dag        int // the token's DAG, -1 none
	user       string
	trusted    bool // project loading: keep calc/file values, skip type checks
}

// plannedRow is a validated row ready to apply.
type plannedRow struct {
	rec     string
	ev, rep int
	inst    int
	newInst bool // redcap_repeat_instance "new"
	dagSet  bool
	dag     int
	vals    []colVal
}

type colVal struct {
	col int
	val string
}

type importResult struct {
	ids     []string // distinct records, first-seen order
	autoIDs [][2]string
}

type errLine struct {
	row, col               int
	rec, field, value, msg string
}

// validationError is REDCap's 400 with one CSV line per problem.
type validationError struct{ lines []errLine }

func (e *validationError) Error() string {
	texts := make([]string, len(e.lines))
	for i, l := range e.lines {
		texts[i] = csvLine(l.rec, l.field, l.value, l.msg)
	}
	return strings.Join(texts, "\n")
}

// redacted names record and field but never the value, for Go errors.
func (e *validationError) redacted() string {
	texts := make([]string, len(e.lines))
	for i, l := range e.lines {
		texts[i] = fmt.Sprintf("record %q field %q: %s", l.rec, l.field, l.msg)
	}
	return strings.Join(texts, "; ")
}

func csvLine(rec, field, value, msg string) string {
	q := func(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
	return q(rec) + "," + q(field) + "," + q(value) + "," + q(msg)
}

var ignoredPseudo = map[string]bool{"redcap_survey_identifier": true}

// planImport validates the rows and plans the changes without touching the
// project. Callers hold p.mu (write).
func (p *project) planImport(rows []inRow, o importOpts) ([]plannedRow, *importResult, error) {
	idField := p.recordIDField()
	// Unknown columns first: one structural message.
	unknown := map[string]bool{}
	hasID := false
	for _, r := range rows {
		for k := range r {
			switch {
			case k == idField || k == "\x00record":
				hasID = true
			case k == "redcap_event_name", k == "redcap_repeat_instrument", k == "redcap_repeat_instance", k == "redcap_data_access_group", ignoredPseudo[k]:
			case strings.HasSuffix(k, "_timestamp") && p.isForm(strings.TrimSuffix(k, "_timestamp")):
			default:
				if _, ok := p.colByName[k]; !ok {
					unknown[k] = true
				}
			}
		}
	}
	if len(unknown) > 0 {
		names := make([]string, 0, len(unknown))
		for k := range unknown {
			names = append(names, k)
		}
		sort.Strings(names)
		return nil, nil, errorf(400, "The following fields were not found in the project as real data fields: "+strings.Join(names, ", "))
	}
	if len(rows) > 0 && !hasID {
		return nil, nil, errorf(400, fmt.Sprintf("The record ID field (%s) is missing from the data being imported. Include it in every row.", idField))
	}
	// Event names.
	if p.longitudinal {
		bad := map[string]bool{}
		var badList []string
		for _, r := range rows {
			if e, ok := r["redcap_event_name"]; ok && e != "" {
				if _, ok := p.eventByName[e]; !ok && !bad[e] {
					bad[e] = true
					badList = append(badList, e)
				}
			}
		}
		if len(badList) > 0 {
			return nil, nil, errorf(400, "The following values of redcap_event_name are invalid: "+strings.Join(badList, ", "))
		}
	}

	var lines []errLine
	addErr := func(ri, col int, rec, field, value, msg string) {
		lines = append(lines, errLine{ri, col, rec, field, value, msg})
	}
	res := &importResult{}
	seen := map[string]bool{}
	autoMap := map[string]string{}
	nextNum := int64(-1)
	dagNext := map[int]int{}
	plan := make([]plannedRow, 0, len(rows))
	for ri, r := range rows {
		given, ok := r[idField]
		if !ok {
			given = r["\x00record"]
		}
		given = strings.TrimSpace(given)
		if given == "" {
			addErr(ri, 0, "", idField, "", "The record ID is blank. Every row needs a value in the record ID field.")
			continue
		}
		recID := given
		// Auto-numbering and DAG naming of new records.
		if o.forceAuto || (o.dag >= 0 && p.records[given] == nil) {
			if m, ok := autoMap[given]; ok {
				recID = m
			} else {
				if o.dag >= 0 {
					id := p.dags[o.dag].ID
					if k, a, _ := recordKey(given); !o.forceAuto && k == 1 && a == int64(id) {
						recID = given
					} else {
						if _, ok := dagNext[id]; !ok {
							name := p.nextRecordName(o.dag)
							_, _, n := recordKey(name)
							dagNext[id] = int(n)
						}
						recID = fmt.Sprintf("%d-%d", id, dagNext[id])
						dagNext[id]++
					}
				} else {
					if nextNum < 0 {
						nextNum, _ = strconv.ParseInt(p.nextRecordName(-1), 10, 64)
					}
					recID = strconv.FormatInt(nextNum, 10)
					nextNum++
				}
				autoMap[given] = recID
				if o.forceAuto {
					res.autoIDs = append(res.autoIDs, [2]string{recID, given})
				}
			}
		}
		existing := p.records[recID]
		if o.dag >= 0 && existing != nil && existing.dag != o.dag {
			addErr(ri, 0, recID, idField, given, "The record belongs to a Data Access Group that you are not assigned to, so you cannot modify it.")
			continue
		}
		pr := plannedRow{rec: recID, rep: repNone, dag: -1}
		if o.dag >= 0 && existing == nil {
			pr.dagSet, pr.dag = true, o.dag // a DAG user's new records join its DAG
		}
		// Event.
		if p.longitudinal {
			pr.ev = 0
			if e := r["redcap_event_name"]; e != "" {
				pr.ev = p.eventByName[e]
			}
		}
		// Repeat context.
		ri2, hasRI := r["redcap_repeat_instrument"]
		inst, hasInst := r["redcap_repeat_instance"]
		ri2, inst = strings.TrimSpace(ri2), strings.TrimSpace(inst)
		if hasRI && ri2 != "" {
			fi, ok := p.formByName[ri2]
			if !ok || !p.repForm[pr.ev][fi] {
				addErr(ri, 0, recID, "redcap_repeat_instrument", ri2, "The value is not a repeating instrument of this project"+p.eventSuffix(pr.ev)+".")
				continue
			}
			pr.rep = fi
		} else if p.repEv[pr.ev] {
			pr.rep = repEvent
		}
		if pr.rep != repNone {
			switch {
			case inst == "" && pr.rep == repEvent:
				pr.inst = 1
			case inst == "new":
				pr.newInst = true
			default:
				n, err := strconv.Atoi(inst)
				if err != nil || n < 1 {
					addErr(ri, 0, recID, "redcap_repeat_instance", inst, "The repeat instance must be a whole number of 1 or more.")
					continue
				}
				pr.inst = n
			}
		} else if hasInst && inst != "" {
			addErr(ri, 0, recID, "redcap_repeat_instance", inst, "A repeat instance was given for a row that is not a repeating instrument or event; leave it blank or give redcap_repeat_instrument.")
			continue
		}
		// DAG assignment.
		if d, ok := r["redcap_data_access_group"]; ok && d != "" {
			di, known := p.dagByName[d]
			switch {
			case !known:
				addErr(ri, 0, recID, "redcap_data_access_group", d, "The value is not a valid unique Data Access Group name in this project.")
				continue
			case o.dag >= 0 && di != o.dag:
				addErr(ri, 0, recID, "redcap_data_access_group", d, "You are assigned to a Data Access Group, so you cannot assign records to another group.")
				continue
			}
			pr.dagSet, pr.dag = true, di
		}
		// Values.
		tmp := fakeRow(pr)
		for k, v := range r {
			ci, ok := p.colByName[k]
			if !ok || ci == 0 {
				continue
			}
			col := &p.cols[ci]
			if v == "" {
				if o.overwrite && p.applies(col.form, &tmp) {
					pr.vals = append(pr.vals, colVal{ci, ""})
				}
				continue
			}
			if !p.designated[pr.ev][col.form] {
				addErr(ri, ci, recID, k, v, fmt.Sprintf("This field ('%s') exists on an instrument that is not designated for the event named '%s'. You are not allowed to import data for this field into this event.", fieldNameOf(p, col), p.eventDisplay(pr.ev)))
				continue
			}
			if !p.applies(col.form, &tmp) {
				addErr(ri, ci, recID, k, v, fmt.Sprintf("This field ('%s') is on the instrument '%s', which does not match the repeating instrument or event given on this row (redcap_repeat_instrument/redcap_repeat_instance).", fieldNameOf(p, col), p.forms[col.form].name))
				continue
			}
			nv, msg := v, ""
			if !o.trusted {
				nv, msg = p.checkValue(col, v, o.dateFormat)
			} else if col.kind == colCheckbox && v != "1" {
				nv = ""
			}
			if msg != "" {
				addErr(ri, ci, recID, k, v, msg)
				continue
			}
			pr.vals = append(pr.vals, colVal{ci, nv})
		}
		slices.SortFunc(pr.vals, func(a, b colVal) int { return a.col - b.col })
		plan = append(plan, pr)
		if !seen[recID] {
			seen[recID] = true
			res.ids = append(res.ids, recID)
		}
	}
	if len(lines) > 0 {
		sort.SliceStable(lines, func(a, b int) bool {
			if lines[a].row != lines[b].row {
				return lines[a].row < lines[b].row
			}
			return lines[a].col < lines[b].col
		})
		return nil, nil, &validationError{lines}
	}
	return plan, res, nil
}

func (p *project) isForm(name string) bool {
	_, ok := p.formByName[name]
	return ok
}

func fakeRow(pr plannedRow) row {
	inst := int32(pr.inst)
	if pr.newInst {
		inst = 1
	}
	return row{ev: int16(pr.ev), rep: int16(pr.rep), inst: inst}
}

func fieldNameOf(p *project, col *column) string {
	if col.field >= 0 {
		return p.finfo[col.field].FieldName
	}
	return col.name
}

func (p *project) eventDisplay(ev int) string {
	if !p.longitudinal {
		return ""
	}
	e := p.events[ev]
	armName := fmt.Sprintf("Arm %d", e.ArmNum)
	for _, a := range p.arms {
		if a.ArmNum == e.ArmNum {
			armName = a.Name
		}
	}
	return fmt.Sprintf("%s (Arm %d: %s)", e.EventName, e.ArmNum, armName)
}

func (p *project) eventSuffix(ev int) string {
	if !p.longitudinal {
		return ""
	}
	return " in the event '" + p.events[ev].UniqueEventName + "'"
}

// checkValue validates one non-empty value and returns what to store, or
// REDCap's message.
func (p *project) checkValue(col *column, v, dateFormat string) (string, string) {
	switch col.kind {
	case colCheckbox:
		switch v {
		case "1":
			return "1", ""
		case "0":
			return "", ""
		}
		return "", "The value is not a valid category for " + col.name
	case colComplete:
		switch v {
		case "0", "1", "2":
			return v, ""
		}
		return "", "The value is not a valid category for " + col.name
	}
	fi := &p.finfo[col.field]
	switch fi.FieldType {
	case "calc":
		return "", "This field is a calculated field (calc), whose value REDCap computes. Calc fields cannot be imported; leave the value out."
	case "file":
		return "", "This field is a File Upload field. Files cannot be imported as record data; use the file import method (content=file)."
	case "radio", "dropdown", "yesno", "truefalse":
		if _, ok := fi.choiceSet[v]; !ok {
			return "", "The value is not a valid category for " + fi.FieldName
		}
		return v, ""
	case "slider":
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 100 {
			return "", msgFormat
		}
		return v, ""
	case "text":
		nv, ok := normValue(fi.validation, v, dateFormat)
		if !ok {
			return "", msgFormat
		}
		return nv, ""
	}
	return v, ""
}

// applyPlan writes planned rows. Callers hold p.mu (write).
func (p *project) applyPlan(plan []plannedRow, overwrite bool, user string, ts int64) {
	ncols := len(p.cols)
	type change struct {
		created bool
		details []string
	}
	changes := map[string]*change{}
	var order []string
	for i := range plan {
		pr := &plan[i]
		rec := p.records[pr.rec]
		ch := changes[pr.rec]
		if ch == nil {
			ch = &change{created: rec == nil}
			changes[pr.rec] = ch
			order = append(order, pr.rec)
		}
		if rec == nil {
			rec = &record{id: pr.rec, dag: -1}
			p.records[pr.rec] = rec
			p.sorted = false
			if k, a, b := recordKey(pr.rec); k == 1 {
				for _, d := range p.dags {
					if int64(d.ID) == a && int(b) > p.dagSeq[d.ID] {
						p.dagSeq[d.ID] = int(b)
					}
				}
			}
		}
		if pr.dagSet {
			rec.dag = pr.dag
		}
		inst := pr.inst
		if pr.newInst {
			inst = 1
			for _, r := range rec.rows {
				if int(r.ev) == pr.ev && int(r.rep) == pr.rep && int(r.inst) >= inst {
					inst = int(r.inst) + 1
				}
			}
		}
		// A repeating row of a new record also gets its event's base row, as
		// REDCap stores the record ID there.
		if pr.rep >= 0 && rec.findRow(pr.ev, repNone, 0) < 0 && ch.created {
			rec.rows = append(rec.rows, row{ev: int16(pr.ev), rep: repNone})
			rec.rows[len(rec.rows)-1].data, rec.rows[len(rec.rows)-1].offs = packRow(make([]string, ncols))
		}
		idx := rec.findRow(pr.ev, pr.rep, inst)
		var vals []string
		if idx < 0 {
			vals = make([]string, ncols)
		} else {
			vals = rec.rows[idx].cells(ncols)
		}
		for _, cv := range pr.vals {
			if cv.val == "" && !overwrite {
				continue
			}
			if vals[cv.col] != cv.val {
				if len(ch.details) < 8 {
					ch.details = append(ch.details, fmt.Sprintf("%s = '%s'", p.cols[cv.col].name, truncate(cv.val, 40)))
				}
				vals[cv.col] = cv.val
			}
		}
		data, offs := packRow(vals)
		if idx < 0 {
			rec.rows = append(rec.rows, row{ev: int16(pr.ev), rep: int16(pr.rep), inst: int32(inst), data: data, offs: offs})
			rec.sortRows()
		} else {
			rec.rows[idx].data, rec.rows[idx].offs = data, offs
		}
	}
	for _, id := range order {
		ch := changes[id]
		action := "Update record (import) " + id
		if ch.created {
			action = "Create record (import) " + id
		}
		p.log = append(p.log, logEntry{ts: ts, user: user, action: action, record: id, details: strings.Join(ch.details, ", "), kind: logData})
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func (c *call) importRecords(w http.ResponseWriter) error {
	q := c.p
	format := q.format()
	if format == "odm" {
		format = "xml"
	}
	rows, notArray, err := parseData(q.str("data"), format, q.oneOf("type", "flat", "flat", "eav"), q.csvDelimiter())
	if err != nil {
		return err
	}
	rc := q.oneOf("returnContent", "count", "count", "ids", "auto_ids", "nothing")
	forceAuto := q.boolean("forceAutoNumber")
	if rc == "auto_ids" && !forceAuto {
		rc = "count"
	}
	if notArray {
		writeImportResult(w, c.rf, rc, &importResult{})
		return nil
	}
	o := importOpts{
		overwrite:  q.oneOf("overwriteBehavior", "normal", "normal", "overwrite") == "overwrite",
		dateFormat: q.oneOf("dateFormat", "YMD", "MDY", "DMY"),
		forceAuto:  forceAuto,
		dag:        c.dagIndex(),
		user:       c.tok.user,
	}
	res, err := c.s.importInto(c.proj, rows, o)
	var ve *validationError
	if errors.As(err, &ve) {
		return errorf(400, ve.Error())
	}
	if err != nil {
		return err
	}
	if q.boolean("backgroundProcess") {
		switch c.rf {
		case "json":
			writeBody(w, "json", `{"success":true}`)
		case "csv":
			writeBody(w, "csv", "success\ntrue")
		default:
			writeBody(w, "xml", xmlHeader+"<success>true</success>")
		}
		return nil
	}
	writeImportResult(w, c.rf, rc, res)
	return nil
}

// importInto validates and applies rows, all or nothing, and persists them.
func (s *Server) importInto(p *project, rows []inRow, o importOpts) (*importResult, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	plan, res, err := p.planImport(rows, o)
	if err != nil {
		return nil, err
	}
	ts := s.now().Unix()
	p.applyPlan(plan, o.overwrite, o.user, ts)
	s.recImported.Add(int64(len(res.ids)))
	s.persistImport(p, plan, o.overwrite, o.user, ts)
	return res, nil
}

func writeImportResult(w http.ResponseWriter, rf, rc string, res *importResult) {
	switch rc {
	case "nothing":
		writeBody(w, rf, "")
	case "ids":
		switch rf {
		case "json":
			if res.ids == nil {
				res.ids = []string{}
			}
			b, _ := json.Marshal(res.ids)
			writeBody(w, "json", string(phpEscapeJSON(b)))
		case "csv":
			writeBody(w, "csv", strings.Join(append([]string{"id"}, res.ids...), "\n"))
		default:
			var b strings.Builder
			b.WriteString(xmlHeader + "<ids>")
			for _, id := range res.ids {
				b.WriteString("<id>" + xmlEscape(id) + "</id>")
			}
			b.WriteString("</ids>")
			writeBody(w, "xml", b.String())
		}
	case "auto_ids":
		pairs := make([]string, len(res.autoIDs))
		for i, p := range res.autoIDs {
			pairs[i] = p[0] + "," + p[1]
		}
		switch rf {
		case "json":
			b, _ := json.Marshal(pairs)
			writeBody(w, "json", string(phpEscapeJSON(b)))
		case "csv":
			writeBody(w, "csv", strings.Join(append([]string{"id,original_id"}, pairs...), "\n"))
		default:
			var b strings.Builder
			b.WriteString(xmlHeader + "<ids>")
			for _, id := range pairs {
				b.WriteString("<id>" + xmlEscape(id) + "</id>")
			}
			b.WriteString("</ids>")
			writeBody(w, "xml", b.String())
		}
	default:
		n := strconv.Itoa(len(res.ids))
		switch rf {
		case "json":
			writeBody(w, "json", `{"count": `+n+`}`)
		case "csv":
			writeBody(w, "csv", n)
		default:
			writeBody(w, "xml", xmlHeader+"<count>"+n+"</count>")
		}
	}
}

// ImportRows imports flat rows with the API's validation and change log,
// without a token. overwrite chooses overwriteBehavior=overwrite.
func (s *Server) ImportRows(projectID int, rows []messages.Row, overwrite bool) error {
	p := s.project(projectID)
	if p == nil {
		return fmt.Errorf("redcapsim: project %d does not exist", projectID)
	}
	in := make([]inRow, len(rows))
	for i, r := range rows {
		in[i] = inRow(r)
	}
	_, err := s.importInto(p, in, importOpts{overwrite: overwrite, dateFormat: "YMD", dag: -1, user: "site_admin"})
	var ve *validationError
	if errors.As(err, &ve) {
		return fmt.Errorf("redcapsim: project %d: import rejected: %s", projectID, ve.redacted())
	}
	if err != nil {
		return fmt.Errorf("redcapsim: project %d: import rejected: %w", projectID, err)
	}
	return nil
}
