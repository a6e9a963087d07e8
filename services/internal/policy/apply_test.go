package policy

import (
	"encoding/json"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redcap-relay/relay/messages"
)

func healMeta() *messages.MetadataSnapshot {
	s := snap(
		fld("record_id", "demographics", "text"),
		fld("dem_first_name", "demographics", "text"),
		fld("dem_dob", "demographics", "text", "date_ymd"),
		fld("dem_age", "demographics", "text", "integer"),
		fld("dem_zip", "demographics", "text", "zipcode"),
		fld("dem_sex", "demographics", "radio", "", "1, Male | 2, Female | 3, Intersex"),
		fld("dem_race", "demographics", "checkbox", "", "1, A | 2, B | 3, C | 99, Other"),
		fld("dem_race_oth", "demographics", "text"),
		fld("dem_email", "demographics", "text", "email"),
		fld("dem_visit", "demographics", "text", "datetime_seconds_ymd"),
		fld("dem_intro", "demographics", "descriptive"),
		fld("peg_pain", "peg", "radio", "", "0, 0 | 1, 1 | 2, 2 | 10, 10"),
		fld("peg_date", "peg", "text", "date_ymd"),
		fld("peg_time", "peg", "text", "datetime_ymd"),
		fld("ct_phone", "contact", "text", "phone"),
		fld("ct_address", "contact", "notes"),
		fld("sleep_hours", "sleep", "text", "number"),
		fld("sleep_date", "sleep", "text", "date_ymd"),
	)
	s.Project.IsLongitudinal = 1
	s.Events = []messages.Event{{UniqueEventName: "baseline_arm_1"}, {UniqueEventName: "month3_arm_1"}, {UniqueEventName: "screening_arm_1"}}
	s.ComputeHash()
	return s
}

const healPolicy = `
name: heal-test
approved:
  forms: [demographics, peg, sleep]
  events: [baseline_arm_1, month3_arm_1]
record_id: {mode: namespace}
dates: shift
free_text: drop
survey_timestamps: year
rules:
  - field: dem_first_name
    rule: drop
  - field: dem_dob
    rule: year
  - field: dem_age
    rule: cap_age
  - field: dem_zip
    rule: zip3
  - validation: email
    rule: hash
rename:
  record_id: participant_id
  dem_sex: sex
  peg_complete: pain_complete
  demographics_timestamp: demographics_completed_year  # REDCap ignores <form>_timestamp on import
recode:
  dem_sex: {"3": "9"}
  dem_race: {"99": "98"}
`

func healRecord() messages.RecordExported {
	return messages.RecordExported{
		V: 1, Site: "site_a", RunID: "site_a-run1", RecordID: "17", Version: 1700000000000, Hash: "h", MetadataHash: "m",
		Rows: []messages.Row{
			{"record_id": "17", "redcap_event_name": "baseline_arm_1", "redcap_repeat_instrument": "", "redcap_repeat_instance": "",
				"redcap_data_access_group": "site_dag_x", "redcap_survey_identifier": "Jane Roe",
				"dem_first_name": "Jane", "dem_dob": "1931-05-17", "dem_age": "93", "dem_zip": "03601", "dem_sex": "3",
				"dem_race___1": "1", "dem_race___2": "0", "dem_race___3": "0", "dem_race___99": "1", "dem_race_oth": "Martian from Elm Street",
				"dem_email": "Jane.Roe@example.org", "dem_visit": "2024-02-29 10:11:12", "demographics_complete": "2",
				"demographics_timestamp": "2024-02-29 10:15:00",
				"peg_pain":               "7", "peg_date": "2024-03-01", "peg_time": "2024-03-01 09:30", "peg_complete": "1",
				"ct_phone": "(336) 555-0199", "ct_address": "12 Elm Street", "contact_complete": "2",
				"unknown_new_field": "secret-new"},
			{"record_id": "17", "redcap_event_name": "baseline_arm_1", "redcap_repeat_instrument": "sleep", "redcap_repeat_instance": "2",
				"sleep_hours": "6.5", "sleep_date": "2024-03-02", "sleep_complete": "2"},
			{"record_id": "17", "redcap_event_name": "baseline_arm_1", "redcap_repeat_instrument": "contact", "redcap_repeat_instance": "1",
				"ct_phone": "(336) 555-0100"},
			{"record_id": "17", "redcap_event_name": "screening_arm_1", "redcap_repeat_instrument": "", "redcap_repeat_instance": "",
				"peg_pain": "2", "peg_date": "2024-01-01"},
		},
	}
}

