package policy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand"
	"strconv"
	"strings"
	"testing"

	"github.com/redcap-relay/relay/messages"
)

// The generator below builds random data dictionaries, random policies that
// decide every detected identifier (as Compile demands), and random records
// full of PHI-looking values. The property: no value of a field that is not
// approved, or is dropped, or is transformed (hash, zip3, year, shift) ever
// appears in Apply's output, in its errors, or in anything logged about
// them; no dropped column appears by name either.

type gen struct{ r *rand.Rand }

const letters = "ghijklmnopqrstuvwxyz" // never hex digits, so a marker cannot hide in a hash

func (g gen) marker(prefix string) string {
	b := make([]byte, 10)
	for i := range b {
		b[i] = letters[g.r.Intn(len(letters))]
	}
	return prefix + string(b)
}

func (g gen) pick(xs ...string) string { return xs[g.r.Intn(len(xs))] }

var namesPool = []string{"first_name", "last", "home_addr", "city", "street", "dob", "birth_date", "mrn_no", "ssn4", "phone_home",
	"email", "zip", "age", "pt_age", "score", "item", "q", "pain", "sleep", "mood", "visit", "notes", "comment", "count"}

func (g gen) dictionary() []messages.Field {
	nForms := 1 + g.r.Intn(4)
	fields := []messages.Field{fld("record_id", "form0", "text")}
	used := map[string]bool{"record_id": true}
	n := 4 + g.r.Intn(36)
	for len(fields) < n {
		name := g.pick(namesPool...) + "_" + strconv.Itoa(g.r.Intn(50))
		if used[name] {
			continue
		}
		used[name] = true
		form := "form" + strconv.Itoa(g.r.Intn(nForms))
		var f messages.Field
		switch g.r.Intn(12) {
		case 0:
			f = fld(name, form, "text")
		case 1:
			f = fld(name, form, "notes")
		case 2:
			f = fld(name, form, "text", g.pick("email", "phone", "ssn", "mrn_10d", "postalcode_canada", "alpha_only"))
		case 3:
			f = fld(name, form, "text", "zipcode")
		case 4:
			f = fld(name, form, "text", g.pick("date_ymd", "date_mdy", "date_dmy"))
		case 5:
			f = fld(name, form, "text", g.pick("datetime_ymd", "datetime_seconds_ymd", "datetime_dmy", "datetime_seconds_mdy"))
		case 6:
			f = fld(name, form, "text", g.pick("integer", "number"))
		case 7:
			f = fld(name, form, "radio", "", "1, a | 2, b | 3, c")
		case 8:
			f = fld(name, form, "checkbox", "", "1, a | 2, b | 99, other")
		case 9:
			f = fld(name, form, "yesno")
		case 10:
			f = fld(name, form, "file")
		case 11:
			f = fld(name, form, "calc", "", "1+1")
		}
		if g.r.Intn(8) == 0 {
			f.Identifier = "y"
		}
		fields = append(fields, f)
	}
	return fields
}

// policy approves random forms and fields and gives every detected
// identifier a random rule that fits it.
func (g gen) policy(fields []messages.Field) string {
	var b strings.Builder
	b.WriteString("name: random\napproved:\n  forms: [")
	forms := map[string]bool{}
	for _, f := range fields {
		forms[f.FormName] = true
	}
	var fl []string
	for form := range forms {
		if g.r.Intn(2) == 0 || form == "form0" && len(fl) == 0 && len(forms) == 1 {
			fl = append(fl, form)
		}
	}
	approvedForms := map[string]bool{}
	for _, f := range fl {
		approvedForms[f] = true
	}
	b.WriteString(strings.Join(fl, ", ") + "]\n  fields: [")
	var extra []string
	approvedFields := map[string]bool{}
	for _, f := range fields[1:] {
		if !approvedForms[f.FormName] && g.r.Intn(4) == 0 {
			extra = append(extra, f.FieldName)
			approvedFields[f.FieldName] = true
		}
	}
	if len(fl) == 0 && len(extra) == 0 {
		extra = append(extra, fields[0].FieldName)
	}
	b.WriteString(strings.Join(extra, ", ") + "]\n")
	b.WriteString("record_id: {mode: " + g.pick("namespace", "hmac") + "}\n")
	b.WriteString("survey_timestamps: " + g.pick("shift", "year", "drop") + "\n")
	b.WriteString("rules:\n")
	for _, f := range fields[1:] {
		if !approvedForms[f.FormName] && !approvedFields[f.FieldName] {
			continue
		}
		det := Detect(f)
		if len(det) == 0 || hasCategory(det, CatFile) {
			continue
		}
		var choices []string
		switch {
		case hasCategory(det, CatDate):
			choices = []string{Shift, Year, Drop, Hash}
		case validation(f) == "zipcode":
			choices = []string{Zip3, Drop, Hash}
		case hasCategory(det, CatAge) && (f.FieldType == "calc" || f.FieldType == "text" && (validation(f) == "" || validation(f) == "integer" || validation(f) == "number")):
			choices = []string{CapAge, Drop}
		case f.FieldType == "checkbox":
			choices = []string{Drop}
		default:
			choices = []string{Drop, Hash}
		}
		fmt.Fprintf(&b, "  - field: %s\n    rule: %s\n", f.FieldName, g.pick(choices...))
	}
	return b.String()
}

