package redcapsim

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/tools/redcapsim/odm"
)

// LoadDir loads every project folder directly inside dir (folders without a
// project.xml, dictionary.csv or metadata.csv are skipped) in name order.
func (s *Server) LoadDir(dir string) ([]int, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("redcapsim: load projects from %s: %w", dir, err)
	}
	var ids []int
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		sub := filepath.Join(dir, e.Name())
		if !isProjectDir(sub) {
			continue
		}
		id, err := s.LoadProject(sub)
		if err != nil {
			return ids, err
		}
		ids = append(ids, id)
	}
	return ids, nil
}

func isProjectDir(dir string) bool {
	for _, n := range []string{"project.xml", "dictionary.csv", "metadata.csv"} {
		if _, err := os.Stat(filepath.Join(dir, n)); err == nil {
			return true
		}
	}
	return false
}

func firstExisting(dir string, names ...string) string {
	for _, n := range names {
		p := filepath.Join(dir, n)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// LoadProject loads one project folder (see the package README for the
// layout) and returns the new project's ID.
func (s *Server) LoadProject(dir string) (int, error) {
	var spec ProjectSpec
	var rows []messages.Row
	where := func(err error) error { return fmt.Errorf("redcapsim: load project %s: %w", dir, err) }
	if x := firstExisting(dir, "project.xml"); x != "" {
		f, err := os.Open(x)
		if err != nil {
			return 0, where(err)
		}
		op, err := odm.Parse(f)
		f.Close()
		if err != nil {
			return 0, where(err)
		}
		spec, rows = specFromODM(op), op.Rows
	} else {
		var err error
		if spec, err = specFromCSV(dir); err != nil {
			return 0, where(err)
		}
	}
	if spec.Title == "" {
		spec.Title = filepath.Base(dir)
	}
	// CSV files next to a project.xml refine it (project.xml has no event IDs).
	if ev := firstExisting(dir, "events.csv", "event.csv"); ev != "" && len(spec.Events) > 0 {
		recs, err := readCSVFile(ev, false)
		if err != nil {
			return 0, where(err)
		}
		ids := map[string]int{}
		for _, r := range recs {
			ids[r["unique_event_name"]] = atoiDefault(r["event_id"], 0)
		}
		for i := range spec.Events {
			if id := ids[spec.Events[i].UniqueEventName]; id > 0 {
				spec.Events[i].EventID = id
			}
		}
	}
	if d := firstExisting(dir, "dags.csv"); d != "" {
		recs, err := readCSVFile(d, false)
		if err != nil {
			return 0, where(err)
		}
		spec.DAGs = nil
		for _, r := range recs {
			spec.DAGs = append(spec.DAGs, messages.DAG{Name: r["data_access_group_name"], Unique: r["unique_group_name"], ID: atoiDefault(r["data_access_group_id"], 0)})
		}
	}
	if rows == nil {
		var err error
		if rows, err = readSeedData(dir); err != nil {
			return 0, where(err)
		}
	}
	inferDAGIDs(&spec, rows)
	id, err := s.CreateProject(spec)
	if err != nil {
		return 0, where(err)
	}
	if len(rows) > 0 {
		if err := s.seed(id, rows); err != nil {
			return 0, where(err)
		}
	}
	if t := firstExisting(dir, "tokens.csv"); t != "" {
		recs, err := readCSVFile(t, false)
		if err != nil {
			return 0, where(err)
		}
		for _, r := range recs {
			if err := s.AddToken(id, strings.TrimSpace(r["token"]), parseRights(r["rights"]), strings.TrimSpace(r["dag"])); err != nil {
				return 0, where(err)
			}
		}
	}
	return id, nil
}

// parseRights reads "export|import|delete|logging|metadata|design|rename|
// users|dags|repository|surveys" or "all".
func parseRights(s string) Rights {
	var r Rights
	for _, p := range strings.FieldsFunc(strings.ToLower(s), func(c rune) bool { return c == '|' || c == ' ' || c == ';' || c == '+' }) {
		switch p {
		case "all", "full":
			r = FullRights()
		case "export":
			r.Export = true
		case "import":
			r.Import = true
		case "delete":
			r.Delete = true
		case "logging", "log":
			r.Logging = true
		case "metadata":
			r.Metadata = true
		case "design", "designimport", "design_import":
			r.DesignImport = true
		case "rename":
			r.Rename = true
		case "users", "user_rights":
			r.UserRights = true
		case "dags", "data_access_groups":
			r.DAGs = true
		case "repository", "file_repository":
			r.FileRepository = true
		case "surveys", "survey_tools":
			r.SurveyTools = true
		}
	}
	return r
}

// seed imports rows as loaded data: calc and file values are kept and
// types are not checked (they come from a real export).
func (s *Server) seed(id int, rows []messages.Row) error {
	p := s.project(id)
	in := make([]inRow, len(rows))
	for i, r := range rows {
		in[i] = inRow(r)
	}
	s.seedDocs(p, in)
	_, err := s.importInto(p, in, importOpts{overwrite: false, dateFormat: "YMD", user: "site_admin", trusted: true})
	var ve *validationError
	if errors.As(err, &ve) {
		return fmt.Errorf("seed data rejected: %s", ve.redacted())
	}
	return err
}

// seedDocs turns the file names of seed data into docs (name only: the
// folder carries no content), so file fields hold doc_ids as REDCap's do.
func (s *Server) seedDocs(p *project, rows []inRow) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var added []*doc
	for _, r := range rows {
		for k, v := range r {
			ci, ok := p.colByName[k]
			if !ok || v == "" || p.cols[ci].kind != colFile {
				continue
			}
			d := p.nameOnlyDoc(v)
			added = append(added, d)
			r[k] = strconv.Itoa(d.ID)
		}
	}
	s.persistDocs(p, added, nil)
}

// inferDAGIDs gives DAGs without an ID the <id> prefix their records carry
// (records named <dagId>-<n>), so loaded DAG projects keep their names.
func inferDAGIDs(spec *ProjectSpec, rows []messages.Row) {
	if len(spec.DAGs) == 0 {
		return
	}
	idField := spec.Fields[0].FieldName
	counts := map[string]map[int]int{}
	for _, r := range rows {
		d := r["redcap_data_access_group"]
		if d == "" {
			continue
		}
		if k, a, _ := recordKey(r[idField]); k == 1 {
			if counts[d] == nil {
				counts[d] = map[int]int{}
			}
			counts[d][int(a)]++
		}
	}
	taken := map[int]bool{}
	for _, d := range spec.DAGs {
		if d.ID > 0 {
			taken[d.ID] = true
		}
	}
	for i := range spec.DAGs {
		d := &spec.DAGs[i]
		if d.ID > 0 {
			continue
		}
		u := d.Unique
		if u == "" {
			u = uniqueDAGName(d.Name)
		}
		type kv struct{ id, n int }
		var cands []kv
		for id, n := range counts[u] {
			cands = append(cands, kv{id, n})
		}
		sort.Slice(cands, func(a, b int) bool {
			if cands[a].n != cands[b].n {
				return cands[a].n > cands[b].n
			}
			return cands[a].id < cands[b].id
		})
		for _, c := range cands {
			if !taken[c.id] {
				d.ID = c.id
				taken[c.id] = true
				break
			}
		}
	}
	// Remaining DAGs: the next free IDs after the largest one.
	next := 1
	for id := range taken {
		if id >= next {
			next = id + 1
		}
	}
	for i := range spec.DAGs {
		if spec.DAGs[i].ID == 0 {
			spec.DAGs[i].ID = next
			next++
		}
	}
}

var uiHeaders = []string{"variable / field name", "form name", "section header", "field type", "field label",
	"choices, calculations, or slider labels", "field note", "text validation type or show slider number",
	"text validation min", "text validation max", "identifier?", "branching logic (show field only if...)",
	"required field?", "custom alignment", "question number (surveys only)", "matrix group name", "matrix ranking?", "field annotation"}

// readCSVFile reads a CSV file into rows keyed by header. naEmpty turns R's
// NA into "" (for R-written metadata files).
func readCSVFile(path string, naEmpty bool) ([]map[string]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return readCSV(b, naEmpty, filepath.Base(path))
}

func readCSV(b []byte, naEmpty bool, name string) ([]map[string]string, error) {
	b = bytes.TrimPrefix(b, []byte("\ufeff"))
	cr := csv.NewReader(bytes.NewReader(b))
	cr.FieldsPerRecord = -1
	recs, err := cr.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(recs) == 0 {
		return nil, nil
	}
	hdr := recs[0]
	for i := range hdr {
		hdr[i] = strings.TrimSpace(hdr[i])
	}
	var out []map[string]string
	for li, rec := range recs[1:] {
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue
		}
		if len(rec) != len(hdr) {
			return nil, fmt.Errorf("%s: line %d has %d values but the header has %d columns", name, li+2, len(rec), len(hdr))
		}
		m := make(map[string]string, len(hdr))
		for i, h := range hdr {
			v := rec[i]
			if naEmpty && v == "NA" {
				v = ""
			}
			m[h] = v
		}
		out = append(out, m)
	}
	return out, nil
}

