package redcapsim

import (
	"encoding/csv"
	"os"
	"strings"
	"testing"
)

// TestReadOneshotExpectations replays REDCapR's read-oneshot requests against
// the simple project and compares with its recorded expectations.
func TestReadOneshotExpectations(t *testing.T) {
	e := loadFixture(t, "simple")
	base := []string{"content", "record", "format", "csv", "type", "flat", "rawOrLabel", "raw",
		"rawOrLabelHeaders", "raw", "exportCheckboxLabel", "false", "exportDataAccessGroups", "false",
		"returnFormat", "csv", "filterLogic", "", "dateRangeBegin", "", "dateRangeEnd", ""}
	cases := []struct {
		file  string
		extra []string
	}{
		{"raw.R", nil},
		{"force-character-type.R", nil},
		{"raw-and-dag.R", []string{"exportDataAccessGroups", "true"}},
		{"label.R", []string{"rawOrLabel", "label"}},
		{"specify-records.R", []string{"records", "1,3,4"}},
		{"specify-fields.R", []string{"fields", "record_id,name_first,name_last,age"}},
		{"filter-numeric.R", []string{"filterLogic", "[age] >= 61"}},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			src, err := os.ReadFile("testdata/specific-redcapr/read-oneshot/" + tc.file)
			if err != nil {
				t.Fatal(err)
			}
			want, err := parseRDput(string(src))
			if err != nil {
				t.Fatal(err)
			}
			kv := append([]string{}, base...)
			// later keys override earlier ones
			for i := 0; i+1 < len(tc.extra); i += 2 {
				found := false
				for j := 0; j+1 < len(kv); j += 2 {
					if kv[j] == tc.extra[i] {
						kv[j+1], found = tc.extra[i+1], true
					}
				}
				if !found {
					kv = append(kv, tc.extra[i], tc.extra[i+1])
				}
			}
			code, body := e.call(kv...)
			if code != 200 {
				t.Fatalf("status %d: %s", code, body)
			}
			recs, err := csv.NewReader(strings.NewReader(body)).ReadAll()
			if err != nil {
				t.Fatal(err)
			}
			hdr, rows := recs[0], recs[1:]
			if len(hdr) != len(want) {
				t.Fatalf("got %d columns %v, want %d", len(hdr), hdr, len(want))
			}
			for ci, col := range want {
				if hdr[ci] != col.name {
					t.Fatalf("column %d is %q, want %q", ci, hdr[ci], col.name)
				}
				if len(col.vals) != len(rows) {
					t.Fatalf("got %d rows, want %d", len(rows), len(col.vals))
				}
				for ri := range rows {
					if !col.matches(ri, rows[ri][ci]) {
						t.Errorf("row %d column %s: got %q, want %q (NA=%v)", ri+1, col.name, rows[ri][ci], col.vals[ri], col.na[ri])
					}
				}
			}
		})
	}
}
