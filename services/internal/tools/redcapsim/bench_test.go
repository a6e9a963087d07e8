package redcapsim

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/redcap-relay/relay/messages"
)

// benchProject has 30 exported columns: the ID, 27 text/number fields, a
// radio and the form status.
func benchProject(tb testing.TB, s *Server) int {
	fields := []messages.Field{{FieldName: "record_id", FormName: "crf", FieldType: "text", FieldLabel: "ID"}}
	for i := 1; i <= 27; i++ {
		f := messages.Field{FieldName: fmt.Sprintf("f%02d", i), FormName: "crf", FieldType: "text", FieldLabel: "F"}
		if i%3 == 0 {
			f.TextValidationTypeOrShowSlider = "integer"
		}
		fields = append(fields, f)
	}
	fields = append(fields, messages.Field{FieldName: "arm", FormName: "crf", FieldType: "radio", FieldLabel: "Arm", SelectChoicesOrCalculations: "1, A | 2, B"})
	pid, err := s.CreateProject(ProjectSpec{Title: "bench", Fields: fields})
	if err != nil {
		tb.Fatal(err)
	}
	if err := s.AddToken(pid, testToken, FullRights(), ""); err != nil {
		tb.Fatal(err)
	}
	return pid
}

func benchRows(from, n int) []inRow {
	rows := make([]inRow, n)
	for r := 0; r < n; r++ {
		row := inRow{"record_id": strconv.Itoa(from + r), "arm": "1", "crf_complete": "2"}
		for i := 1; i <= 27; i++ {
			if i%3 == 0 {
				row[fmt.Sprintf("f%02d", i)] = strconv.Itoa(r * i)
			} else {
				row[fmt.Sprintf("f%02d", i)] = "value-" + strconv.Itoa(i)
			}
		}
		rows[r] = row
	}
	return rows
}

func fill(tb testing.TB, s *Server, pid, n int) {
	p := s.project(pid)
	for from := 1; from <= n; from += 10000 {
		k := min(10000, n-from+1)
		if _, err := s.importInto(p, benchRows(from, k), importOpts{dag: -1, user: "bench"}); err != nil {
			tb.Fatal(err)
		}
	}
}