func TestApplyHealRecord(t *testing.T) {
	c := mustCompile(t, healPolicy, healMeta(), opts())
	out, err := c.Apply(healRecord())
	if err != nil {
		t.Fatal(err)
	}
	if out.Site != "site_a" || out.RunID != "site_a-run1" || out.SourceRecord != "17" || out.DestRecordID != "A-17" ||
		out.Version != 1700000000000 || out.PolicyVersion != c.Version() || out.DAG != "site_a" || out.Deleted || out.V != messages.V {
		t.Fatalf("envelope: %+v", out)
	}
	if out.Hash != messages.HashRows(out.Rows) {
		t.Fatal("hash is not HashRows(rows)")
	}
	if len(out.Rows) != 2 {
		t.Fatalf("rows = %d, want 2 (contact instance and screening event left out): %v", len(out.Rows), out.Rows)
	}
	days := c.ShiftDays("17")
	shifted := func(layout, v string) string {
		tm, _ := time.Parse(layout, v)
		return tm.AddDate(0, 0, -days).Format(layout)
	}
	want0 := messages.Row{
		"participant_id": "A-17", "redcap_event_name": "baseline_arm_1", "redcap_repeat_instrument": "", "redcap_repeat_instance": "",
		"redcap_data_access_group": "site_a",
		"dem_dob":                  "1931", "dem_age": "90", "dem_zip": "000", "sex": "9",
		"dem_race___1": "1", "dem_race___2": "0", "dem_race___3": "0", "dem_race___98": "1",
		"dem_email": c.hashValue("jane.roe@example.org"), "dem_visit": shifted("2006-01-02 15:04:05", "2024-02-29 10:11:12"),
		"demographics_complete": "2", "demographics_completed_year": "2024",
		"peg_pain": "7", "peg_date": shifted("2006-01-02", "2024-03-01"), "peg_time": shifted("2006-01-02 15:04", "2024-03-01 09:30"),
		"pain_complete": "1",
	}
	if !reflect.DeepEqual(out.Rows[0], want0) {
		t.Errorf("row 0:\n got %v\nwant %v", out.Rows[0], want0)
	}
	want1 := messages.Row{"participant_id": "A-17", "redcap_event_name": "baseline_arm_1", "redcap_repeat_instrument": "sleep",
		"redcap_repeat_instance": "2", "redcap_data_access_group": "site_a",
		"sleep_hours": "6.5", "sleep_date": shifted("2006-01-02", "2024-03-02"), "sleep_complete": "2"}
	if !reflect.DeepEqual(out.Rows[1], want1) {
		t.Errorf("row 1:\n got %v\nwant %v", out.Rows[1], want1)
	}
	b, _ := json.Marshal(out)
	for _, phi := range []string{"Jane", "Roe", "Elm", "555-", "03601", "1931-05-17", "secret-new", "site_dag_x"} {
		if strings.Contains(string(b), phi) {
			t.Errorf("output contains %q", phi)
		}
	}
}

func TestExportFieldsAndEvents(t *testing.T) {
	c := mustCompile(t, healPolicy, healMeta(), opts())
	want := []string{"record_id", "dem_dob", "dem_age", "dem_zip", "dem_sex", "dem_race", "dem_email", "dem_visit", "demographics_complete",
		"peg_pain", "peg_date", "peg_time", "peg_complete", "sleep_hours", "sleep_date", "sleep_complete"}
	if got := c.ExportFields(); !reflect.DeepEqual(got, want) {
		t.Errorf("ExportFields:\n got %v\nwant %v", got, want)
	}
	if got := c.ExportEvents(); !reflect.DeepEqual(got, []string{"baseline_arm_1", "month3_arm_1"}) {
		t.Errorf("ExportEvents = %v", got)
	}
	if c.RecordIDField() != "record_id" {
		t.Errorf("RecordIDField = %s", c.RecordIDField())
	}
	c2 := mustCompile(t, "name: x\napproved: {forms: [peg]}\ndates: drop\n", healMeta(), opts())
	if c2.ExportEvents() != nil {
		t.Errorf("no approved events should mean all (nil), got %v", c2.ExportEvents())
	}
	if got := c2.ExportFields(); !reflect.DeepEqual(got, []string{"record_id", "peg_pain", "peg_complete"}) {
		t.Errorf("dropped dates must not even be exported: %v", got)
	}
}

