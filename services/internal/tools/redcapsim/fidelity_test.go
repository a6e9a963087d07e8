package redcapsim

import (
	"encoding/csv"
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"
)

func TestSimpleExportMatchesExpectedJSON(t *testing.T) {
	e := loadFixture(t, "simple")
	code, body := e.call("content", "record", "format", "json", "type", "flat")
	if code != 200 {
		t.Fatalf("status %d: %s", code, body)
	}
	want, err := os.ReadFile("testdata/expected/simple-export-raw.json")
	if err != nil {
		t.Fatal(err)
	}
	if body != string(want) {
		var got, exp any
		_ = json.Unmarshal([]byte(body), &got)
		_ = json.Unmarshal(want, &exp)
		if !reflect.DeepEqual(got, exp) {
			t.Fatalf("JSON export differs from expected.\n got: %s\nwant: %s", body, want)
		}
		t.Logf("JSON equal by value but not byte for byte")
	}
}

func TestSimpleExportMatchesExpectedCSV(t *testing.T) {
	e := loadFixture(t, "simple")
	code, body := e.call("content", "record", "format", "csv", "type", "flat")
	if code != 200 {
		t.Fatalf("status %d: %s", code, body)
	}
	want, err := os.ReadFile("testdata/expected/simple-export-raw.csv")
	if err != nil {
		t.Fatal(err)
	}
	if body != string(want) {
		t.Fatalf("CSV export differs.\n got: %q\nwant: %q", body, want)
	}
}

