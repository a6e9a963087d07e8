package faults

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// backend is a stand-in API on loopback: it echoes a JSON array with one
// row per records[] entry and counts the calls it really handled.
type backend struct{ served atomic.Int64 }

func (b *backend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.served.Add(1)
	r.ParseMultipartForm(1 << 20)
	var rows []map[string]string
	for i := 0; ; i++ {
		v := r.Form.Get(fmt.Sprintf("records[%d]", i))
		if v == "" {
			break
		}
		rows = append(rows, map[string]string{"record_id": v, "note": "{not a row}"})
	}
	if rows == nil {
		rows = []map[string]string{}
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	json.NewEncoder(w).Encode(rows)
}

type fixture struct {
	be  *backend
	in  *Injector
	url string
	hc  *http.Client
}

func start(t *testing.T) *fixture {
	t.Helper()
	be := &backend{}
	in := New(be, func(tok string) (int, bool) {
		switch tok {
		case "AAAA":
			return 1, true
		case "BBBB":
			return 2, true
		}
		return 0, false
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: in}
	go srv.Serve(in.OutageListener(ln))
	t.Cleanup(func() { srv.Close() })
	return &fixture{be: be, in: in, url: "http://" + ln.Addr().String() + "/api/",
		hc: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}}
}

func (f *fixture) call(t *testing.T, token string, records ...string) (int, string, error) {
	t.Helper()
	v := url.Values{"token": {token}, "content": {"record"}, "format": {"json"}, "returnFormat": {"json"}}
	for i, r := range records {
		v.Set(fmt.Sprintf("records[%d]", i), r)
	}
	resp, err := f.hc.PostForm(f.url, v)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func TestPassThroughAndDefaults(t *testing.T) {
	f := start(t)
	st, body, err := f.call(t, "AAAA", "1", "2")
	if err != nil || st != 200 || !strings.Contains(body, `"record_id":"2"`) {
		t.Fatalf("%d %q %v", st, body, err)
	}
}

func TestEveryNCyclesKindsAndStatuses(t *testing.T) {
	f := start(t)
	if err := f.in.Set(0, Faults{EveryN: 2, ErrorRate: 0.1, HTMLRate: 0.1, MemoryRate: 0.1, EmptyRate: 0.1, MySQLRate: 0.1, ErrorStatuses: []int{502, 504}}); err != nil {
		t.Fatal(err)
	}
	type ans struct {
		st   int
		body string
	}
	var got []ans
	for i := 0; i < 14; i++ {
		st, body, err := f.call(t, "AAAA", "1")
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ans{st, body})
	}
	// calls 2,4,...: error(502), html, memory, mysql, empty, error(504), html
	want := []func(a ans) bool{
		func(a ans) bool { return a.st == 502 && strings.Contains(a.body, "502 Bad Gateway") },
		func(a ans) bool { return a.st == 200 && strings.HasPrefix(a.body, "<!DOCTYPE html>") },
		func(a ans) bool { return a.st == 200 && a.body == MemoryText },
		func(a ans) bool { return a.st == 200 && a.body == MySQLText },
		func(a ans) bool { return a.st == 200 && a.body == "" },
		func(a ans) bool { return a.st == 504 },
		func(a ans) bool { return a.st == 200 && strings.HasPrefix(a.body, "<!DOCTYPE html>") },
	}
	for i, a := range got {
		if i%2 == 0 {
			if a.st != 200 || !strings.Contains(a.body, `"record_id":"1"`) {
				t.Errorf("call %d should pass: %d %q", i+1, a.st, a.body)
			}
			continue
		}
		if !want[i/2](a) {
			t.Errorf("call %d: unexpected %d %q", i+1, a.st, a.body)
		}
	}
	// error, HTML, memory and MySQL answers never reach the backend; empty does.
	if n := f.be.served.Load(); n != 7+1 {
		t.Errorf("backend served %d calls, want 8", n)
	}
	s := f.in.Stats()
	if s[KindError] != 2 || s[KindHTML] != 2 || s[KindEmpty] != 1 || s["calls"] != 14 {
		t.Errorf("stats %v", s)
	}
}

func TestSeededRatesAreReproducible(t *testing.T) {
	seq := func() string {
		f := start(t)
		f.in.Set(0, Faults{Seed: 42, ErrorRate: 0.3, EmptyRate: 0.2})
		var b strings.Builder
		for i := 0; i < 40; i++ {
			st, body, err := f.call(t, "AAAA", "1")
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case st != 200:
				fmt.Fprintf(&b, "%d ", st)
			case body == "":
				b.WriteString("E ")
			default:
				b.WriteString(". ")
			}
		}
		return b.String()
	}
	a, b := seq(), seq()
	if a != b {
		t.Fatalf("same seed, different faults:\n%s\n%s", a, b)
	}
	if !strings.Contains(a, "E") || !strings.Contains(a, "50") || !strings.Contains(a, ".") {
		t.Fatalf("expected a mix: %s", a)
	}
}