func TestApplyDeterministicAndKeyed(t *testing.T) {
	meta := healMeta()
	c1 := mustCompile(t, healPolicy, meta, opts())
	c2 := mustCompile(t, healPolicy, meta, opts()) // another run / replica
	a, _ := c1.Apply(healRecord())
	b, _ := c2.Apply(healRecord())
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	if string(ja) != string(jb) {
		t.Fatal("same input gave different output")
	}
	o := opts()
	o.Key = []byte("another-key")
	c3 := mustCompile(t, healPolicy, meta, o)
	d, _ := c3.Apply(healRecord())
	if d.Rows[0]["dem_email"] == a.Rows[0]["dem_email"] {
		t.Error("a different key gave the same hash")
	}
	if c3.Version() == c1.Version() {
		t.Error("a different key must change the compiled version")
	}
	if !strings.HasPrefix(c1.Version(), mustParse(t, healPolicy).Version()+"+") {
		t.Errorf("compiled version %s does not start with the policy version", c1.Version())
	}
}

func TestShiftOffsets(t *testing.T) {
	c := mustCompile(t, healPolicy, healMeta(), opts())
	seen := map[int]int{}
	for i := 0; i < 3000; i++ {
		id := string(rune('a'+i%26)) + strings.Repeat("x", i%7) + itoa(i)
		d := c.ShiftDays(id)
		if d < 0 || d > 364 {
			t.Fatalf("offset %d out of 0..364", d)
		}
		if d != c.ShiftDays(id) {
			t.Fatal("offset not stable")
		}
		seen[d]++
	}
	if len(seen) < 330 {
		t.Errorf("3000 records used only %d distinct offsets", len(seen))
	}
	// Every date of a record moves by the same offset.
	rec := messages.RecordExported{Site: "site_a", RecordID: "r9", Rows: []messages.Row{
		{"record_id": "r9", "redcap_event_name": "baseline_arm_1", "peg_date": "2020-01-01", "peg_time": "2020-01-01 00:00"},
		{"record_id": "r9", "redcap_event_name": "month3_arm_1", "peg_date": "2020-01-01"},
		{"record_id": "r9", "redcap_event_name": "month3_arm_1", "redcap_repeat_instrument": "sleep", "redcap_repeat_instance": "1", "sleep_date": "2020-01-01"},
	}}
	out, err := c.Apply(rec)
	if err != nil {
		t.Fatal(err)
	}
	want := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, -c.ShiftDays("r9")).Format("2006-01-02")
	if out.Rows[0]["peg_date"] != want || out.Rows[1]["peg_date"] != want || out.Rows[2]["sleep_date"] != want || out.Rows[0]["peg_time"] != want+" 00:00" {
		t.Errorf("dates of one record shifted differently: %v", out.Rows)
	}
	// Different namespaces (sites) give the same record ID a different offset.
	o := opts()
	o.Namespace = "B"
	cb := mustCompile(t, healPolicy, healMeta(), o)
	differ := 0
	for i := 0; i < 50; i++ {
		if cb.ShiftDays(itoa(i)) != c.ShiftDays(itoa(i)) {
			differ++
		}
	}
	if differ < 45 {
		t.Errorf("namespaces share offsets: only %d of 50 differ", differ)
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

func TestZIP3SafeHarbor(t *testing.T) {
	for _, z := range LowPopulationZIP3 {
		for _, v := range []string{z + "12", z + "99-1234", z + "001234"} {
			got, err := ZIP3(v)
			if err != nil || got != "000" {
				t.Errorf("ZIP3(%s) = %q, %v; want 000", v, got, err)
			}
		}
	}
	for v, want := range map[string]string{"27157": "271", "27157-1234": "271", "10001": "100", "03701": "037", "05801": "058", "99950": "999", " 90210 ": "902"} {
		if got, err := ZIP3(v); err != nil || got != want {
			t.Errorf("ZIP3(%s) = %q, %v; want %s", v, got, err, want)
		}
	}
	for _, bad := range []string{"2715", "27157-12", "A1B 2C3", "abcde", "123456"} {
		if _, err := ZIP3(bad); err == nil {
			t.Errorf("ZIP3(%q) accepted", bad)
		} else if strings.Contains(err.Error(), bad) {
			t.Errorf("error quotes the value: %v", err)
		}
	}
}

func TestCapAgeSafeHarbor(t *testing.T) {
	for v, want := range map[string]string{"0": "0", "45": "45", "89": "89", "89.9": "89.9", "90": "90", "91": "90", "104": "90", "90.5": "90", "120": "90"} {
		if got, err := CapAgeValue(v); err != nil || got != want {
			t.Errorf("CapAgeValue(%s) = %q, %v; want %s", v, got, err, want)
		}
	}
	if _, err := CapAgeValue("ninety"); err == nil {
		t.Error("non-number accepted")
	}
}

func TestYearAndShiftLayouts(t *testing.T) {
	for _, tc := range []struct {
		kind dateKind
		in   string
		year string
	}{{kindDate, "1999-12-31", "1999"}, {kindDatetime, "2000-01-01 00:05", "2000"}, {kindDatetimeSeconds, "2001-06-30 23:59:59", "2001"}} {
		y, err := yearOf(tc.kind, tc.in)
		if err != nil || y != tc.year {
			t.Errorf("yearOf(%s) = %s, %v", tc.in, y, err)
		}
		s, err := shiftDate(tc.kind, tc.in, 364)
		if err != nil || len(s) != len(tc.in) {
			t.Errorf("shiftDate(%s) = %s, %v", tc.in, s, err)
		}
	}
	if s, _ := shiftDate(kindDate, "2024-03-01", 1); s != "2024-02-29" {
		t.Errorf("leap day: %s", s)
	}
	for _, bad := range []string{"03/01/2024", "2024-13-01", "2024-02-30", "yesterday", "2024-03-01T10:00:00Z"} {
		if _, err := shiftDate(kindDate, bad, 3); !errors.Is(err, errNotDate) {
			t.Errorf("shiftDate(%q) err = %v", bad, err)
		}
	}
}

func TestApplyErrorsNameFieldNotValue(t *testing.T) {
	c := mustCompile(t, healPolicy, healMeta(), opts())
	rec := healRecord()
	rec.Rows[0]["dem_dob"] = "17/05/1931-SECRET"
	rec.Rows[0]["dem_zip"] = "ZIP-SECRET"
	rec.Rows[0]["dem_age"] = "AGE-SECRET"
	rec.Rows[1]["sleep_date"] = "DATE-SECRET"
	_, err := c.Apply(rec)
	var ae *ApplyError
	if !errors.As(err, &ae) {
		t.Fatalf("err = %v", err)
	}
	msg := err.Error()
	if strings.Contains(msg, "SECRET") || strings.Contains(msg, "1931") {
		t.Fatalf("error leaks a value: %s", msg)
	}
	for _, want := range []string{"site site_a", "record 17", "field dem_dob (rule year)", "field dem_zip (rule zip3)", "field dem_age (rule cap_age)", "field sleep_date (rule shift)"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q: %s", want, msg)
		}
	}
	if len(ae.Problems()) != 4 {
		t.Errorf("problems = %v", ae.Problems())
	}
	// Errors are deterministic too.
	_, err2 := c.Apply(rec)
	if err2.Error() != msg {
		t.Error("error text differs between runs")
	}
}

