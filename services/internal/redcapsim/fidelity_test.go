package redcapsim

import (
	"encoding/json"
	"os"
	"reflect"
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