func TestPerProjectFaults(t *testing.T) {
	f := start(t)
	f.in.Set(1, Faults{ErrorRate: 1, ErrorStatuses: []int{500}})
	st, body, _ := f.call(t, "AAAA")
	if st != 500 || body != `{"error":"The server encountered an error processing your request."}` {
		t.Fatalf("project 1: %d %q", st, body)
	}
	if st, _, _ := f.call(t, "BBBB"); st != 200 {
		t.Fatalf("project 2 got %d", st)
	}
	// multipart bodies are read for the token too, and passed on intact
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	mw.WriteField("token", "AAAA")
	mw.WriteField("content", "record")
	mw.WriteField("returnFormat", "csv")
	mw.Close()
	resp, err := f.hc.Post(f.url, mw.FormDataContentType(), &buf)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 500 || string(b) != "ERROR: The server encountered an error processing your request." {
		t.Fatalf("multipart: %d %q", resp.StatusCode, b)
	}
	f.in.Clear(1)
	buf.Reset()
	mw = multipart.NewWriter(&buf)
	mw.WriteField("token", "AAAA")
	mw.WriteField("records[0]", "9")
	mw.Close()
	resp, err = f.hc.Post(f.url, mw.FormDataContentType(), &buf)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `"record_id":"9"`) {
		t.Fatalf("multipart body not passed on: %q", b)
	}
}

func TestOutage(t *testing.T) {
	f := start(t)
	// keep-alive connection first, so the handler path (hijack) is used
	if st, _, err := f.call(t, "AAAA"); err != nil || st != 200 {
		t.Fatal(st, err)
	}
	f.in.Set(0, Faults{Outage: true})
	if _, _, err := f.call(t, "AAAA"); err == nil {
		t.Fatal("call during an outage succeeded")
	}
	// a fresh connection is closed by the listener
	f.hc.CloseIdleConnections()
	if _, _, err := f.call(t, "AAAA"); err == nil {
		t.Fatal("new connection during an outage succeeded")
	}
	if f.in.Stats()[KindOutage] < 2 {
		t.Fatalf("stats %v", f.in.Stats())
	}
	// a window in the past is over
	f.in.Set(0, Faults{OutageFrom: time.Now().Add(-time.Hour), OutageUntil: time.Now().Add(-time.Minute)})
	if st, _, err := f.call(t, "AAAA"); err != nil || st != 200 {
		t.Fatal("after the window", st, err)
	}
	if f.be.served.Load() != 2 {
		t.Fatalf("backend served %d", f.be.served.Load())
	}
}

func TestBan(t *testing.T) {
	f := start(t)
	f.in.Set(0, Faults{BanThreshold: 5})
	for i := 0; i < 5; i++ {
		if st, _, _ := f.call(t, "AAAA"); st != 200 {
			t.Fatalf("call %d: %d", i+1, st)
		}
	}
	for i := 0; i < 3; i++ {
		st, body, _ := f.call(t, "BBBB")
		if st != 429 || body != "Your IP address (127.0.0.1) has been banned due to suspected abuse." {
			t.Fatalf("after threshold: %d %q", st, body)
		}
	}
	if b := f.in.Banned(); len(b) != 1 || b[0] != "127.0.0.1" {
		t.Fatalf("banned %v", b)
	}
	f.in.ResetBans()
	if st, _, _ := f.call(t, "AAAA"); st != 200 {
		t.Fatalf("after reset: %d", st)
	}
	// default on at 600; negative turns it off
	f.in.Set(0, Faults{BanThreshold: -1})
	for i := 0; i < 20; i++ {
		if st, _, _ := f.call(t, "AAAA"); st != 200 {
			t.Fatal("ban with threshold off")
		}
	}
}