func TestApplyDeletedAndHMAC(t *testing.T) {
	y := strings.Replace(healPolicy, "record_id: {mode: namespace}", "record_id: {mode: hmac}", 1)
	c := mustCompile(t, y, healMeta(), opts())
	id := c.DestRecordID("17")
	if !strings.HasPrefix(id, "A-") || len(id) != 18 || strings.Contains(id, "17") && id == "A-17" {
		t.Errorf("hmac id = %s", id)
	}
	if c.DestRecordID("17") != id || c.DestRecordID("18") == id {
		t.Error("hmac ids not stable or not distinct")
	}
	out, err := c.Apply(messages.RecordExported{Site: "site_a", RecordID: "17", Version: 5, Deleted: true})
	if err != nil || !out.Deleted || len(out.Rows) != 0 || out.DestRecordID != id || out.Hash == "" {
		t.Errorf("deleted: %+v %v", out, err)
	}
	// A record of another site is refused.
	if _, err := c.Apply(messages.RecordExported{Site: "site_b", RecordID: "1"}); err == nil {
		t.Error("record of another site accepted")
	}
	// Without a key, keyed rules are refused at compile time.
	o := opts()
	o.Key = nil
	_, err = Compile(mustParse(t, y), healMeta(), o)
	if err == nil || !strings.Contains(err.Error(), "pseudonym_key") || !strings.Contains(err.Error(), "record_id mode hmac") ||
		!strings.Contains(err.Error(), "hash on field dem_email") || !strings.Contains(err.Error(), "shift on field peg_date") {
		t.Errorf("missing key: %v", err)
	}
}

func TestNoDAG(t *testing.T) {
	o := opts()
	o.DAG = ""
	c := mustCompile(t, healPolicy, healMeta(), o)
	out, _ := c.Apply(healRecord())
	if _, ok := out.Rows[0]["redcap_data_access_group"]; ok || out.DAG != "" {
		t.Error("DAG column written without a DAG")
	}
}
