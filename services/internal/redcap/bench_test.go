package redcap

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
)

// flatExport builds a realistic flat JSON export: n rows of 20 columns, a
// tenth of them repeating rows with an integer redcap_repeat_instance.
func flatExport(n int) []byte {
	var b strings.Builder
	b.WriteByte('[')
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		inst := `""`
		instr := ""
		if i%10 == 9 {
			inst = fmt.Sprint(i%7 + 1)
			instr = "bp"
		}
		fmt.Fprintf(&b, `{"record_id":"%d","redcap_event_name":"baseline_arm_1","redcap_repeat_instrument":"%s","redcap_repeat_instance":%s,`+
			`"dob":"1980-01-%02d","sex":"%d","race___1":"0","race___2":"1","race___3":"0","height":"172.5","weight":"%d",`+
			`"notes":"line one\nline \"two\" %d","email":"p%d@example.org","phone":"(555) 555-%04d","score_1":"3","score_2":"",`+
			`"visit_date":"2024-03-0%d 10:15","demographics_complete":"2"}`,
			i/3, instr, inst, i%28+1, i%2, 50+i%60, i, i, i%10000, i%9+1)
	}
	b.WriteByte(']')
	return []byte(b.String())
}

func BenchmarkDecodeRows100k(b *testing.B) {
	body := flatExport(100_000)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		rows, err := decodeRows(body)
		if err != nil || len(rows) != 100_000 {
			b.Fatal(err, len(rows))
		}
	}
	b.ReportMetric(float64(100_000*b.N)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkStdlibMapDecode100k is the baseline: encoding/json into
// []map[string]any, the obvious way to cope with the integer instance.
func BenchmarkStdlibMapDecode100k(b *testing.B) {
	body := flatExport(100_000)
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		var rows []map[string]any
		if err := json.Unmarshal(body, &rows); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(100_000*b.N)/b.Elapsed().Seconds(), "rows/s")
}
