package policy

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/redcap-relay/relay/messages"
)

func wantErr(t *testing.T, err error, parts ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want one containing %q", parts)
	}
	for _, p := range parts {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error lacks %q:\n%v", p, err)
		}
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"not yaml", "name: [x\n", []string{"test.yaml", "not valid YAML"}},
		{"empty", "", []string{"empty policy"}},
		{"unknown key", "name: x\napproved: {forms: [a]}\ndatez: shift\n", []string{"test.yaml:3", "datez"}},
		{"no name", "approved: {forms: [a]}\n", []string{"name: missing"}},
		{"nothing approved", "name: x\n", []string{"approved: nothing approved"}},
		{"bad rule", "name: x\napproved:\n  forms: [a]\nrules:\n  - field: b\n    rule: blank\n", []string{"test.yaml:6: rules[0].rule", `"blank" is not a rule`}},
		{"keep without justification", "name: x\napproved:\n  forms: [a]\nrules:\n  - field: b\n    rule: keep\n", []string{"rules[0].justification", "keep needs a justification"}},
		{"two selectors", "name: x\napproved: {forms: [a]}\nrules:\n  - field: b\n    form: a\n    rule: drop\n", []string{"test.yaml:4: rules[0]", "exactly one of"}},
		{"dup field rule", "name: x\napproved: {forms: [a]}\nrules:\n  - field: b\n    rule: drop\n  - fields: [c, b]\n    rule: hash\n", []string{"rules[1]", "already has a rule in rules[0]"}},
		{"bad mode", "name: x\napproved: {forms: [a]}\nrecord_id: {mode: mrn}\n", []string{"test.yaml:3: record_id.mode", "namespace"}},
		{"dates keep no why", "name: x\napproved: {forms: [a]}\ndates: keep\n", []string{"test.yaml:3: dates", "justification"}},
		{"free_text shift", "name: x\napproved: {forms: [a]}\nfree_text: shift\n", []string{"free_text", "drop, keep"}},
		{"rename clash", "name: x\napproved: {forms: [a]}\nrename: {b: z, c: z}\n", []string{"rename.c", "would both be written to z"}},
		{"bad dest name", "name: x\napproved: {forms: [a]}\nrename: {b: Bad-Name}\n", []string{"rename.b", "not a REDCap field name"}},
		{"bad form name", "name: x\napproved: {forms: [A b]}\n", []string{"approved.forms[0]"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("test.yaml", []byte(tc.yaml))
			wantErr(t, err, tc.want...)
			var pe *Error
			if !errors.As(err, &pe) {
				t.Errorf("not a *policy.Error: %T", err)
			}
		})
	}
	// Every problem at once.
	_, err := Parse("test.yaml", []byte("approved: {forms: [a]}\nrecord_id: {mode: x}\nrules:\n  - rule: nope\n"))
	wantErr(t, err, "4 problem(s)", "name: missing", "record_id.mode", "exactly one of", "not a rule")
}

func TestLoadAndVersion(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "p.yaml")
	body := "name: x\napproved: {forms: [a]}\n"
	os.WriteFile(path, []byte(body), 0o600)
	p, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(p.Version(), "sha256:") || len(p.Version()) != len("sha256:")+12 {
		t.Errorf("version %q", p.Version())
	}
	p2, _ := Parse("other-name.yaml", []byte(body))
	if p2.Version() != p.Version() {
		t.Error("version depends on the file name, not only the content")
	}
	p3, _ := Parse("p.yaml", []byte(body+"# reviewed again\n"))
	if p3.Version() == p.Version() {
		t.Error("an edited policy kept its version")
	}
	_, err = Load(filepath.Join(dir, "missing.yaml"))
	wantErr(t, err, "policy file", "missing.yaml")
}

