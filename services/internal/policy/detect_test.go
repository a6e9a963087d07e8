package policy

import (
	"strings"
	"testing"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/testfixtures"
)

// REDCap's own validation-suite project flags 2 of 62 fields; every SSN,
// MRN, phone, e-mail, ZIP/postal and date field must be caught anyway.
func TestDetectProject1xmlUnflaggedIdentifiers(t *testing.T) {
	fields := project1xml(t)
	if len(fields) != 62 {
		t.Fatalf("fixture has %d fields, want 62", len(fields))
	}
	flagged := 0
	for _, f := range fields {
		if f.Identifier == "y" {
			flagged++
		}
	}
	if flagged != 2 {
		t.Fatalf("fixture flags %d fields, want 2", flagged)
	}
	want := map[string]Category{
		"email": CatValidation, "email_survey": CatValidation, "email_consent": CatValidation, "email_v2": CatValidation,
		"ssn": CatValidation, "mrn_10_digits": CatValidation, "mrn": CatValidation,
		"phone_north_america": CatValidation, "phone_australia": CatValidation, "phone_uk": CatValidation,
		"zipcode_us": CatValidation, "postal_5": CatValidation, "postal_code_australia": CatValidation, "postal_code_canada": CatValidation,
		"date_ymd": CatDate, "date_mdy": CatDate, "date_dmy": CatDate, "dob": CatDate,
		"datetime_ymd_hmss": CatDate, "datetime_ymd_hm": CatDate, "datetime_mdy_hmss": CatDate, "datetime_dmy_hmss": CatDate,
		"identifier": CatFlagged, "identifier_2": CatFlagged,
		"name": CatName, "ptname": CatName, "name_survey": CatName, "name_consent": CatName, "name_v2": CatName,
		"notesbox": CatFreeText, "textbox": CatFreeText, "letters": CatFreeText,
		"signature": CatFile, "file_upload": CatFile, "signature_consent": CatFile,
	}
	got := map[string][]Detection{}
	for _, f := range fields {
		got[f.FieldName] = Detect(f)
	}
	for name, cat := range want {
		if !hasCategory(got[name], cat) {
			t.Errorf("%s: detected %v, want category %s", name, got[name], cat)
		}
	}
	// The DOB is caught twice: as a date and by its name.
	if !hasCategory(got["dob"], CatName) {
		t.Errorf("dob: %v, want a name detection too", got["dob"])
	}
	// Not identifiers: coded and numeric fields, times.
	for _, name := range []string{"radio", "checkbox", "integer", "number", "calc_test", "time_hhmm", "time_mmss", "multiple_dropdown_auto"} {
		if ds := got[name]; len(ds) != 0 {
			t.Errorf("%s: detected %v, want nothing", name, ds)
		}
	}
}

// An "approve everything" policy with no rules is refused, and the refusal
// names every unflagged identifier and the rule it needs.
func TestCompileRefusesProject1xmlWithoutRules(t *testing.T) {
	fields := project1xml(t)
	p := mustParse(t, `
name: everything
approved:
  forms: [text_validation, data_types, survey, consent, data_dictionary_form, text_validation_2]
`)
	_, err := Compile(p, snap(fields...), opts())
	if err == nil {
		t.Fatal("compile accepted identifiers without rules")
	}
	msg := err.Error()
	for _, name := range []string{"ssn", "mrn_10_digits", "mrn", "phone_north_america", "phone_uk", "email", "email_v2",
		"zipcode_us", "postal_code_canada", "date_ymd", "datetime_dmy_hmss", "dob", "identifier", "ptname", "notesbox"} {
		if !strings.Contains(msg, "field "+name+":") {
			t.Errorf("refusal does not name %s:\n%s", name, msg)
		}
	}
	for _, hint := range []string{"validation ssn", "rule: zip3", "shift, year, drop", "free_text: drop"} {
		if !strings.Contains(msg, hint) {
			t.Errorf("refusal lacks hint %q", hint)
		}
	}
	if !strings.Contains(msg, "test.yaml") || !strings.Contains(msg, "site_a") {
		t.Errorf("refusal does not name the file and site: %s", msg)
	}
	// With explicit rules it compiles.
	p = mustParse(t, `
name: everything-decided
approved:
  forms: [text_validation, data_types, survey, consent, data_dictionary_form, text_validation_2]
dates: shift
free_text: drop
rules:
  - validation: [email, "phone*", ssn, "mrn_*", "postalcode_*"]
    rule: drop
  - validation: zipcode
    rule: zip3
  - fields: [identifier, identifier_2, name, ptname, name_survey, name_consent, name_v2]
    rule: drop
  - field: dob
    rule: year
`)
	c, err := Compile(p, snap(fields...), opts())
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	for _, d := range c.Decisions() {
		if hasStrong(d.Detected) && d.Action == Keep {
			t.Errorf("%s: identifier kept", d.Field)
		}
	}
}