// fieldsFromDictionary reads either layout of the data dictionary.
func fieldsFromDictionary(path string) ([]messages.Field, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	b = bytes.TrimPrefix(b, []byte("\ufeff"))
	cr := csv.NewReader(bytes.NewReader(b))
	cr.FieldsPerRecord = -1
	recs, err := cr.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	if len(recs) < 2 {
		return nil, fmt.Errorf("%s: no fields", filepath.Base(path))
	}
	hdr := recs[0]
	api := strings.TrimSpace(hdr[0]) == "field_name"
	if !api && !strings.EqualFold(strings.TrimSpace(hdr[0]), uiHeaders[0]) {
		return nil, fmt.Errorf("%s: the first column must be \"field_name\" (API layout) or \"Variable / Field Name\" (REDCap UI layout)", filepath.Base(path))
	}
	var fields []messages.Field
	for li, rec := range recs[1:] {
		if len(rec) == 1 && rec[0] == "" {
			continue
		}
		m := map[string]string{}
		for i, v := range rec {
			if i >= len(metadataHeader) {
				break
			}
			if api && v == "NA" {
				v = "" // R-written metadata
			}
			key := metadataHeader[i]
			if api && i < len(hdr) {
				key = strings.TrimSpace(hdr[i])
			}
			m[key] = v
		}
		f := fieldFromRow(m)
		if f.FieldName == "" || f.FormName == "" || f.FieldType == "" {
			return nil, fmt.Errorf("%s: line %d needs a field name, form name and field type", filepath.Base(path), li+2)
		}
		fields = append(fields, f)
	}
	return fields, nil
}