func TestCompileRefusals(t *testing.T) {
	meta := healMeta()
	y := `name: drift
approved:
  forms: [demographics, gone_form]
  fields: [ct_phone, no_such_field]
  events: [baseline_arm_1, month_99_arm_1]
rules:
  - field: dem_zip
    rule: shift
  - field: renamed_away
    rule: drop
  - form: nowhere
    rule: drop
  - field: record_id
    rule: hash
  - field: dem_race
    rule: hash
rename:
  ghost: g
recode:
  dem_sex: {"7": "1"}
  peg_pain: {"1": "2"}
`
	_, err := Compile(mustParse(t, y), meta, opts())
	wantErr(t, err,
		"test.yaml for site site_a: policy refused",
		"test.yaml:3: approved.forms[1]: form gone_form is not in site site_a's data dictionary (schema drift?",
		"test.yaml:4: approved.fields[1]: field no_such_field is not in site site_a's data dictionary",
		"approved.events[1]: event month_99_arm_1 is not an event of site site_a",
		"rules[1]: field renamed_away is not in site site_a's data dictionary",
		"rules[2].form: form nowhere",
		"rules[3]: field record_id is the record-ID field",
		"field dem_zip: rule shift needs a date or datetime field",
		"field dem_race: rule hash cannot apply to a checkbox",
		"rename.ghost: field ghost is not in",
		`recode.dem_sex.7: code "7" is not a choice of field dem_sex`,
		"recode.peg_pain: field peg_pain does not reach the destination",
		"field ct_phone: approved, but looks like an identifier (validation phone",
		"field dem_first_name:", "field dem_dob:", "field dem_email:", "field dem_age:",
	)
	// Explain shows the same per-field problems without failing.
	ds := Explain(mustParse(t, y), meta, opts())
	refused := 0
	for _, d := range ds {
		if d.Problem != "" {
			refused++
		}
	}
	if refused < 6 {
		t.Errorf("Explain marked %d fields refused", refused)
	}
}

func TestRecordIDIdentifier(t *testing.T) {
	meta := snap(fld("mrn", "f", "text", "mrn_10d"), fld("x", "f", "yesno"))
	for _, mode := range []string{"namespace", "hmac"} {
		_, err := Compile(mustParse(t, "name: x\napproved: {forms: [f]}\nrecord_id: {mode: "+mode+"}\n"), meta, opts())
		wantErr(t, err, "field mrn", "Safe Harbor forbids deriving the destination ID")
	}
	meta = snap(fld("participant_email", "f", "text", "", "", "y"), fld("x", "f", "yesno"))
	_, err := Compile(mustParse(t, "name: x\napproved: {forms: [f]}\n"), meta, opts())
	wantErr(t, err, "record_id: {mode: hmac}")
	if _, err := Compile(mustParse(t, "name: x\napproved: {forms: [f]}\nrecord_id: {mode: hmac}\n"), meta, opts()); err != nil {
		t.Errorf("hmac of a flagged study ID refused: %v", err)
	}
}

func TestRuleSelectorsAndPrecedence(t *testing.T) {
	meta := snap(
		fld("record_id", "f", "text"),
		fld("email1", "f", "text", "email"),
		fld("email2", "f", "text", "email"),
		fld("notes", "f", "notes"),
		fld("visit", "f", "text", "date_ymd"),
		fld("birth_date", "f", "text", "date_ymd"),
		fld("comment", "g", "notes"),
		fld("score", "g", "text", "integer"),
	)
	y := `name: x
approved: {forms: [f, g]}
dates: year
free_text: drop
rules:
  - validation: email
    rule: drop
  - field: email2
    rule: hash
  - form: g
    rule: keep
    justification: "form g reviewed: the comment box holds no PHI (IRB 2024-17)"
  - field: birth_date
    rule: drop
`
	c := mustCompile(t, y, meta, opts())
	got := map[string]string{}
	by := map[string]string{}
	for _, d := range c.Decisions() {
		got[d.Field], by[d.Field] = d.Action, d.By
	}
	want := map[string]string{"record_id": "record_id", "email1": Drop, "email2": Hash, "notes": Drop, "visit": Year, "birth_date": Drop, "comment": Keep, "score": Keep}
	for f, a := range want {
		if got[f] != a {
			t.Errorf("%s: %s (by %s), want %s", f, got[f], by[f], a)
		}
	}
	if !strings.Contains(by["email1"], "rules[0] (validation email)") || !strings.Contains(by["email2"], "rules[1] (field email2)") ||
		!strings.Contains(by["comment"], "rules[2] (form g)") || by["visit"] != "dates: year" || by["notes"] != "free_text: drop" {
		t.Errorf("decided by: %v", by)
	}
}

