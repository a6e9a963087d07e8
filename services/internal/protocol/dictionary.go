package protocol

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/redcap-relay/relay/messages"
)

// dictColumns are the 18 data dictionary columns: the API name and the
// header REDCap's UI writes in its CSV download.
var dictColumns = []struct{ api, ui string }{
	{"field_name", "Variable / Field Name"},
	{"form_name", "Form Name"},
	{"section_header", "Section Header"},
	{"field_type", "Field Type"},
	{"field_label", "Field Label"},
	{"select_choices_or_calculations", "Choices, Calculations, OR Slider Labels"},
	{"field_note", "Field Note"},
	{"text_validation_type_or_show_slider_number", "Text Validation Type OR Show Slider Number"},
	{"text_validation_min", "Text Validation Min"},
	{"text_validation_max", "Text Validation Max"},
	{"identifier", "Identifier?"},
	{"branching_logic", "Branching Logic (Show field only if...)"},
	{"required_field", "Required Field?"},
	{"custom_alignment", "Custom Alignment"},
	{"question_number", "Question Number (surveys only)"},
	{"matrix_group_name", "Matrix Group Name"},
	{"matrix_ranking", "Matrix Ranking?"},
	{"field_annotation", "Field Annotation"},
}

// required columns (indexes into dictColumns).
var requiredColumns = []int{0, 1, 3, 4}

// ParseDictionary reads a REDCap data dictionary CSV in either layout: the
// API's (field_name, form_name, ...) or the UI download's ("Variable / Field
// Name", "Form Name", ...). Columns may come in any order; the field name,
// form name, field type and field label columns are required. Errors name
// the line and say what is wrong.
func ParseDictionary(r io.Reader) ([]messages.Field, error) {
	raw, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read dictionary: %w", err)
	}
	raw = bytes.TrimPrefix(raw, []byte("\xef\xbb\xbf"))
	cr := csv.NewReader(bytes.NewReader(raw))
	cr.FieldsPerRecord = -1
	header, err := cr.Read()
	if err == io.EOF {
		return nil, errors.New("the dictionary is empty")
	}
	if err != nil {
		return nil, fmt.Errorf("dictionary header: %w", csvErr(err))
	}
	idx := make([]int, len(dictColumns))
	for i := range idx {
		idx[i] = -1
	}
	for c, h := range header {
		h = strings.TrimSpace(h)
		for i, col := range dictColumns {
			if strings.EqualFold(h, col.api) || strings.EqualFold(h, col.ui) {
				idx[i] = c
			}
		}
	}
	var missing []string
	for _, i := range requiredColumns {
		if idx[i] < 0 {
			missing = append(missing, fmt.Sprintf("%q (or %q)", dictColumns[i].ui, dictColumns[i].api))
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("not a REDCap data dictionary: column %s missing; the header has %d column(s) starting %q", strings.Join(missing, ", "), len(header), firstN(header, 3))
	}
	var out []messages.Field
	seen := map[string]int{}
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("dictionary: %w", csvErr(err))
		}
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue
		}
		get := func(i int) string {
			if idx[i] < 0 || idx[i] >= len(rec) {
				return ""
			}
			return rec[idx[i]]
		}
		f := messages.Field{
			FieldName: strings.TrimSpace(get(0)), FormName: strings.TrimSpace(get(1)), SectionHeader: get(2),
			FieldType: strings.TrimSpace(get(3)), FieldLabel: get(4), SelectChoicesOrCalculations: get(5),
			FieldNote: get(6), TextValidationTypeOrShowSlider: strings.TrimSpace(get(7)),
			TextValidationMin: strings.TrimSpace(get(8)), TextValidationMax: strings.TrimSpace(get(9)),
			Identifier: strings.TrimSpace(get(10)), BranchingLogic: get(11), RequiredField: strings.TrimSpace(get(12)),
			CustomAlignment: get(13), QuestionNumber: get(14), MatrixGroupName: get(15), MatrixRanking: get(16),
			FieldAnnotation: get(17),
		}
		switch {
		case f.FieldName == "":
			return nil, fmt.Errorf("dictionary line %d: the variable / field name is empty", line)
		case f.FormName == "":
			return nil, fmt.Errorf("dictionary line %d: field %s has no form name", line, f.FieldName)
		case f.FieldType == "":
			return nil, fmt.Errorf("dictionary line %d: field %s has no field type", line, f.FieldName)
		}
		if prev, dup := seen[f.FieldName]; dup {
			return nil, fmt.Errorf("dictionary line %d: field %s is already defined on line %d", line, f.FieldName, prev)
		}
		seen[f.FieldName] = line
		out = append(out, f)
	}
	if len(out) == 0 {
		return nil, errors.New("the dictionary has a header but no fields")
	}
	return out, nil
}

func csvErr(err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return fmt.Errorf("line %d: %v (check quoting)", pe.StartLine, pe.Err)
	}
	return err
}

