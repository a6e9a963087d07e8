package redcapsim

import (
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// importOpts are the import parameters.
type importOpts struct {
	overwrite  bool
	dateFormat string
	forceAuto  bool
	dagName    string // the token's DAG ("" none); resolved under the lock
	dag        int    // its index, set by importInto (-1 none)
	user       string
	trusted    bool // project loading: keep calc/file values, skip type checks
	silent     bool // no change-log entry (SetValuesSilently)
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
		if existing == nil && o.silent {
			addErr(ri, 0, recID, idField, given, "The record does not exist; a silent change only edits existing records.")
			continue
		}
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
		// Values, in column order: walked by column when the row holds most
		// of them (no sort needed), else by key and sorted.
		tmp := fakeRow(pr)
		pr.vals = make([]colVal, 0, len(r))
		byColumn := len(p.cols) <= 2*len(r)
		keys := r
		if byColumn {
			keys = nil
		}
		visit := func(k, v string, ci int) {
			col := &p.cols[ci]
			if !o.trusted && p.ignoredOnImport(col) {
				return
			}
			if v == "" {
				if o.overwrite && p.applies(col.form, &tmp) {
					pr.vals = append(pr.vals, colVal{ci, ""})
				}
				return
			}
			if !p.designated[pr.ev][col.form] {
				addErr(ri, ci, recID, k, v, fmt.Sprintf("This field ('%s') exists on an instrument that is not designated for the event named '%s'. You are not allowed to import data for this field into this event.", fieldNameOf(p, col), p.eventDisplay(pr.ev)))
				return
			}
			if !p.applies(col.form, &tmp) {
				addErr(ri, ci, recID, k, v, fmt.Sprintf("This field ('%s') is on the instrument '%s', which does not match the repeating instrument or event given on this row (redcap_repeat_instrument/redcap_repeat_instance).", fieldNameOf(p, col), p.forms[col.form].name))
				return
			}
			nv, msg := v, ""
			if !o.trusted {
				nv, msg = p.checkValue(col, v, o.dateFormat)
			} else if col.kind == colCheckbox && v != "1" {
				nv = ""
			}
			if msg != "" {
				addErr(ri, ci, recID, k, v, msg)
				return
			}
			pr.vals = append(pr.vals, colVal{ci, nv})
		}
		if byColumn {
			for ci := 1; ci < len(p.cols); ci++ {
				if v, ok := r[p.cols[ci].name]; ok {
					visit(p.cols[ci].name, v, ci)
				}
			}
		}
		for k, v := range keys {
			if ci, ok := p.colByName[k]; ok && ci != 0 {
				visit(k, v, ci)
			}
		}
		if !byColumn {
			slices.SortFunc(pr.vals, func(a, b colVal) int { return a.col - b.col })
		}
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

// ignoredOnImport: REDCap ignores calculated fields on import ("they will be
// calculated automatically during the import process"), whatever the value
// (unchanged, changed or blank, even with overwrite); the simulator keeps
// their stored values. File-upload fields only change through content=file,
// so exported file names re-import as a no-op too.
func (p *project) ignoredOnImport(col *column) bool {
	if col.kind == colSurveyTS {
		return true // REDCap ignores <form>_timestamp on import
	}
	if col.field < 0 {
		return false
	}
	switch p.finfo[col.field].FieldType {
	case "calc", "file":
		return true
	}
	return false
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