func TestCheckDestination(t *testing.T) {
	c := mustCompile(t, healPolicy, healMeta(), opts())
	good := []messages.Field{
		fld("participant_id", "demographics", "text"),
		fld("dem_dob", "demographics", "text", "integer"),
		fld("dem_age", "demographics", "text", "integer"),
		fld("dem_zip", "demographics", "text"),
		fld("sex", "demographics", "radio", "", "1, M | 2, F | 9, I"),
		fld("dem_race", "demographics", "checkbox", "", "1, A | 2, B | 3, C | 98, Other"),
		fld("dem_email", "demographics", "text"),
		fld("dem_visit", "demographics", "text", "datetime_seconds_mdy"),
		fld("demographics_completed_year", "demographics", "text", "integer"),
		fld("peg_pain", "pain", "dropdown", "", "0, 0 | 1, 1 | 2, 2 | 10, 10"),
		fld("peg_date", "pain", "text", "date_dmy"),
		fld("peg_time", "pain", "text", "datetime_ymd"),
		fld("sleep_hours", "sleep", "text", "number"),
		fld("sleep_date", "sleep", "text", "date_ymd"),
	}
	if err := c.CheckDestination(good); err != nil {
		t.Fatalf("good destination refused: %v", err)
	}
	// The survey completion year needs its real destination field.
	var noTimestamp []messages.Field
	for _, f := range good {
		if f.FieldName != "demographics_completed_year" {
			noTimestamp = append(noTimestamp, f)
		}
	}
	if err := c.CheckDestination(noTimestamp); err == nil || !strings.Contains(err.Error(), "demographics_timestamp → demographics_completed_year: not in the destination") {
		t.Fatalf("a destination without the renamed timestamp field: %v", err)
	}
	bad := []messages.Field{
		fld("record_id", "demographics", "text"),
		fld("dem_dob", "demographics", "text", "date_ymd"),
		fld("dem_age", "demographics", "text", "integer"),
		fld("dem_zip", "demographics", "text", "zipcode"),
		fld("sex", "demographics", "radio", "", "1, M | 2, F"),
		fld("dem_race", "demographics", "radio", "", "1, A"),
		fld("dem_email", "demographics", "text", "email"),
		fld("dem_visit", "demographics", "text", "date_ymd"),
		fld("peg_pain", "peg", "calc", "", "1+1"),
		fld("peg_date", "peg", "text", "date_ymd"),
		fld("sleep_hours", "sleep", "text", "integer"),
		fld("sleep_date", "sleep", "text", "date_ymd"),
	}
	err := c.CheckDestination(bad)
	wantErr(t, err,
		"record ID: the destination's record-ID field is record_id but the policy writes the ID to participant_id",
		"field dem_dob → dem_dob: rule year writes integer, but the destination validates it as date_ymd",
		"field dem_zip → dem_zip: rule zip3 writes free text, but the destination validates it as zipcode",
		"field dem_sex → sex: codes 9 are not choices at the destination",
		"field dem_race → dem_race: a checkbox goes into a radio field",
		"field dem_email → dem_email: rule hash writes free text",
		"field dem_visit → dem_visit: rule shift writes datetime_seconds_ymd",
		"field peg_pain → peg_pain: the destination field is a calc field",
		"field peg_time → peg_time: not in the destination's data dictionary",
		"field sleep_hours → sleep_hours: rule keep writes number, but the destination validates it as integer",
		"peg_complete → pain_complete: the destination has no form pain",
		"field demographics_timestamp → demographics_completed_year: not in the destination's data dictionary",
	)
	var de *DestinationError
	if !errors.As(err, &de) || len(de.Mismatches) != 12 {
		t.Errorf("mismatches: %v", err)
	}
}

func TestRecodeOfDroppedCheckbox(t *testing.T) {
	meta := snap(fld("record_id", "f", "text"), fld("race", "f", "checkbox", "", "1, A | 2, B"), fld("x", "g", "yesno"))
	_, err := Compile(mustParse(t, "name: x\napproved: {forms: [g]}\nrecode: {race: {\"1\": \"2\"}}\n"), meta, opts())
	wantErr(t, err, "recode.race: field race does not reach the destination")
}

func TestCheckboxRecodeCollision(t *testing.T) {
	meta := snap(fld("record_id", "f", "text"), fld("race", "f", "checkbox", "", "1, A | 2, B"))
	_, err := Compile(mustParse(t, "name: x\napproved: {forms: [f]}\nrecode: {race: {\"1\": \"2\"}}\n"), meta, opts())
	wantErr(t, err, "test.yaml:3: recode.race: checkbox codes 1 and 2 would both be written to race___2")
}