func firstN(xs []string, n int) string {
	if len(xs) > n {
		xs = xs[:n]
	}
	return strings.Join(xs, ",")
}

// Choice is one coded answer of a radio, dropdown or checkbox field.
type Choice struct{ Code, Label string }

// hasChoices says whether the choices column holds coded answers.
func hasChoices(fieldType string) bool {
	switch fieldType {
	case "radio", "dropdown", "checkbox":
		return true
	}
	return false
}

// ParseChoices parses "1, Yes | 0, No" (REDCap also writes "\n" between
// choices in some exports). An entry without a comma is an error.
func ParseChoices(s string) ([]Choice, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	var sep string
	if strings.Contains(s, "|") {
		sep = "|"
	} else {
		sep = "\n"
	}
	var out []Choice
	seen := map[string]bool{}
	for i, part := range strings.Split(s, sep) {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		c := strings.IndexByte(part, ',')
		if c < 0 {
			return nil, fmt.Errorf("choice %d %q has no code: write \"code, label\" separated by |", i+1, truncate(part, 40))
		}
		code := strings.TrimSpace(part[:c])
		if code == "" {
			return nil, fmt.Errorf("choice %d has an empty code", i+1)
		}
		if seen[code] {
			return nil, fmt.Errorf("choice code %s is used twice", code)
		}
		seen[code] = true
		out = append(out, Choice{Code: code, Label: strings.TrimSpace(part[c+1:])})
	}
	return out, nil
}

func choicesProblem(f messages.Field) string {
	if !hasChoices(f.FieldType) {
		return ""
	}
	cs, err := ParseChoices(f.SelectChoicesOrCalculations)
	if err != nil {
		return "bad choices: " + err.Error()
	}
	if len(cs) == 0 {
		return "a " + f.FieldType + " field without choices"
	}
	return ""
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// crfRow is one row of heal-crf-ids.csv.
type crfRow struct {
	Name, CURIE, HDP string
	Other            []string
}

func (r crfRow) names() []string {
	out := []string{r.Name}
	if i := strings.IndexByte(r.CURIE, ':'); i >= 0 {
		out = append(out, r.CURIE[i+1:])
	}
	return append(out, r.Other...)
}

// parseCRFIDs reads "CRF Name, HEAL CDE CURIE, HEAL Data Platform CURIE,
// Other Names" (aliases separated by |), keyed by lower-cased CURIE and
// CRF Name.
func parseCRFIDs(b []byte) (map[string]crfRow, error) {
	recs, err := readCSV(b, []string{"CRF Name", "HEAL CDE CURIE", "HEAL Data Platform CURIE", "Other Names"})
	if err != nil {
		return nil, err
	}
	out := map[string]crfRow{}
	for _, r := range recs {
		row := crfRow{Name: r[0], CURIE: r[1], HDP: r[2]}
		if row.CURIE == "NA" {
			row.CURIE = ""
		}
		for _, o := range strings.Split(r[3], "|") {
			if o = strings.TrimSpace(o); o != "" {
				row.Other = append(row.Other, o)
			}
		}
		out[strings.ToLower(row.Name)] = row
		if row.CURIE != "" {
			out[strings.ToLower(row.CURIE)] = row
		}
	}
	return out, nil
}

func parseCorrections(b []byte) ([]Correction, error) {
	recs, err := readCSV(b, []string{"crf_id", "cde_name_incorrect", "cde_name_correct", "notes"})
	if err != nil {
		return nil, err
	}
	out := make([]Correction, 0, len(recs))
	for _, r := range recs {
		out = append(out, Correction{CRF: r[0], Incorrect: r[1], Correct: r[2], Notes: r[3]})
	}
	return out, nil
}

// readCSV reads a CSV with the given header and returns the data rows with
// cells trimmed, in header order.
func readCSV(b []byte, want []string) ([][]string, error) {
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	cr := csv.NewReader(bytes.NewReader(b))
	cr.FieldsPerRecord = -1
	all, err := cr.ReadAll()
	if err != nil {
		return nil, csvErr(err)
	}
	if len(all) == 0 {
		return nil, errors.New("empty file")
	}
	idx := make([]int, len(want))
	for i, w := range want {
		idx[i] = -1
		for c, h := range all[0] {
			if strings.EqualFold(strings.TrimSpace(h), w) {
				idx[i] = c
			}
		}
		if idx[i] < 0 {
			return nil, fmt.Errorf("column %q missing (header: %s)", w, strings.Join(all[0], ","))
		}
	}
	var out [][]string
	for _, rec := range all[1:] {
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue
		}
		row := make([]string, len(want))
		for i, c := range idx {
			if c < len(rec) {
				row[i] = strings.TrimSpace(rec[c])
			}
		}
		out = append(out, row)
	}
	return out, nil
}