type leakCheck struct {
	values  map[string]string // value -> field it belongs to
	cols    map[string]bool   // columns that must not appear
	shifted []shiftedValue    // must differ from their own output
}

type shiftedValue struct {
	row               int
	field, dest, orig string
}

// value makes a PHI-looking value. Dates of shifted fields come from
// 1960 on; every other date from before 1940, so that a shifted date can
// never look like a leaked one.
func (g gen) value(f messages.Field, shifted bool) string {
	y := 1900 + g.r.Intn(40)
	if shifted {
		y = 1960 + g.r.Intn(60)
	}
	switch dateKindOf(f) {
	case kindDate:
		return fmt.Sprintf("%04d-%02d-%02d", y, 1+g.r.Intn(12), 1+g.r.Intn(28))
	case kindDatetime:
		return fmt.Sprintf("%04d-%02d-%02d %02d:%02d", y, 1+g.r.Intn(12), 1+g.r.Intn(28), g.r.Intn(24), g.r.Intn(60))
	case kindDatetimeSeconds:
		return fmt.Sprintf("%04d-%02d-%02d %02d:%02d:%02d", y, 1+g.r.Intn(12), 1+g.r.Intn(28), g.r.Intn(24), g.r.Intn(60), g.r.Intn(60))
	}
	switch validation(f) {
	case "zipcode":
		return fmt.Sprintf("%05d-%04d", g.r.Intn(100000), g.r.Intn(10000))
	case "integer", "number":
		return strconv.Itoa(18 + g.r.Intn(95))
	case "email":
		return g.marker("mail.") + "@example.org"
	case "phone":
		return fmt.Sprintf("(%03d) 555-%04d %s", 200+g.r.Intn(700), g.r.Intn(10000), g.marker("x"))
	case "ssn":
		return fmt.Sprintf("%03d-%02d-%04d", g.r.Intn(900), g.r.Intn(100), g.r.Intn(10000))
	}
	switch f.FieldType {
	case "radio":
		return g.pick("1", "2", "3")
	case "yesno":
		return g.pick("0", "1")
	case "calc":
		return strconv.Itoa(g.r.Intn(120))
	case "file":
		return g.marker("scan-of-id-") + ".pdf"
	}
	return g.marker("PHI ") + " lives at " + g.marker("St ")
}

func (g gen) record(fields []messages.Field, c *Compiled, id string) (messages.RecordExported, leakCheck) {
	lc := leakCheck{values: map[string]string{}, cols: map[string]bool{}}
	kept := map[string]string{} // field -> action
	for _, d := range c.Decisions() {
		kept[d.Field] = d.Action
	}
	rec := messages.RecordExported{Site: "site_a", RunID: "run", RecordID: id, Version: 1}
	nRows := 1 + g.r.Intn(3)
	for i := 0; i < nRows; i++ {
		row := messages.Row{"record_id": id, "redcap_event_name": "", "redcap_repeat_instrument": "", "redcap_repeat_instance": "",
			"redcap_data_access_group": g.marker("dag-"), "redcap_survey_identifier": g.marker("Participant ")}
		lc.values[row["redcap_data_access_group"]] = "redcap_data_access_group"
		lc.values[row["redcap_survey_identifier"]] = "redcap_survey_identifier"
		unk := g.marker("unknown-column-")
		row["not_in_dictionary"] = unk
		lc.values[unk] = "not_in_dictionary"
		lc.cols["not_in_dictionary"] = true
		for _, f := range fields[1:] {
			act := kept[f.FieldName]
			if f.FieldType == "checkbox" {
				for _, code := range choiceCodes(f) {
					col := f.FieldName + "___" + exportCode(code)
					row[col] = g.pick("0", "1")
					if act == Drop || act == "" {
						lc.cols[col] = true
					}
				}
				continue
			}
			v := g.value(f, act == Shift)
			row[f.FieldName] = v
			switch act {
			case Drop, "":
				lc.cols[f.FieldName] = true
				lc.values[v] = f.FieldName
			case Hash, Zip3, Year:
				lc.values[v] = f.FieldName
			case Shift:
				if c.ShiftDays(id) != 0 {
					lc.shifted = append(lc.shifted, shiftedValue{row: i, field: f.FieldName, dest: destName(c.policy, f.FieldName), orig: v})
				}
			}
		}
		rec.Rows = append(rec.Rows, row)
	}
	// Short values (codes, small numbers) cannot be told apart from
	// legitimate output: only long ones are checked by value.
	for v := range lc.values {
		if len(v) < 8 {
			delete(lc.values, v)
		}
	}
	return rec, lc
}