// Every mistake of a policy at once: misspelt keys with the key they were
// probably meant to be, a value of the wrong kind in words, each with its line.
func TestPolicyMistakesAllAtOnce(t *testing.T) {
	_, err := Parse("p.yaml", []byte("name: x\napprove:\n  forms: [a]\nrecord_id: {mod: hmac}\nrules:\n  - field: b\n    rul: drop\nrecode: [1, 2]\n"))
	for _, want := range []string{
		`p.yaml:2: approve: unknown key, did you mean "approved"?`,
		`p.yaml:4: record_id.mod: unknown key, did you mean "mode"?`,
		`p.yaml:7: rules[0].rul: unknown key, did you mean "rule"?`,
		`p.yaml:8: recode: a list is not a section of keys`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
}

func TestFileFieldsLeaveOnlyWhenARuleKeepsThem(t *testing.T) {
	meta := snap(fld("record_id", "consent", "text"), fld("consent_pdf", "consent", "file"),
		fld("signature", "consent", "file", "signature"), fld("photo", "consent", "file"))
	pol := `name: files
approved: {forms: [consent]}
rules:
  - field: consent_pdf
    rule: keep
    justification: the IRB approved the consent form's transfer
    max_size: 20MB
    types: [application/pdf, .pdf]
  - field: signature
    rule: drop
rename: {consent_pdf: consent_file}
`
	c := mustCompile(t, pol, meta, opts())
	files := c.Files()
	if len(files) != 1 || files[0].Field != "consent_pdf" || files[0].Dest != "consent_file" || files[0].MaxBytes != 20_000_000 || files[0].KeepName {
		t.Fatalf("file plans %+v: want consent_pdf kept as consent_file, 20 MB, no name", files)
	}
	if !slices.Contains(c.ExportFields(), "consent_pdf") || slices.Contains(c.ExportFields(), "photo") || slices.Contains(c.ExportFields(), "signature") {
		t.Fatalf("export fields %v: want the kept file field only (the photo has no rule: deny by default)", c.ExportFields())
	}
	for _, cs := range []struct {
		name, mime string
		size       int64
		ok         bool
	}{
		{"c.pdf", "application/pdf", 1000, true},
		{"c.PDF", "application/octet-stream", 1000, true},
		{"c.pdf", "application/pdf", 20_000_001, false},
		{"c.exe", "application/x-msdownload", 10, false},
	} {
		if err := files[0].FileAllowed(cs.name, cs.mime, cs.size); (err == nil) != cs.ok || (err != nil && strings.Contains(err.Error(), cs.name)) {
			t.Errorf("%s %s %d: %v (want allowed=%v, never naming the file)", cs.name, cs.mime, cs.size, err, cs.ok)
		}
	}
	out, err := c.Apply(messages.RecordExported{Site: "site_a", RecordID: "7", Rows: []messages.Row{{"record_id": "7", "consent_pdf": "jane_doe_consent.pdf", "photo": "p.jpg", "consent_complete": "2"}},
		Files: []messages.FileRef{{Field: "consent_pdf", Object: "sha256/ab", SHA256: "ab", Size: 10, Name: "jane_doe_consent.pdf"}, {Field: "photo", Object: "sha256/cd"}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Files) != 1 || out.Files[0].Field != "consent_file" || out.Files[0].Name != "" || out.Rows[0]["consent_pdf"] != "" || out.Rows[0]["consent_file"] != "" {
		t.Fatalf("cleaned %+v: want one file ref under the destination name, without its original name, and no file column in the rows", out)
	}
	if err := c.CheckDestination([]messages.Field{fld("record_id", "consent", "text"), fld("consent_file", "consent", "text")}); err == nil ||
		!strings.Contains(err.Error(), "file field consent_pdf → consent_file: the destination field is a text field, not a file-upload field") {
		t.Fatalf("destination check: %v", err)
	}
	if _, err := Compile(mustParse(t, strings.Replace(pol, "rule: drop", "rule: hash", 1)), meta, opts()); err == nil || !strings.Contains(err.Error(), "rule hash does not apply to a file") {
		t.Fatalf("hash on a file: %v", err)
	}
}