// ParseFormEventMapping reads an instrument-event mapping CSV
// (arm_num,unique_event_name,form), as REDCap's API and UI write it.
func ParseFormEventMapping(r io.Reader) ([]messages.FormEvent, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	recs, err := readCSV(b, []string{"arm_num", "unique_event_name", "form"})
	if err != nil {
		return nil, fmt.Errorf("form-event mapping: %w", err)
	}
	out := make([]messages.FormEvent, 0, len(recs))
	for i, r := range recs {
		n, err := strconv.Atoi(r[0])
		if err != nil {
			return nil, fmt.Errorf("form-event mapping row %d: arm_num %q is not a number", i+2, r[0])
		}
		out = append(out, messages.FormEvent{ArmNum: n, UniqueEventName: r[1], Form: r[2]})
	}
	return out, nil
}

// ParseEvents reads an events CSV (event_name,arm_num,unique_event_name,...;
// day_offset, offset_min, offset_max and event_id are optional).
func ParseEvents(r io.Reader) ([]messages.Event, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	recs, err := readCSV(b, []string{"event_name", "arm_num", "unique_event_name"})
	if err != nil {
		return nil, fmt.Errorf("events: %w", err)
	}
	// optional columns
	opt, _ := readCSVOptional(b, []string{"custom_event_label", "event_id", "day_offset", "offset_min", "offset_max"})
	out := make([]messages.Event, 0, len(recs))
	for i, r := range recs {
		n, err := strconv.Atoi(r[1])
		if err != nil {
			return nil, fmt.Errorf("events row %d: arm_num %q is not a number", i+2, r[1])
		}
		e := messages.Event{EventName: r[0], ArmNum: n, UniqueEventName: r[2]}
		if i < len(opt) {
			o := opt[i]
			e.CustomEventLabel = o[0]
			e.EventID, _ = strconv.Atoi(o[1])
			e.DayOffset = atoiLoose(o[2])
			e.OffsetMin = atoiLoose(o[3])
			e.OffsetMax = atoiLoose(o[4])
		}
		out = append(out, e)
	}
	return out, nil
}

func atoiLoose(s string) int {
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		return int(f)
	}
	return 0
}

func readCSVOptional(b []byte, want []string) ([][]string, error) {
	b = bytes.TrimPrefix(b, []byte("\xef\xbb\xbf"))
	cr := csv.NewReader(bytes.NewReader(b))
	cr.FieldsPerRecord = -1
	all, err := cr.ReadAll()
	if err != nil || len(all) == 0 {
		return nil, err
	}
	idx := make([]int, len(want))
	for i, w := range want {
		idx[i] = -1
		for c, h := range all[0] {
			if strings.EqualFold(strings.TrimSpace(h), w) {
				idx[i] = c
			}
		}
	}
	var out [][]string
	for _, rec := range all[1:] {
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue
		}
		row := make([]string, len(want))
		for i, c := range idx {
			if c >= 0 && c < len(rec) {
				row[i] = strings.TrimSpace(rec[c])
			}
		}
		out = append(out, row)
	}
	return out, nil
}

// ParseArms reads an arms CSV (arm_num,name).
func ParseArms(r io.Reader) ([]messages.Arm, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	recs, err := readCSV(b, []string{"arm_num", "name"})
	if err != nil {
		return nil, fmt.Errorf("arms: %w", err)
	}
	out := make([]messages.Arm, 0, len(recs))
	for i, r := range recs {
		n, err := strconv.Atoi(r[0])
		if err != nil {
			return nil, fmt.Errorf("arms row %d: arm_num %q is not a number", i+2, r[0])
		}
		out = append(out, messages.Arm{ArmNum: n, Name: r[1]})
	}
	return out, nil
}

// InstrumentsOf lists the forms of a dictionary in order, labelled from the
// form name, for a snapshot built from a dictionary file alone.
func InstrumentsOf(fields []messages.Field) []messages.Instrument {
	var out []messages.Instrument
	for _, f := range formsOf(fields) {
		out = append(out, messages.Instrument{InstrumentName: f, InstrumentLabel: strings.ReplaceAll(f, "_", " ")})
	}
	return out
}

// ParseRepeating reads a repeating instruments and events CSV
// (event_name,form_name,custom_form_label, as REDCap's API exports it; a
// blank form_name is a repeating event, a blank event_name a classic
// project's repeating form).
func ParseRepeating(r io.Reader) ([]messages.RepeatingForm, error) {
	b, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	recs, err := readCSVOptional(b, []string{"event_name", "form_name", "custom_form_label"})
	if err != nil {
		return nil, fmt.Errorf("repeating instruments: %w", csvErr(err))
	}
	if len(recs) > 0 {
		if _, err := readCSV(b, []string{"form_name"}); err != nil {
			return nil, fmt.Errorf("repeating instruments: %w", err)
		}
	}
	out := make([]messages.RepeatingForm, 0, len(recs))
	for _, r := range recs {
		out = append(out, messages.RepeatingForm{EventName: r[0], FormName: r[1], CustomFormLabel: r[2]})
	}
	return out, nil
}
