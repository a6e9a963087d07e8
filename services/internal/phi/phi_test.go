package phi

import (
	"reflect"
	"strings"
	"testing"

	"github.com/redcap-relay/relay/messages"
)

func TestTokens(t *testing.T) {
	for name, want := range map[string]string{
		"first_name":          "first name",
		"homePhone":           "home phone",
		"SSNumber":            "ss number",
		"zip5":                "zip 5",
		"ptname":              "pt name",
		"dateofbirth":         "date of birth",
		"emailaddress":        "email address",
		"telephone_1":         "telephone 1",
		"ethnicity":           "ethnicity",
		"capacity":            "capacity",
		"stage":               "stage",
		"dosage":              "dosage",
		"med_name_code":       "med name code",
		"BPIAvgPainRatingScl": "bpi avg pain rating scl",
		"recordid":            "record id",
	} {
		if got := strings.Join(Tokens(name), " "); got != want {
			t.Errorf("Tokens(%s) = %q, want %q", name, got, want)
		}
	}
}

func text(name string) messages.Field {
	return messages.Field{FieldName: name, FormName: "f", FieldType: "text", TextValidationTypeOrShowSlider: "integer"}
}

func coded(name string) messages.Field {
	return messages.Field{FieldName: name, FormName: "f", FieldType: "dropdown", SelectChoicesOrCalculations: "1, A | 2, B"}
}

// Every Safe Harbor category is caught by names, abbreviations and
// synonyms, whatever the validation (an integer-validated SSN is an SSN).
func TestEveryCategoryByName(t *testing.T) {
	cases := map[Category][]string{
		Names:      {"name", "first_name", "lastname", "pt_last", "ptname", "fname", "surname", "mother_maiden", "initials", "employer", "next_of_kin", "participantName"},
		Geographic: {"address", "home_addr", "street", "city", "town", "county", "zip", "zip5", "zipcode", "postal_code", "postcode", "latitude", "gps_coordinates", "neighborhood"},
		Dates:      {"dob", "dob_2", "date_of_birth", "birthdate", "birth_month", "dod", "date_of_death", "age", "age_yrs", "pt_age"},
		Phone:      {"phone", "home_phone", "telephone_1", "tel", "cell", "cell_number", "mobile", "mobile_no", "ph_no", "homePhone", "cellphone", "pager"},
		Fax:        {"fax", "fax_number"},
		Email:      {"email", "e_mail", "email_addr", "emailaddress"},
		SSN:        {"ssn", "social_security_number", "ss_no", "SSNumber", "ssn_last4"},
		MRN:        {"mrn", "mrn_10", "medical_record_number", "medrec", "chart_no", "emr_id", "hospital_number"},
		HealthPlan: {"medicaid_id", "medicare_number", "insurance_member_id", "health_plan_id", "subscriber_no", "mbi"},
		Account:    {"account_number", "acct", "bank_account", "iban", "credit_card", "card_no"},
		License:    {"drivers_license", "license_no", "licence_number", "passport", "certificate_number"},
		Vehicle:    {"vin", "license_plate", "vehicle_id", "plate_number"},
		Device:     {"device_serial", "device_id", "serial_no", "serialnumber", "udi", "imei", "mac_address"},
		URL:        {"url", "website", "homepage", "web_address"},
		IP:         {"ip_address", "ipaddr", "ipv4", "ip"},
		Biometric:  {"fingerprint", "voice_print", "retina_scan", "biometric_id", "signature"},
		Photo:      {"photo", "face_photo", "headshot", "photograph"},
		OtherID:    {"username", "user_id", "login", "national_id", "employee_id", "tax_id"},
	}
	for _, c := range Categories {
		if len(cases[c]) == 0 {
			t.Errorf("category %s has no test names", c)
		}
	}
	for cat, names := range cases {
		for _, n := range names {
			ds := Detect(text(n))
			if !hasCat(ds, cat) {
				t.Errorf("%s: detected %v, want category %s", n, ds, cat)
			}
		}
	}
}