// compareCSV compares two CSV bodies cell by cell.
func compareCSV(t *testing.T, got, want string, norm ...func(string) string) {
	t.Helper()
	g, err := csv.NewReader(strings.NewReader(got)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	w, err := csv.NewReader(strings.NewReader(want)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g[0], w[0]) {
		t.Fatalf("header differs:\n got %v\nwant %v", g[0], w[0])
	}
	if len(g) != len(w) {
		t.Fatalf("got %d rows, want %d", len(g)-1, len(w)-1)
	}
	bad := 0
	for i := 1; i < len(w); i++ {
		for j := range w[i] {
			gv, wv := g[i][j], w[i][j]
			for _, n := range norm {
				gv, wv = n(gv), n(wv)
			}
			if gv != wv && bad < 20 {
				bad++
				t.Errorf("row %d column %s: got %q, want %q", i, w[0][j], g[i][j], w[i][j])
			}
		}
	}
}

func TestVignetteRepeatingExport(t *testing.T) {
	e := loadFixture(t, "vignette-repeating")
	code, body := e.call("content", "record", "format", "csv")
	if code != 200 {
		t.Fatalf("status %d: %s", code, body)
	}
	want, _ := os.ReadFile("testdata/projects/vignette-repeating/data.csv")
	if body != string(want) {
		compareCSV(t, body, string(want))
		t.Logf("equal cell by cell, not byte for byte")
	}
	// JSON: repeat instance is an integer on repeating rows, "" otherwise.
	code, body = e.call("content", "record", "format", "json", "records", "1")
	if code != 200 {
		t.Fatal(body)
	}
	if !strings.HasPrefix(body, `[{"record_id":"1","redcap_repeat_instrument":"","redcap_repeat_instance":"","height":"1.0"`) ||
		!strings.Contains(body, `{"record_id":"1","redcap_repeat_instrument":"blood_pressure","redcap_repeat_instance":1,"height":""`) {
		t.Fatalf("unexpected JSON: %s", body)
	}
	var info map[string]any
	_, body = e.call("content", "project", "format", "json")
	_ = json.Unmarshal([]byte(body), &info)
	if info["has_repeating_instruments_or_events"] != float64(1) || info["is_longitudinal"] != float64(0) {
		t.Fatalf("project info: %s", body)
	}
	_, body = e.call("content", "repeatingFormsEvents", "format", "json")
	if body != `[{"form_name":"blood_pressure","custom_form_label":"[sbp] \/ [dbp]"},{"form_name":"laboratory","custom_form_label":"[lab] @ [conc]"},{"form_name":"image","custom_form_label":""}]` {
		t.Fatalf("repeating: %s", body)
	}
}

func TestLongitudinalExport(t *testing.T) {
	e := loadFixture(t, "longitudinal")
	code, body := e.call("content", "record", "format", "csv")
	if code != 200 {
		t.Fatalf("status %d: %s", code, body)
	}
	want, _ := os.ReadFile("testdata/projects/longitudinal/data.csv")
	// That data.csv was exported with line breaks (CRLF) replaced by spaces.
	compareCSV(t, body, string(want), func(s string) string { return strings.Join(strings.Fields(s), " ") })
	// Events keep the IDs of event.csv; arms and the mapping come from the XML.
	_, body = e.call("content", "event", "format", "json", "arms", "2")
	if !strings.HasPrefix(body, `[{"event_name":"Enrollment","arm_num":2,"unique_event_name":"enrollment_arm_2","custom_event_label":"","event_id":2896}`) {
		t.Fatalf("events: %s", body)
	}
	_, body = e.call("content", "formEventMapping", "format", "json")
	var fem []map[string]any
	_ = json.Unmarshal([]byte(body), &fem)
	if len(fem) != 25 {
		t.Fatalf("FEM has %d rows, want 25", len(fem))
	}
	_, body = e.call("content", "arm", "format", "csv")
	if body != "arm_num,name\n1,\"Drug A\"\n2,\"Drug B\"\n" {
		t.Fatalf("arms: %q", body)
	}
	if _, body = e.call("content", "generateNextRecordName"); body != "305" {
		t.Fatalf("next record name %q, want 305", body)
	}
	// events filter is validated in longitudinal projects.
	code, body = e.call("content", "record", "format", "json", "events", "nope_arm_1,visit_1_arm_1", "returnFormat", "json")
	if code != 400 || body != `{"error":"The following values in the parameter \"events\" are not valid: 'nope_arm_1'"}` {
		t.Fatalf("bad events: %d %s", code, body)
	}
	code, body = e.call("content", "record", "format", "csv", "events", "visit_1_arm_1", "fields", "study_id,vld1")
	if code != 200 || !strings.HasPrefix(body, "study_id,redcap_event_name,vld1\n100,visit_1_arm_1,") {
		t.Fatalf("events filter: %d %q", code, body)
	}
}

func TestBlankForGrayStatus(t *testing.T) {
	e := loadFixture(t, "blank-for-gray-status")
	_, body := e.call("content", "record", "format", "json", "records", "6")
	var rows []map[string]any
	_ = json.Unmarshal([]byte(body), &rows)
	if len(rows) != 1 || rows[0]["health_complete"] != "0" || rows[0]["race_and_ethnicity_complete"] != "0" || rows[0]["demographics_complete"] != "0" || rows[0]["race___1"] != "0" {
		t.Fatalf("default gray export: %s", body)
	}
	_, body = e.call("content", "record", "format", "json", "records", "6", "exportBlankForGrayFormStatus", "true")
	rows = nil
	_ = json.Unmarshal([]byte(body), &rows)
	if rows[0]["health_complete"] != "" || rows[0]["race_and_ethnicity_complete"] != "" || rows[0]["demographics_complete"] != "0" || rows[0]["race___1"] != "0" {
		t.Fatalf("blank-for-gray export: %s", body)
	}
	// The fixture's data.csv (default request with DAGs) matches apart from
	// the XML-merged blank lines the README mentions.
	code, body := e.call("content", "record", "format", "csv", "exportDataAccessGroups", "true", "fields", "record_id,name_first,health_complete,race___2,race_and_ethnicity_complete")
	if code != 200 || !strings.Contains(body, "\n6,,blank-for-gray,0,0,0\n") {
		t.Fatalf("gray row: %q", body)
	}
}