// BenchmarkExportFlatJSON100k exports 100,000 records × 30 columns as flat
// JSON over HTTP (target ≤ 2 s per export).
func BenchmarkExportFlatJSON100k(b *testing.B) {
	s, u := startSim(b, Options{})
	pid := benchProject(b, s)
	fill(b, s, pid, 100000)
	form := url.Values{"token": {testToken}, "content": {"record"}, "format": {"json"}, "type": {"flat"}}
	b.ResetTimer()
	var n int64
	for i := 0; i < b.N; i++ {
		resp, err := http.PostForm(u, form)
		if err != nil {
			b.Fatal(err)
		}
		n, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	b.SetBytes(n)
	b.ReportMetric(float64(100000*b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkImportJSON imports batches of 500 records over HTTP (target
// ≥ 20,000 records/s).
func BenchmarkImportJSON(b *testing.B) {
	s, u := startSim(b, Options{})
	benchProject(b, s)
	const batch = 500
	var bodies []string
	for i := 0; i < 20; i++ {
		raw, _ := json.Marshal(benchRows(i*batch+1, batch))
		bodies = append(bodies, string(raw))
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		resp, err := http.PostForm(u, url.Values{"token": {testToken}, "content": {"record"}, "format": {"json"},
			"returnContent": {"ids"}, "data": {bodies[i%len(bodies)]}})
		if err != nil {
			b.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("%d %s", resp.StatusCode, body)
		}
	}
	b.ReportMetric(float64(batch*b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkImportJSONPersisted is BenchmarkImportJSON with a DataDir.
func BenchmarkImportJSONPersisted(b *testing.B) {
	s, u := startSim(b, Options{DataDir: b.TempDir()})
	benchProject(b, s)
	const batch = 500
	raw, _ := json.Marshal(benchRows(1, batch))
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		resp, err := http.PostForm(u, url.Values{"token": {testToken}, "content": {"record"}, "format": {"json"}, "data": {string(raw)}})
		if err != nil {
			b.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	b.ReportMetric(float64(batch*b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkMemory1M holds 1,000,000 records × 30 columns and reports the
// live heap (target ≤ 2 GiB).
func BenchmarkMemory1M(b *testing.B) {
	for i := 0; i < b.N; i++ {
		s, err := New(Options{})
		if err != nil {
			b.Fatal(err)
		}
		pid := benchProject(b, s)
		fill(b, s, pid, 1000000)
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		b.ReportMetric(float64(ms.HeapAlloc)/(1<<20), "heap-MiB")
		// A record batch read back proves the data is there.
		rows, _ := s.ExportRows(pid)
		if len(rows) != 1000000 || !strings.HasPrefix(rows[999999]["record_id"], "1000000") {
			b.Fatalf("%d rows", len(rows))
		}
		runtime.KeepAlive(s)
		s.Close()
	}
}

// bench40 is the targets' project: 40 fields (the ID, 30 text, 6 integer,
// 2 dates and a radio) on one instrument.
func bench40(tb testing.TB, s *Server) int {
	fields := []messages.Field{{FieldName: "record_id", FormName: "crf", FieldType: "text", FieldLabel: "ID"}}
	for i := 1; i <= 39; i++ {
		f := messages.Field{FieldName: fmt.Sprintf("v%02d", i), FormName: "crf", FieldType: "text", FieldLabel: "V"}
		switch {
		case i <= 6:
			f.TextValidationTypeOrShowSlider = "integer"
		case i <= 8:
			f.TextValidationTypeOrShowSlider = "date_ymd"
		case i == 9:
			f.FieldType, f.SelectChoicesOrCalculations = "radio", "1, A | 2, B | 3, C"
		}
		fields = append(fields, f)
	}
	pid, err := s.CreateProject(ProjectSpec{Title: "bench40", Fields: fields})
	if err != nil {
		tb.Fatal(err)
	}
	if err := s.AddToken(pid, testToken, FullRights(), ""); err != nil {
		tb.Fatal(err)
	}
	return pid
}

func rows40(from, n int) []map[string]string {
	rows := make([]map[string]string, n)
	for r := range rows {
		id := from + r
		row := map[string]string{"record_id": strconv.Itoa(id), "crf_complete": "2"}
		for i := 1; i <= 39; i++ {
			k := fmt.Sprintf("v%02d", i)
			switch {
			case i <= 6:
				row[k] = strconv.Itoa(id * i % 1000)
			case i <= 8:
				row[k] = fmt.Sprintf("20%02d-%02d-%02d", id%25, id%12+1, id%28+1)
			case i == 9:
				row[k] = strconv.Itoa(id%3 + 1)
			default:
				row[k] = "answer " + strconv.Itoa(id%97) + " of field " + k
			}
		}
		rows[r] = row
	}
	return rows
}

// BenchmarkImport40 imports new records in batches of 500 over HTTP
// (flat JSON, 40 fields), as the pipeline's importer does (target
// ≥ 30,000 records/s).
func BenchmarkImport40(b *testing.B) {
	s, u := startSim(b, Options{})
	bench40(b, s)
	const batch = 500
	bodies := make([]string, 0, 64)
	next := 1
	body := func() string {
		raw, _ := json.Marshal(rows40(next, batch))
		next += batch
		return string(raw)
	}
	for i := 0; i < 64; i++ {
		bodies = append(bodies, body())
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i >= len(bodies) { // keep importing new records
			b.StopTimer()
			bodies = append(bodies, body())
			b.StartTimer()
		}
		resp, err := http.PostForm(u, url.Values{"token": {testToken}, "content": {"record"}, "format": {"json"},
			"returnContent": {"ids"}, "returnFormat": {"json"}, "data": {bodies[i]}})
		if err != nil {
			b.Fatal(err)
		}
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("%d %s", resp.StatusCode, out)
		}
	}
	b.ReportMetric(float64(batch*b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkExport40 exports 100,000 records of 40 fields as flat JSON
// (target ≥ 150,000 records/s).
func BenchmarkExport40(b *testing.B) {
	s, u := startSim(b, Options{})
	pid := bench40(b, s)
	p := s.project(pid)
	for from := 1; from <= 100000; from += 10000 {
		rows := rows40(from, 10000)
		in := make([]inRow, len(rows))
		for i, r := range rows {
			in[i] = r
		}
		if _, err := s.importInto(p, in, importOpts{user: "bench"}); err != nil {
			b.Fatal(err)
		}
	}
	form := url.Values{"token": {testToken}, "content": {"record"}, "format": {"json"}, "type": {"flat"}}
	b.ResetTimer()
	var n int64
	for i := 0; i < b.N; i++ {
		resp, err := http.PostForm(u, form)
		if err != nil {
			b.Fatal(err)
		}
		n, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	b.SetBytes(n)
	b.ReportMetric(float64(100000*b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkMemory1M40 holds 1,000,000 records of 40 fields and reports
// the live heap (target ≤ 1.5 GiB).
func BenchmarkMemory1M40(b *testing.B) {
	for i := 0; i < b.N; i++ {
		s, err := New(Options{})
		if err != nil {
			b.Fatal(err)
		}
		pid := bench40(b, s)
		p := s.project(pid)
		for from := 1; from <= 1000000; from += 10000 {
			rows := rows40(from, 10000)
			in := make([]inRow, len(rows))
			for i, r := range rows {
				in[i] = r
			}
			if _, err := s.importInto(p, in, importOpts{user: "bench"}); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		b.ReportMetric(float64(ms.HeapAlloc)/(1<<20), "heap-MiB")
		if len(p.records) != 1000000 {
			b.Fatalf("%d records", len(p.records))
		}
		runtime.KeepAlive(s)
		s.Close()
	}
}