func TestNameTokens(t *testing.T) {
	for name, want := range map[string]bool{
		"first_name": true, "pt_last": true, "home_city": true, "ethnicity": false, "capacity": false, "lastly": false,
		"dob": true, "dob_2": true, "adobe": false, "home_phone": true, "zip5": true, "email_addr": true, "page": false,
		"mobile": true, "cell": true, "cell_count": false, "ssn_int": true, "mrn_number": true, "last_dose": false,
	} {
		f := fld(name, "f", "text", "integer")
		if got := hasCategory(Detect(f), CatName); got != want {
			t.Errorf("name detection of %s = %v, want %v (%v)", name, got, want, Detect(f))
		}
	}
	for name, want := range map[string]bool{"age": true, "age_yrs": true, "pt_age": true, "page": false, "stage": false, "age2": true} {
		f := fld(name, "f", "text", "integer")
		if got := hasCategory(Detect(f), CatAge); got != want {
			t.Errorf("age detection of %s = %v, want %v", name, got, want)
		}
	}
}

// A field named like an SSN or MRN is an identifier whatever its
// validation, and the detection names its Safe Harbor category.
func TestNamedIdentifiersNeedARule(t *testing.T) {
	m := snap(fld("record_id", "f", "text"), fld("pt_ssn", "f", "text", "integer"), fld("mrn", "f", "text", "integer"),
		fld("cell", "f", "text", "integer"), fld("score", "f", "text", "integer"))
	_, err := Compile(mustParse(t, "name: x\napproved:\n  forms: [f]\n"), m, opts())
	if err == nil {
		t.Fatal("compile accepted unruled identifiers")
	}
	for _, want := range []string{"field pt_ssn:", "(G) social security numbers", "field mrn:", "(H) medical record numbers", "field cell:", "(D) telephone numbers"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal lacks %q:\n%v", want, err)
		}
	}
	if strings.Contains(err.Error(), "field score:") {
		t.Errorf("score refused: %v", err)
	}
}

func TestCodedFieldNames(t *testing.T) {
	if ds := Detect(fld("med_name_code", "f", "dropdown", "", "1, A | 2, B")); len(ds) != 0 {
		t.Errorf("coded drug list detected: %v", ds)
	}
	if !hasCategory(Detect(fld("home_city", "f", "dropdown", "", "1, A | 2, B")), CatName) {
		t.Error("coded city not detected")
	}
	if !hasCategory(Detect(fld("birth_month", "f", "radio", "", "1, Jan | 2, Feb")), CatName) {
		t.Error("coded birth month not detected")
	}
	if !hasCategory(Detect(fld("age_group", "f", "radio", "", "1, <50 | 2, 50+")), CatAge) {
		t.Error("coded age not detected")
	}
}

func project1xml(t testing.TB) []messages.Field {
	t.Helper()
	b, err := testfixtures.Read("Project1xml_DataDictionary.csv")
	if err != nil {
		t.Fatal(err)
	}
	return parseDictionaryCSV(t, b)
}

// The shipped sample policy still decides every identifier of a site that
// has the forms and fields it names, with the shared detector's wider
// lexicon: nothing it approves is refused as undecided.
func TestShippedPolicyDecidesItsIdentifiers(t *testing.T) {
	pol, err := Load("../../../deploy/policies/heal-core.yaml")
	if err != nil {
		t.Fatal(err)
	}
	fields := []messages.Field{fld("record_id", "demographics", "text")}
	for _, n := range []string{"first_name", "last_name", "middle_name", "street_address", "city", "phone_number", "email_address", "dem_gender_other"} {
		fields = append(fields, fld(n, "demographics", "text"))
	}
	fields = append(fields, fld("dob", "demographics", "text", "date_ymd"), fld("zip_code", "demographics", "text", "zipcode"),
		fld("age", "demographics", "text", "integer"), fld("dem_sex", "demographics", "radio", "", "1, Male | 2, Female | 3, Prefer not to say"),
		fld("dem_email", "demographics", "text", "email"), fld("dem_cell", "demographics", "text", "phone"))
	for _, form := range pol.Approved.Forms[1:] {
		fields = append(fields, fld(form+"_score", form, "text", "integer"), fld(form+"_date", form, "text", "date_ymd"))
	}
	fields = append(fields, fld("consent_version", "consent", "text", "integer"))
	m := snap(fields...)
	m.Project.IsLongitudinal = 1
	for _, e := range pol.Approved.Events {
		m.Events = append(m.Events, messages.Event{UniqueEventName: e, ArmNum: 1, EventName: e})
	}
	ds := Explain(pol, m, opts())
	if _, err := Compile(pol, m, opts()); err != nil {
		t.Fatalf("the shipped policy is refused: %v", err)
	}
	for _, d := range ds {
		if d.Approved && hasStrong(d.Detected) && d.Action == Keep && d.Justification == "" {
			t.Errorf("%s: an identifier kept without a justification", d.Field)
		}
	}
}