func (lc leakCheck) scan(t *testing.T, where, text string) {
	t.Helper()
	for v, f := range lc.values {
		if strings.Contains(text, v) {
			t.Fatalf("%s leaks the value of field %s", where, f)
		}
	}
}

func TestPropertyNoLeak(t *testing.T) {
	var logs bytes.Buffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	defer slog.SetDefault(prev)

	iterations := 400
	if testing.Short() {
		iterations = 50
	}
	applied, failed := 0, 0
	logged := 0
	for seed := int64(1); seed <= int64(iterations); seed++ {
		g := gen{rand.New(rand.NewSource(seed))}
		fields := g.dictionary()
		y := g.policy(fields)
		p, err := Parse("random.yaml", []byte(y))
		if err != nil {
			t.Fatalf("seed %d: generated policy invalid: %v\n%s", seed, err, y)
		}
		meta := snap(fields...)
		c, err := Compile(p, meta, opts())
		if err != nil {
			t.Fatalf("seed %d: compile: %v\n%s", seed, err, y)
		}
		var table bytes.Buffer
		WriteTable(&table, Explain(p, meta, opts()))
		for r := 0; r < 5; r++ {
			rec, lc := g.record(fields, c, "r"+strconv.Itoa(r))
			// Corrupt a value now and then: errors must not quote it either.
			if g.r.Intn(4) == 0 {
				for _, d := range c.Decisions() {
					if d.Action == Shift || d.Action == Year || d.Action == Zip3 || d.Action == CapAge {
						bad := g.marker("NOT-A-VALUE-")
						rec.Rows[0][d.Field] = bad
						lc.values[bad] = d.Field
						break
					}
				}
			}
			logs.Reset()
			out, err := c.Apply(rec)
			if err != nil {
				failed++
				slog.Error("transform failed", "site", rec.Site, "record", rec.RecordID, "err", err)
				lc.scan(t, fmt.Sprintf("seed %d: Apply error", seed), err.Error())
				lc.scan(t, "logs", logs.String())
				logged += logs.Len()
				if ae, ok := err.(*ApplyError); ok {
					b, _ := json.Marshal(ae.Problems())
					lc.scan(t, "dead-letter details", string(b))
				}
				continue
			}
			applied++
			slog.Info("record cleaned", "site", out.Site, "dest_record", out.DestRecordID, "fields", messages.FieldNames(out.Rows), "policy", out.PolicyVersion)
			b, _ := json.Marshal(out)
			lc.scan(t, fmt.Sprintf("seed %d: Apply output", seed), string(b))
			for _, row := range out.Rows {
				for col := range row {
					if lc.cols[col] {
						t.Fatalf("seed %d: dropped column %s reached the output", seed, col)
					}
				}
				for _, d := range c.Decisions() {
					if d.Action == CapAge {
						if v := row[d.Dest]; v != "" {
							if n, _ := strconv.ParseFloat(v, 64); n > 90 {
								t.Fatalf("seed %d: age %s not capped", seed, d.Field)
							}
						}
					}
				}
			}
			lc.scan(t, "explain table", table.String())
			lc.scan(t, "logs", logs.String())
			logged += logs.Len()
			for _, sv := range lc.shifted {
				if len(out.Rows) == len(rec.Rows) && out.Rows[sv.row][sv.dest] == sv.orig {
					t.Fatalf("seed %d: date of field %s left unshifted", seed, sv.field)
				}
			}
		}
	}
	if applied == 0 || failed == 0 {
		t.Fatalf("generator too narrow: %d applied, %d failed", applied, failed)
	}
	// Logs written about every success and failure hold no value either.
	if logged == 0 {
		t.Fatal("nothing logged")
	}
	t.Logf("%d records cleaned, %d refused with errors, %d bytes of logs", applied, failed, logged)
}