func specFromCSV(dir string) (ProjectSpec, error) {
	var spec ProjectSpec
	dict := firstExisting(dir, "metadata.csv", "dictionary.csv")
	if d := firstExisting(dir, "dictionary.csv"); d != "" {
		dict = d // the UI dictionary is preferred: metadata.csv files are often R-written
	}
	fields, err := fieldsFromDictionary(dict)
	if err != nil {
		return spec, err
	}
	spec.Fields = fields
	if f := firstExisting(dir, "instruments.csv"); f != "" {
		recs, err := readCSVFile(f, false)
		if err != nil {
			return spec, err
		}
		for _, r := range recs {
			spec.Instruments = append(spec.Instruments, messages.Instrument{InstrumentName: r["instrument_name"], InstrumentLabel: r["instrument_label"]})
		}
	}
	if f := firstExisting(dir, "arms.csv", "arm.csv"); f != "" {
		recs, err := readCSVFile(f, false)
		if err != nil {
			return spec, err
		}
		for _, r := range recs {
			spec.Arms = append(spec.Arms, messages.Arm{ArmNum: atoiDefault(r["arm_num"], 1), Name: r["name"]})
		}
	}
	if f := firstExisting(dir, "events.csv", "event.csv"); f != "" {
		recs, err := readCSVFile(f, false)
		if err != nil {
			return spec, err
		}
		for _, r := range recs {
			spec.Events = append(spec.Events, messages.Event{EventName: r["event_name"], ArmNum: atoiDefault(r["arm_num"], 1),
				UniqueEventName: r["unique_event_name"], CustomEventLabel: r["custom_event_label"], EventID: atoiDefault(r["event_id"], 0),
				DayOffset: atoiDefault(r["day_offset"], 0), OffsetMin: atoiDefault(r["offset_min"], 0), OffsetMax: atoiDefault(r["offset_max"], 0)})
		}
	}
	if f := firstExisting(dir, "instrument_designation.csv", "form_event_mapping.csv"); f != "" {
		recs, err := readCSVFile(f, false)
		if err != nil {
			return spec, err
		}
		for _, r := range recs {
			spec.FormEventMapping = append(spec.FormEventMapping, messages.FormEvent{ArmNum: atoiDefault(r["arm_num"], 0), UniqueEventName: r["unique_event_name"], Form: r["form"]})
		}
	} else if len(spec.Events) > 0 {
		// No mapping given: every form in every event.
		taken := map[string]bool{}
		for i := range spec.Events {
			if spec.Events[i].UniqueEventName == "" {
				spec.Events[i].UniqueEventName = uniqueEventName(spec.Events[i].EventName, spec.Events[i].ArmNum, taken)
			}
			taken[spec.Events[i].UniqueEventName] = true
		}
		seen := map[string]bool{}
		var forms []string
		for _, f := range spec.Fields {
			if !seen[f.FormName] {
				seen[f.FormName] = true
				forms = append(forms, f.FormName)
			}
		}
		for _, e := range spec.Events {
			for _, f := range forms {
				spec.FormEventMapping = append(spec.FormEventMapping, messages.FormEvent{ArmNum: e.ArmNum, UniqueEventName: e.UniqueEventName, Form: f})
			}
		}
	}
	if f := firstExisting(dir, "repeating.csv"); f != "" {
		recs, err := readCSVFile(f, false)
		if err != nil {
			return spec, err
		}
		for _, r := range recs {
			spec.Repeating = append(spec.Repeating, messages.RepeatingForm{EventName: r["event_name"], FormName: r["form_name"], CustomFormLabel: r["custom_form_label"]})
		}
	}
	return spec, nil
}

func readSeedData(dir string) ([]messages.Row, error) {
	if f := firstExisting(dir, "data.json"); f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		rows, _, err := parseJSONRows(string(b))
		if err != nil {
			return nil, fmt.Errorf("data.json: %v", err)
		}
		out := make([]messages.Row, len(rows))
		for i, r := range rows {
			out[i] = messages.Row(r)
		}
		return out, nil
	}
	if f := firstExisting(dir, "data.csv"); f != "" {
		recs, err := readCSVFile(f, false)
		if err != nil {
			return nil, err
		}
		out := make([]messages.Row, len(recs))
		for i, r := range recs {
			out[i] = messages.Row(r)
		}
		return out, nil
	}
	return nil, nil
}