func TestLatencyAndSlowBody(t *testing.T) {
	f := start(t)
	f.in.Set(0, Faults{Latency: Duration(50 * time.Millisecond), LatencyPerRecord: Duration(10 * time.Millisecond)})
	t0 := time.Now()
	if st, _, err := f.call(t, "AAAA", "1", "2", "3"); err != nil || st != 200 {
		t.Fatal(st, err)
	}
	// 50ms + 3 records in the request + 3 rows in the answer
	if d := time.Since(t0); d < 110*time.Millisecond {
		t.Fatalf("latency not applied: %v", d)
	}
	f.in.Set(0, Faults{SlowBodyBPS: 2000})
	recs := make([]string, 20) // ~ 40 bytes per row → ~800 bytes
	for i := range recs {
		recs[i] = fmt.Sprint(i + 1)
	}
	t0 = time.Now()
	st, body, err := f.call(t, "AAAA", recs...)
	if err != nil || st != 200 || !strings.Contains(body, `"record_id":"20"`) {
		t.Fatal(st, err)
	}
	if min := time.Duration(float64(len(body)-2000/10) / 2000 * float64(time.Second)); time.Since(t0) < min {
		t.Fatalf("%d bytes in %v, want at least %v", len(body), time.Since(t0), min)
	}
}

func TestDropRows(t *testing.T) {
	f := start(t)
	f.in.Set(0, Faults{DropRate: 1, Seed: 1})
	st, body, _ := f.call(t, "AAAA", "1", "2")
	if st != 200 || strings.TrimSpace(body) != "[]" {
		t.Fatalf("%d %q", st, body)
	}
	if f.in.Stats()[KindDropped] != 2 {
		t.Fatal(f.in.Stats())
	}
}

func TestCountRows(t *testing.T) {
	if n := countRows([]byte(`[{"a":"{x}","b":"\"{"},{"c":[{"d":1}]}, {}]`)); n != 3 {
		t.Fatalf("got %d", n)
	}
	if rows, values := CountJSON([]byte(`[{"a":"x:y","b":"\":"},{"c":"1"}]`)); rows != 2 || values != 3 {
		t.Fatalf("CountJSON: %d rows, %d values; want 2, 3", rows, values)
	}
	if n := requestRecords(url.Values{"records": {"1,2,3"}, "data": {`[{"a":"1"},{"a":"2"}]`}}); n != 5 {
		t.Fatalf("got %d", n)
	}
}