// Look-alikes: each is a word a clinical dictionary uses for something
// else. A false positive costs a site a policy rule, so these matter.
func TestLookAlikesAreNotIdentifiers(t *testing.T) {
	for _, n := range []string{
		"med_name_code", "med_name", "drug_name", "study_name", "site_name", "event_name", "form_name",
		"ethnicity", "capacity", "lastly", "last_dose", "first_visit", "last_visit_type", "stage", "page", "dosage", "average_pain",
		"cell_count", "white_cell", "mobile_app_use", "ip_visits", "iptime", "adobe", "phq_interest", "gad2feelnervscl",
		"sex_at_birth", "given_birth", "birth_weight", "birth_order", "country_of_birth", "state", "country", "record_id", "recordid", "study_id",
		"subject_id", "participant_id", "insurance_type", "account_type", "card_sort", "member_of_team", "serial7s_score",
		"voice_quality", "face_pain_scale", "image_rating", "plate_count", "initial_visit", "dem_gender", "dem_sex",
		"pegavgpainscl", "sd6a_sleep109", "whoqol_qol", "opioid_mme_daily", "taps1drugscl", "url_clicked_yn",
	} {
		var f messages.Field
		if n == "url_clicked_yn" || n == "insurance_type" || n == "account_type" || n == "face_pain_scale" {
			f = coded(n)
		} else {
			f = text(n)
		}
		for _, d := range Detect(f) {
			if d.Basis == Name || d.Basis == Age {
				t.Errorf("%s: detected %v", n, d)
			}
		}
	}
}

// A coded field cannot hold a typed name or number, but it can hold a
// place, a birth date element or an age group.
func TestCodedFields(t *testing.T) {
	for n, want := range map[string][]Category{
		"med_name_code": nil,
		"phone_type":    nil,
		"email_ok":      nil,
		"home_city":     {Geographic},
		"birth_month":   {Dates},
		"age_group":     {Dates},
		"county":        {Geographic},
	} {
		got := CategoriesOf(Detect(coded(n)))
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s (coded): categories %v, want %v", n, got, want)
		}
	}
}

func TestValidationsWhateverTheName(t *testing.T) {
	for v, cat := range map[string]Category{"email": Email, "phone": Phone, "phone_australia": Phone, "ssn": SSN,
		"mrn_10d": MRN, "mrn_generic": MRN, "vmrn": MRN, "zipcode": Geographic, "postalcode_canada": Geographic, "date_ymd": Dates} {
		f := messages.Field{FieldName: "q17", FormName: "f", FieldType: "text", TextValidationTypeOrShowSlider: v}
		ds := Detect(f)
		if !hasCat(ds, cat) {
			t.Errorf("validation %s: %v, want %s", v, ds, cat)
		}
	}
	f := messages.Field{FieldName: "visit", FormName: "f", FieldType: "text", TextValidationTypeOrShowSlider: "date_mdy"}
	ds := Detect(f)
	if len(ds) != 1 || ds[0].Basis != Date || ds[0].Strong() || !ds[0].AsksFlag() {
		t.Errorf("a visit date: %v", ds)
	}
}

func TestBasesAndStrings(t *testing.T) {
	ds := Detect(messages.Field{FieldName: "notes", FormName: "f", FieldType: "notes"})
	if len(ds) != 1 || ds[0].Basis != FreeText || ds[0].Strong() || ds[0].AsksFlag() {
		t.Errorf("notes: %v", ds)
	}
	ds = Detect(messages.Field{FieldName: "consent_scan", FormName: "f", FieldType: "file"})
	if len(ds) != 1 || ds[0].Basis != File || ds[0].AsksFlag() {
		t.Errorf("file: %v", ds)
	}
	ds = Detect(messages.Field{FieldName: "x", FormName: "f", FieldType: "text", TextValidationTypeOrShowSlider: "integer", Identifier: "y"})
	if len(ds) != 1 || ds[0].Basis != Flagged || !ds[0].Strong() {
		t.Errorf("flagged: %v", ds)
	}
	ds = Detect(text("pt_age"))
	if len(ds) != 1 || ds[0].Basis != Age || !ds[0].Strong() || ds[0].AsksFlag() {
		t.Errorf("age: %v", ds)
	}
	ds = Detect(text("home_phone"))
	if got := ds[0].String(); got != "name part 'phone' [(D) telephone numbers]" {
		t.Errorf("String() = %q", got)
	}
	if Detect(messages.Field{FieldName: "name_intro", FieldType: "descriptive"}) != nil {
		t.Error("descriptive text detected")
	}
}

func hasCat(ds []Detection, c Category) bool {
	for _, d := range ds {
		for _, x := range d.Categories {
			if x == c {
				return true
			}
		}
	}
	return false
}