func TestAdminHandler(t *testing.T) {
	f := start(t)
	admin := httptest.NewServer(f.in.AdminHandler())
	defer admin.Close()
	do := func(method, path, body string) (int, string) {
		req, _ := http.NewRequest(method, admin.URL+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if st, body := do("PUT", "/faults?project=1", `{"latency":"5ms","error_rate":1,"error_statuses":[503]}`); st != 200 || !strings.Contains(body, `"latency": "5ms"`) {
		t.Fatalf("put: %d %s", st, body)
	}
	if st, _, _ := f.call(t, "AAAA"); st != 503 {
		t.Fatalf("fault not applied: %d", st)
	}
	if st, body := do("GET", "/faults?project=1", ""); st != 200 || !strings.Contains(body, `"error_rate": 1`) {
		t.Fatalf("get: %d %s", st, body)
	}
	if st, body := do("GET", "/faults", ""); st != 200 || !strings.Contains(body, `"1": {`) || !strings.Contains(body, `"error": 1`) {
		t.Fatalf("get all: %d %s", st, body)
	}
	if st, body := do("PUT", "/faults", `{"error_rate":2}`); st != 400 || !strings.Contains(body, "error_rate") {
		t.Fatalf("bad rate: %d %s", st, body)
	}
	if st, _ := do("PUT", "/faults", `{"outage_for":"1h"}`); st != 200 {
		t.Fatal("outage_for")
	}
	if g, _ := f.in.Get(0); !g.outageAt(time.Now()) || g.outageAt(time.Now().Add(2*time.Hour)) {
		t.Fatalf("outage window %+v", g)
	}
	if st, _ := do("DELETE", "/faults?project=1", ""); st != 204 {
		t.Fatal("delete project")
	}
	if _, ok := f.in.Get(1); ok {
		t.Fatal("project 1 still set")
	}
	if st, _ := do("DELETE", "/faults", ""); st != 204 {
		t.Fatal("delete all")
	}
	if st, _, err := f.call(t, "AAAA"); err != nil || st != 200 {
		t.Fatal("after reset", st, err)
	}
}

// idList asks for a record-ID list (fields=record_id) of the given records.
func (f *fixture) idList(t *testing.T, token string, field string, records ...string) []string {
	t.Helper()
	v := url.Values{"token": {token}, "content": {"record"}, "format": {"json"}, "fields[0]": {field}}
	for i, r := range records {
		v.Set(fmt.Sprintf("records[%d]", i), r)
	}
	resp, err := f.hc.PostForm(f.url, v)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rows []map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&rows); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range rows {
		ids = append(ids, r["record_id"])
	}
	return ids
}

func TestOmitRecordsFromIDLists(t *testing.T) {
	f := start(t)
	if err := f.in.Set(1, Faults{OmitRecords: 2, OmitAnswers: 2, Seed: 7}); err != nil {
		t.Fatal(err)
	}
	all := []string{"1", "2", "3", "4", "5"}
	for i := 0; i < 2; i++ {
		if got := f.idList(t, "AAAA", "record_id", all...); len(got) != 3 {
			t.Fatalf("answer %d: %v, want 3 of 5 records", i+1, got)
		}
	}
	if got := f.idList(t, "AAAA", "record_id", all...); len(got) != 5 {
		t.Fatalf("after omit_answers: %v", got)
	}
	// Other projects and full exports are untouched.
	if got := f.idList(t, "BBBB", "record_id", all...); len(got) != 5 {
		t.Fatalf("project 2: %v", got)
	}
	f.in.Set(1, Faults{OmitRecords: 1})
	if st, body, _ := f.call(t, "AAAA", all...); st != 200 || strings.Count(body, "record_id") != 5 {
		t.Fatalf("a full record export lost rows: %s", body)
	}
	if f.in.Stats()[KindOmitted] != 4 {
		t.Fatalf("stats %v", f.in.Stats())
	}
	// With the record-ID field known, a one-field export of another field
	// is not an ID list.
	f.in.SetRecordIDField(func(string) (string, bool) { return "study_id", true })
	if got := f.idList(t, "AAAA", "record_id", all...); len(got) != 5 {
		t.Fatalf("not the ID field: %v", got)
	}
	if err := (Faults{OmitRecords: -1}).Validate(); err == nil {
		t.Fatal("negative omit_records accepted")
	}
}

// TestResetKeepsStartupBan: DELETE /faults clears faults but keeps the ban
// setting the server was started with (here: off).
func TestResetKeepsStartupBan(t *testing.T) {
	f := start(t)
	f.in.SetBanDefault(-1)
	f.in.Set(0, Faults{ErrorRate: 0})
	admin := httptest.NewServer(f.in.AdminHandler())
	defer admin.Close()
	req, _ := http.NewRequest(http.MethodDelete, admin.URL+"/faults", nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 204 {
		t.Fatal(resp, err)
	}
	for i := 0; i < DefaultBanThreshold+5; i++ {
		if st, _, err := f.call(t, "AAAA"); err != nil || st != 200 {
			t.Fatalf("call %d after DELETE /faults: %d %v (ban re-armed)", i+1, st, err)
		}
	}
	// A threshold set at start is kept too, and a setting still overrides it.
	f.in.SetBanDefault(3)
	f.in.Reset()
	for i := 0; i < 3; i++ {
		f.call(t, "AAAA")
	}
	if st, _, _ := f.call(t, "AAAA"); st != 429 {
		t.Fatalf("startup threshold 3 not kept: %d", st)
	}
}
