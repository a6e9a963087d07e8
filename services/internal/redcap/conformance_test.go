package redcap_test

// Conformance of the client against the project's REDCap simulator over
// loopback HTTP: every call, then every error class (driven by the faults
// middleware in front of the simulator), then TLS.

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/redcap"
	"github.com/redcap-relay/relay/services/internal/tools/redcapsim"
	"github.com/redcap-relay/relay/services/internal/tools/redcapsim/faults"
)

const (
	tokClassic  = "0123456789ABCDEF0123456789ABCDEF"
	tokLong     = "FEDCBA9876543210FEDCBA9876543210"
	tokReadOnly = "AAAABBBBCCCCDDDDEEEEFFFF00001111"
	tokEmpty    = "11112222333344445555666677778888"
)

func field(name, form, typ, label, choices, validation string) messages.Field {
	return messages.Field{FieldName: name, FormName: form, FieldType: typ, FieldLabel: label,
		SelectChoicesOrCalculations: choices, TextValidationTypeOrShowSlider: validation}
}

// classicSpec: a classic project with a repeating instrument, a checkbox
// and a DAG.
func classicSpec() redcapsim.ProjectSpec {
	name := field("name", "demographics", "text", "Name", "", "")
	name.Identifier = "y"
	return redcapsim.ProjectSpec{
		Title: "Conformance classic",
		Fields: []messages.Field{
			field("record_id", "demographics", "text", "Record ID", "", ""),
			name,
			field("dob", "demographics", "text", "Date of birth", "", "date_ymd"),
			field("sex", "demographics", "radio", "Sex", "0, Female | 1, Male", ""),
			field("race", "demographics", "checkbox", "Race", "1, A | 2, B | 3, C", ""),
			field("weight", "health", "text", "Weight", "", "integer"),
			field("bp_sys", "bp", "text", "Systolic", "", "integer"),
		},
		Repeating: []messages.RepeatingForm{{FormName: "bp"}},
		DAGs:      []messages.DAG{{Name: "Site A", Unique: "site_a", ID: 101}},
	}
}

func longSpec() redcapsim.ProjectSpec {
	return redcapsim.ProjectSpec{
		Title: "Conformance longitudinal",
		Fields: []messages.Field{
			field("study_id", "enrol", "text", "Study ID", "", ""),
			field("consent", "enrol", "yesno", "Consent", "", ""),
			field("visit_date", "visit", "text", "Visit date", "", "date_ymd"),
			field("score", "visit", "text", "Score", "", "integer"),
		},
		Arms: []messages.Arm{{ArmNum: 1, Name: "Arm 1"}},
		Events: []messages.Event{
			{EventName: "Baseline", ArmNum: 1, UniqueEventName: "baseline_arm_1"},
			{EventName: "Week 1", ArmNum: 1, UniqueEventName: "week_1_arm_1"},
		},
		FormEventMapping: []messages.FormEvent{
			{ArmNum: 1, UniqueEventName: "baseline_arm_1", Form: "enrol"},
			{ArmNum: 1, UniqueEventName: "baseline_arm_1", Form: "visit"},
			{ArmNum: 1, UniqueEventName: "week_1_arm_1", Form: "visit"},
		},
	}
}

type env struct {
	sim     *redcapsim.Server
	inj     *faults.Injector
	url     string
	classic int
	long    int
	empty   int
}

func newEnv(t testing.TB) *env {
	t.Helper()
	sim, err := redcapsim.New(redcapsim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{sim: sim}
	if e.classic, err = sim.CreateProject(classicSpec()); err != nil {
		t.Fatal(err)
	}
	if e.long, err = sim.CreateProject(longSpec()); err != nil {
		t.Fatal(err)
	}
	if e.empty, err = sim.CreateProject(redcapsim.ProjectSpec{Title: "Empty destination",
		Fields: []messages.Field{field("record_id", "form_1", "text", "ID", "", "")}}); err != nil {
		t.Fatal(err)
	}
	must(t, sim.AddToken(e.classic, tokClassic, redcapsim.FullRights(), ""))
	must(t, sim.AddToken(e.long, tokLong, redcapsim.FullRights(), ""))
	must(t, sim.AddToken(e.empty, tokEmpty, redcapsim.FullRights(), ""))
	must(t, sim.AddToken(e.classic, tokReadOnly, redcapsim.Rights{Export: true, Metadata: true}, ""))
	e.inj = faults.New(sim.Handler(), sim.ProjectIDForToken)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: e.inj}
	go srv.Serve(e.inj.OutageListener(ln))
	t.Cleanup(func() { srv.Close(); sim.Close() })
	e.url = "http://" + ln.Addr().String() + "/api/"
	return e
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func (e *env) client(t testing.TB, token string, mod ...func(*redcap.Options)) *redcap.Client {
	t.Helper()
	o := redcap.Options{Site: "site-a", URL: e.url, Token: token, CallsPerMinute: -1, Timeout: 10 * time.Second}
	for _, m := range mod {
		m(&o)
	}
	c, err := redcap.New(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

var ctx = context.Background()

func seedClassic(t *testing.T, c *redcap.Client) {
	t.Helper()
	res, err := c.ImportRecords(ctx, []messages.Row{
		{"record_id": "1", "name": "Ann", "dob": "1980-01-02", "sex": "0", "race___1": "1", "weight": "70", "demographics_complete": "2"},
		{"record_id": "1", "redcap_repeat_instrument": "bp", "redcap_repeat_instance": "1", "bp_sys": "120"},
		{"record_id": "1", "redcap_repeat_instrument": "bp", "redcap_repeat_instance": "2", "bp_sys": "125"},
		{"record_id": "2", "name": "Bob", "sex": "1", "redcap_data_access_group": "site_a"},
		{"record_id": "3", "name": "Cy"},
	}, redcap.ImportParams{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Count != 3 || !reflect.DeepEqual(res.IDs, []string{"1", "2", "3"}) {
		t.Fatalf("import result %+v", res)
	}
}

func TestConformanceRecords(t *testing.T) {
	e := newEnv(t)
	c := e.client(t, tokClassic)
	seedClassic(t, c)

	rows, err := c.ExportRecords(ctx, redcap.ExportParams{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 5 {
		t.Fatalf("want 5 rows (3 records + 2 bp instances), got %d: %v", len(rows), rows)
	}
	r0 := rows[0]
	if r0["record_id"] != "1" || r0["name"] != "Ann" || r0["race___1"] != "1" || r0["race___2"] != "0" ||
		r0["redcap_repeat_instance"] != "" || r0["demographics_complete"] != "2" {
		t.Errorf("row 0: %v", r0)
	}
	if rows[1]["redcap_repeat_instrument"] != "bp" || rows[1]["redcap_repeat_instance"] != "1" || rows[2]["redcap_repeat_instance"] != "2" || rows[2]["bp_sys"] != "125" {
		t.Errorf("repeat rows (instance must be a decimal string): %v %v", rows[1], rows[2])
	}
	for _, r := range rows {
		if _, ok := r["redcap_data_access_group"]; ok {
			t.Fatal("DAG column without ExportDataAccessGroups")
		}
	}

	// filters
	rows, err = c.ExportRecords(ctx, redcap.ExportParams{Records: []string{"2", "3", "404"}, Fields: []string{"record_id", "sex"}, ExportDataAccessGroups: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0]["sex"] != "1" || rows[0]["redcap_data_access_group"] != "site_a" || rows[1]["redcap_data_access_group"] != "" {
		t.Fatalf("filtered: %v", rows)
	}
	if _, ok := rows[0]["name"]; ok {
		t.Fatal("fields filter ignored")
	}
	rows, err = c.ExportRecords(ctx, redcap.ExportParams{Records: []string{"3"}, Forms: []string{"health"}, ExportBlankForGrayFormStatus: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0]["health_complete"] != "" {
		t.Fatalf("gray status blank: %v", rows)
	}
	rows, err = c.ExportRecords(ctx, redcap.ExportParams{Records: []string{"3"}, Forms: []string{"health"}})
	if err != nil || len(rows) != 1 || rows[0]["health_complete"] != "0" {
		t.Fatalf("gray status: %v %v", rows, err)
	}

	// record IDs, changed since
	ids, err := c.ExportRecordIDs(ctx, "record_id", time.Time{})
	if err != nil || !reflect.DeepEqual(ids, []string{"1", "2", "3"}) {
		t.Fatalf("ids %v %v", ids, err)
	}
	ids, err = c.ExportRecordIDs(ctx, "record_id", time.Now().Add(24*time.Hour))
	if err != nil || len(ids) != 0 {
		t.Fatalf("ids since tomorrow %v %v", ids, err)
	}
	ids, err = c.ExportRecordIDs(ctx, "record_id", time.Now().Add(-time.Hour))
	if err != nil || len(ids) != 3 {
		t.Fatalf("ids since an hour ago %v %v", ids, err)
	}
	rows, err = c.ExportRecords(ctx, redcap.ExportParams{DateRangeBegin: time.Now().Add(-time.Hour), DateRangeEnd: time.Now().Add(time.Hour), Fields: []string{"record_id"}})
	if err != nil || len(rows) != 5 {
		t.Fatalf("date range %v %v", rows, err)
	}

	// overwrite vs normal
	if _, err := c.ImportRecords(ctx, []messages.Row{{"record_id": "1", "dob": ""}}, redcap.ImportParams{}); err != nil {
		t.Fatal(err)
	}
	rows, _ = c.ExportRecords(ctx, redcap.ExportParams{Records: []string{"1"}, Fields: []string{"record_id", "dob"}})
	if rows[0]["dob"] != "1980-01-02" {
		t.Fatalf("normal import erased a value: %v", rows[0])
	}
	if _, err := c.ImportRecords(ctx, []messages.Row{{"record_id": "1", "dob": ""}}, redcap.ImportParams{Overwrite: true}); err != nil {
		t.Fatal(err)
	}
	rows, _ = c.ExportRecords(ctx, redcap.ExportParams{Records: []string{"1"}, Fields: []string{"record_id", "dob"}})
	if rows[0]["dob"] != "" {
		t.Fatalf("overwrite import kept a value: %v", rows[0])
	}
	if res, err := c.ImportRecords(ctx, nil, redcap.ImportParams{}); err != nil || res.Count != 0 {
		t.Fatalf("empty import: %+v %v", res, err)
	}

	// logging sees the imports
	log, err := c.ExportLogging(ctx, redcap.LogParams{Record: "2"})
	if err != nil {
		t.Fatal(err)
	}
	if len(log) == 0 || log[0].Record != "2" || !strings.Contains(log[0].Action, "record") || log[0].Timestamp == "" {
		t.Fatalf("logging: %+v", log)
	}

	// delete
	n, err := c.DeleteRecords(ctx, []string{"3"})
	if err != nil || n != 1 {
		t.Fatalf("delete: %d %v", n, err)
	}
	_, err = c.DeleteRecords(ctx, []string{"2", "3"})
	assertErr(t, err, tokClassic, redcap.KindPermanent, 400, "do not exist")
	ids, _ = c.ExportRecordIDs(ctx, "record_id", time.Time{})
	if !reflect.DeepEqual(ids, []string{"1", "2"}) {
		t.Fatalf("after delete %v (a failed delete must delete nothing)", ids)
	}
	if c.Calls() < 15 {
		t.Fatalf("calls counted: %d", c.Calls())
	}
}

func TestConformanceMetadata(t *testing.T) {
	e := newEnv(t)
	c := e.client(t, tokClassic)
	lc := e.client(t, tokLong)

	v, err := c.ExportVersion(ctx)
	if err != nil || v == "" || strings.Count(v, ".") < 1 {
		t.Fatalf("version %q %v", v, err)
	}
	pi, err := c.ExportProjectInfo(ctx)
	if err != nil || pi.ProjectID != e.classic || pi.ProjectTitle != "Conformance classic" || pi.IsLongitudinal != 0 || pi.HasRepeatingInstrumentsOrEvents != 1 {
		t.Fatalf("project info %+v %v", pi, err)
	}
	lpi, err := lc.ExportProjectInfo(ctx)
	if err != nil || lpi.IsLongitudinal != 1 {
		t.Fatalf("long project info %+v %v", lpi, err)
	}
	md, err := c.ExportMetadata(ctx)
	if err != nil || len(md) != 7 || md[0].FieldName != "record_id" || md[1].Identifier != "y" || md[3].SelectChoicesOrCalculations != "0, Female | 1, Male" {
		t.Fatalf("metadata %+v %v", md, err)
	}
	md, err = c.ExportMetadata(ctx, "health")
	if err != nil || len(md) != 1 || md[0].FieldName != "weight" {
		t.Fatalf("metadata of health %+v %v", md, err)
	}
	ins, err := c.ExportInstruments(ctx)
	if err != nil || len(ins) != 3 || ins[2].InstrumentName != "bp" {
		t.Fatalf("instruments %+v %v", ins, err)
	}
	fn, err := c.ExportFieldNames(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range fn {
		names = append(names, f.ExportFieldName)
	}
	for _, want := range []string{"race___1", "race___3", "demographics_complete", "bp_complete"} {
		if !slices.Contains(names, want) {
			t.Errorf("export field names lack %s: %v", want, names)
		}
	}
	dags, err := c.ExportDAGs(ctx)
	if err != nil || len(dags) != 1 || dags[0].Unique != "site_a" {
		t.Fatalf("dags %+v %v", dags, err)
	}
	rep, err := c.ExportRepeating(ctx)
	if err != nil || len(rep) != 1 || rep[0].FormName != "bp" {
		t.Fatalf("repeating %+v %v", rep, err)
	}

	// classic projects: no arms, events or mapping, and no error
	arms, err := c.ExportArms(ctx)
	if err != nil || arms != nil {
		t.Fatalf("classic arms %v %v", arms, err)
	}
	evs, err := c.ExportEvents(ctx)
	if err != nil || evs != nil {
		t.Fatalf("classic events %v %v", evs, err)
	}
	fem, err := c.ExportFormEventMapping(ctx)
	if err != nil || fem != nil {
		t.Fatalf("classic mapping %v %v", fem, err)
	}

	arms, err = lc.ExportArms(ctx)
	if err != nil || !reflect.DeepEqual(arms, []messages.Arm{{ArmNum: 1, Name: "Arm 1"}}) {
		t.Fatalf("arms %v %v", arms, err)
	}
	evs, err = lc.ExportEvents(ctx)
	if err != nil || len(evs) != 2 || evs[1].UniqueEventName != "week_1_arm_1" || evs[0].EventID == 0 {
		t.Fatalf("events %+v %v", evs, err)
	}
	fem, err = lc.ExportFormEventMapping(ctx)
	if err != nil || len(fem) != 3 {
		t.Fatalf("mapping %+v %v", fem, err)
	}
	rep, err = lc.ExportRepeating(ctx)
	if err != nil || len(rep) != 0 {
		t.Fatalf("long repeating %+v %v", rep, err)
	}

	// longitudinal records
	if _, err := lc.ImportRecords(ctx, []messages.Row{
		{"study_id": "S1", "redcap_event_name": "baseline_arm_1", "consent": "1", "score": "3"},
		{"study_id": "S1", "redcap_event_name": "week_1_arm_1", "score": "4"},
	}, redcap.ImportParams{}); err != nil {
		t.Fatal(err)
	}
	rows, err := lc.ExportRecords(ctx, redcap.ExportParams{Events: []string{"week_1_arm_1"}})
	if err != nil || len(rows) != 1 || rows[0]["score"] != "4" || rows[0]["redcap_event_name"] != "week_1_arm_1" || rows[0]["consent"] != "" {
		t.Fatalf("event filter %v %v", rows, err)
	}
	ids, err := lc.ExportRecordIDs(ctx, "study_id", time.Time{})
	if err != nil || !reflect.DeepEqual(ids, []string{"S1"}) {
		t.Fatalf("distinct ids across events %v %v", ids, err)
	}
}

// TestConformanceDesignImport sets up a destination project through the
// API, the way tools and tests prepare one.
func TestConformanceDesignImport(t *testing.T) {
	e := newEnv(t)
	c := e.client(t, tokEmpty)
	n, err := c.ImportMetadata(ctx, longSpec().Fields)
	if err != nil || n != 4 {
		t.Fatalf("import metadata %d %v", n, err)
	}
	if n, err = c.ImportArms(ctx, longSpec().Arms); err != nil || n != 1 {
		t.Fatalf("import arms %d %v", n, err)
	}
	if n, err = c.ImportEvents(ctx, longSpec().Events); err != nil || n != 2 {
		t.Fatalf("import events %d %v", n, err)
	}
	if n, err = c.ImportFormEventMapping(ctx, longSpec().FormEventMapping); err != nil || n != 3 {
		t.Fatalf("import mapping %d %v", n, err)
	}
	md, _ := c.ExportMetadata(ctx)
	evs, _ := c.ExportEvents(ctx)
	fem, _ := c.ExportFormEventMapping(ctx)
	if len(md) != 4 || len(evs) != 2 || len(fem) != 3 {
		t.Fatalf("after design import: %d fields, %d events, %d mappings", len(md), len(evs), len(fem))
	}
	pi, _ := c.ExportProjectInfo(ctx)
	if pi.IsLongitudinal != 1 {
		t.Fatalf("project info after import %+v", pi)
	}
}

// assertErr checks the class, the status, that the site is named, that the
// token is absent and (optionally) a piece of the text.
func assertErr(t *testing.T, err error, token string, kind redcap.Kind, status int, contains string) *redcap.Error {
	t.Helper()
	var e *redcap.Error
	if !errors.As(err, &e) {
		t.Fatalf("want *redcap.Error, got %T %v", err, err)
	}
	s := err.Error()
	t.Logf("%v: %s", e.Kind, s)
	if e.Kind != kind {
		t.Errorf("kind %v, want %v: %s", e.Kind, kind, s)
	}
	if kind == redcap.KindTransient && (!redcap.IsTransient(err) || redcap.IsPermanent(err)) {
		t.Errorf("IsTransient/IsPermanent disagree: %s", s)
	}
	if kind == redcap.KindPermanent && (!redcap.IsPermanent(err) || redcap.IsTransient(err)) {
		t.Errorf("IsTransient/IsPermanent disagree: %s", s)
	}
	if status >= 0 && e.Status != status {
		t.Errorf("status %d, want %d: %s", e.Status, status, s)
	}
	if !strings.HasPrefix(s, "site-a: ") {
		t.Errorf("does not name the site: %s", s)
	}
	if strings.Contains(s, token) || strings.Contains(fmt.Sprintf("%+v %#v", err, e), token) {
		t.Errorf("token in error: %s", s)
	}
	if contains != "" && !strings.Contains(strings.ToLower(s), strings.ToLower(contains)) {
		t.Errorf("error %q does not contain %q", s, contains)
	}
	return e
}

func TestConformancePermanentErrors(t *testing.T) {
	e := newEnv(t)
	c := e.client(t, tokClassic)
	seedClassic(t, c)

	// 403: unknown, revoked token
	bad := "BAD00000000000000000000000000000"
	_, err := e.client(t, bad).ExportRecords(ctx, redcap.ExportParams{})
	assertErr(t, err, bad, redcap.KindPermanent, 403, "You do not have permissions to use the API (check the token file")
	const revoked = "0000111122223333444455556666AAAA"
	must(t, e.sim.AddToken(e.classic, revoked, redcapsim.FullRights(), ""))
	rc := e.client(t, revoked)
	if _, err := rc.ExportVersion(ctx); err != nil {
		t.Fatal(err)
	}
	e.sim.RevokeToken(revoked)
	_, err = rc.ExportMetadata(ctx)
	assertErr(t, err, revoked, redcap.KindPermanent, 403, "token")
	// 403: rights
	_, err = e.client(t, tokReadOnly).ImportRecords(ctx, []messages.Row{{"record_id": "9"}}, redcap.ImportParams{})
	assertErr(t, err, tokReadOnly, redcap.KindPermanent, 403, "Import/Update privileges")
	_, err = e.client(t, tokReadOnly).DeleteRecords(ctx, []string{"1"})
	assertErr(t, err, tokReadOnly, redcap.KindPermanent, 403, "Delete Record privileges")

	// 400: per-record validation lines, parsed, values never printed
	_, err = c.ImportRecords(ctx, []messages.Row{
		{"record_id": "7", "sex": "7", "dob": "02/30/1999"},
		{"record_id": "8", "weight": "heavyweight"},
		{"record_id": "9", "name": "ok"},
	}, redcap.ImportParams{})
	re := assertErr(t, err, tokClassic, redcap.KindPermanent, 400, "REDCap rejected the data")
	ps := redcap.Problems(err)
	if len(ps) != 3 {
		t.Fatalf("problems %+v", ps)
	}
	byField := map[string]redcap.Problem{}
	for _, p := range ps {
		byField[p.Field] = p
	}
	if p := byField["sex"]; p.Record != "7" || p.Value != "7" || p.Message == "" {
		t.Errorf("sex problem %+v", p)
	}
	if p := byField["weight"]; p.Record != "8" || p.Value != "heavyweight" {
		t.Errorf("weight problem %+v", p)
	}
	for _, v := range []string{"02/30/1999", "heavyweight"} {
		if strings.Contains(re.Error(), v) || strings.Contains(re.Message, v) {
			t.Errorf("value %q in the error text: %s", v, re.Error())
		}
	}
	if ids, _ := c.ExportRecordIDs(ctx, "record_id", time.Time{}); slices.Contains(ids, "9") {
		t.Error("a rejected batch saved a record")
	}
	// 400: unknown field / form / event, unknown import column
	_, err = c.ExportRecords(ctx, redcap.ExportParams{Fields: []string{"record_id", "no_such_field"}})
	assertErr(t, err, tokClassic, redcap.KindPermanent, 400, "no_such_field")
	_, err = c.ExportRecords(ctx, redcap.ExportParams{Forms: []string{"no_such_form"}})
	assertErr(t, err, tokClassic, redcap.KindPermanent, 400, "no_such_form")
	_, err = e.client(t, tokLong).ExportRecords(ctx, redcap.ExportParams{Events: []string{"no_such_event"}})
	assertErr(t, err, tokLong, redcap.KindPermanent, 400, "no_such_event")
	_, err = c.ImportRecords(ctx, []messages.Row{{"record_id": "1", "shoe_size": "9"}}, redcap.ImportParams{})
	assertErr(t, err, tokClassic, redcap.KindPermanent, 400, "shoe_size")

	// 401/404 in REDCap's JSON shape (injected), and a wrong URL (HTML 404)
	for _, st := range []int{401, 404} {
		e.inj.Set(0, faults.Faults{ErrorRate: 1, ErrorStatuses: []int{st}})
		_, err = c.ExportInstruments(ctx)
		assertErr(t, err, tokClassic, redcap.KindPermanent, st, "")
	}
	e.inj.Reset()
	// a redirect (e.g. http → https, or a moved server) is not followed:
	// a 307 would re-send the token to the new host.
	redir := httptest.NewServer(http.RedirectHandler(e.url, http.StatusTemporaryRedirect))
	defer redir.Close()
	_, err = e.client(t, tokClassic, func(o *redcap.Options) { o.URL = redir.URL + "/api/" }).ExportVersion(ctx)
	assertErr(t, err, tokClassic, redcap.KindPermanent, 307, "redirects the API call to "+e.url)
	wrong := e.client(t, tokClassic, func(o *redcap.Options) { o.URL = strings.TrimSuffix(e.url, "api/") + "redcap/" })
	_, err = wrong.ExportVersion(ctx)
	assertErr(t, err, tokClassic, redcap.KindPermanent, 404, "check the API URL")
}

func TestConformanceTransientErrors(t *testing.T) {
	e := newEnv(t)
	c := e.client(t, tokClassic)
	seedClassic(t, c)

	cases := []struct {
		name   string
		f      faults.Faults
		status int
		text   string
	}{
		{"500", faults.Faults{ErrorRate: 1, ErrorStatuses: []int{500}}, 500, "The server encountered an error"},
		{"502", faults.Faults{ErrorRate: 1, ErrorStatuses: []int{502}}, 502, "502 Bad Gateway"},
		{"503", faults.Faults{ErrorRate: 1, ErrorStatuses: []int{503}}, 503, "503"},
		{"504", faults.Faults{ErrorRate: 1, ErrorStatuses: []int{504}}, 504, "504"},
		{"empty 200", faults.Faults{EmptyRate: 1}, 200, "empty body"},
		{"HTML 200", faults.Faults{HTMLRate: 1}, 200, "HTML page"},
		{"memory 200", faults.Faults{MemoryRate: 1}, 200, "ran out of server memory"},
		{"MySQL 200", faults.Faults{MySQLRate: 1}, 200, "MySQL"},
		{"truncated JSON", faults.Faults{TruncateRate: 1}, 200, "not valid JSON"},
		{"outage (reset)", faults.Faults{Outage: true}, 0, "cannot reach"},
	}
	calls := []struct {
		name string
		do   func() error
	}{
		{"export records", func() error { _, err := c.ExportRecords(ctx, redcap.ExportParams{}); return err }},
		{"export metadata", func() error { _, err := c.ExportMetadata(ctx); return err }},
		{"import records", func() error {
			_, err := c.ImportRecords(ctx, []messages.Row{{"record_id": "1", "weight": "71"}}, redcap.ImportParams{})
			return err
		}},
		{"export project info", func() error { _, err := c.ExportProjectInfo(ctx); return err }},
	}
	for _, tc := range cases {
		for _, call := range calls {
			t.Run(tc.name+"/"+call.name, func(t *testing.T) {
				must(t, e.inj.Set(0, tc.f))
				defer e.inj.Reset()
				err := call.do()
				assertErr(t, err, tokClassic, redcap.KindTransient, tc.status, tc.text)
			})
		}
	}

	t.Run("429 IP ban", func(t *testing.T) {
		must(t, e.inj.Set(0, faults.Faults{BanThreshold: 2}))
		defer e.inj.Reset()
		var err error
		for i := 0; i < 3 && err == nil; i++ {
			_, err = c.ExportInstruments(ctx)
		}
		assertErr(t, err, tokClassic, redcap.KindTransient, 429, "banned")
		if !strings.Contains(err.Error(), "administrator") {
			t.Errorf("ban error should say that waiting will not lift it: %s", err)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		must(t, e.inj.Set(0, faults.Faults{Latency: faults.Duration(2 * time.Second)}))
		defer e.inj.Reset()
		slow := e.client(t, tokClassic, func(o *redcap.Options) { o.Timeout = 100 * time.Millisecond })
		_, err := slow.ExportRecords(ctx, redcap.ExportParams{})
		assertErr(t, err, tokClassic, redcap.KindTransient, 0, "no complete answer within 100ms")
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("timeout should wrap context.DeadlineExceeded: %v", err)
		}
	})
	t.Run("slow body past the timeout", func(t *testing.T) {
		must(t, e.inj.Set(0, faults.Faults{SlowBodyBPS: 200}))
		defer e.inj.Reset()
		slow := e.client(t, tokClassic, func(o *redcap.Options) { o.Timeout = 300 * time.Millisecond })
		_, err := slow.ExportRecords(ctx, redcap.ExportParams{})
		assertErr(t, err, tokClassic, redcap.KindTransient, -1, "")
	})
	t.Run("connection refused", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		must(t, err)
		addr := ln.Addr().String()
		ln.Close()
		dead := e.client(t, tokClassic, func(o *redcap.Options) { o.URL = "http://" + addr + "/api/" })
		_, err = dead.ExportVersion(ctx)
		assertErr(t, err, tokClassic, redcap.KindTransient, 0, "refused")
	})
	t.Run("listener outage (new connections)", func(t *testing.T) {
		must(t, e.inj.Set(0, faults.Faults{Outage: true}))
		defer e.inj.Reset()
		fresh := e.client(t, tokClassic, func(o *redcap.Options) { o.HTTPClient = &http.Client{Transport: &http.Transport{}} })
		_, err := fresh.ExportVersion(ctx)
		assertErr(t, err, tokClassic, redcap.KindTransient, 0, "")
	})
	t.Run("recovers after faults clear", func(t *testing.T) {
		rows, err := c.ExportRecords(ctx, redcap.ExportParams{})
		if err != nil || len(rows) != 5 {
			t.Fatalf("%d rows, %v", len(rows), err)
		}
	})
	t.Run("cancelled context", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		_, err := c.ExportVersion(cctx)
		assertErr(t, err, tokClassic, redcap.KindTransient, 0, "")
		if !errors.Is(err, context.Canceled) {
			t.Errorf("should wrap context.Canceled: %v", err)
		}
	})
}

// TestEmptyAnswerStillImported: an empty 200 loses the answer, not the
// import; re-sending the same batch is safe.
func TestEmptyAnswerStillImported(t *testing.T) {
	e := newEnv(t)
	c := e.client(t, tokClassic)
	must(t, e.inj.Set(0, faults.Faults{EmptyRate: 1}))
	_, err := c.ImportRecords(ctx, []messages.Row{{"record_id": "42", "name": "Dee"}}, redcap.ImportParams{})
	assertErr(t, err, tokClassic, redcap.KindTransient, 200, "empty body")
	e.inj.Reset()
	res, err := c.ImportRecords(ctx, []messages.Row{{"record_id": "42", "name": "Dee"}}, redcap.ImportParams{})
	if err != nil || res.Count != 1 {
		t.Fatalf("%+v %v", res, err)
	}
	ids, _ := c.ExportRecordIDs(ctx, "record_id", time.Time{})
	if !reflect.DeepEqual(ids, []string{"42"}) {
		t.Fatalf("ids %v", ids)
	}
}

func TestRateLimiter(t *testing.T) {
	e := newEnv(t)
	// 120/min = 2/s with a burst of 2: 5 calls need at least ~1.5 s. Checked
	// through the call count only (no timing assertions): the limiter must
	// block a cancelled context instead of calling.
	c := e.client(t, tokClassic, func(o *redcap.Options) { o.CallsPerMinute = 120 })
	for i := 0; i < 2; i++ {
		if _, err := c.ExportVersion(ctx); err != nil {
			t.Fatal(err)
		}
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err := c.ExportVersion(short)
	assertErr(t, err, tokClassic, redcap.KindTransient, 0, "")
	if c.Calls() != 2 {
		t.Fatalf("limiter let a call through: %d calls", c.Calls())
	}
}

func TestTLS(t *testing.T) {
	sim, err := redcapsim.New(redcapsim.Options{})
	must(t, err)
	defer sim.Close()
	id, err := sim.CreateProject(classicSpec())
	must(t, err)
	must(t, sim.AddToken(id, tokClassic, redcapsim.FullRights(), ""))
	srv := httptest.NewUnstartedServer(sim.Handler())
	srv.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	defer srv.Close()
	url := srv.URL + "/api/"

	c, err := redcap.New(redcap.Options{Site: "site-a", URL: url, Token: tokClassic, CallsPerMinute: -1})
	must(t, err)
	_, err = c.ExportVersion(ctx)
	e := assertErr(t, err, tokClassic, redcap.KindPermanent, 0, "not trusted")
	if !strings.Contains(e.Hint, "ca_file") {
		t.Errorf("hint: %q", e.Hint)
	}

	ca := filepath.Join(t.TempDir(), "ca.pem")
	must(t, os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw}), 0o600))
	c, err = redcap.New(redcap.Options{Site: "site-a", URL: url, Token: tokClassic, CallsPerMinute: -1, CAFile: ca})
	must(t, err)
	if v, err := c.ExportVersion(ctx); err != nil || v == "" {
		t.Fatalf("with CAFile: %q %v", v, err)
	}
	// plain HTTP against the TLS port
	c, _ = redcap.New(redcap.Options{Site: "site-a", URL: strings.Replace(url, "https://", "http://", 1), Token: tokClassic, CallsPerMinute: -1})
	_, err = c.ExportVersion(ctx)
	if err == nil {
		t.Fatal("http:// to a TLS port succeeded")
	}
	// a bad CA file is refused at New
	badCA := filepath.Join(t.TempDir(), "bad.pem")
	os.WriteFile(badCA, []byte("not a pem"), 0o600)
	if _, err := redcap.New(redcap.Options{Site: "site-a", URL: url, Token: tokClassic, CAFile: badCA}); err == nil || !strings.Contains(err.Error(), badCA) {
		t.Fatalf("bad CA file: %v", err)
	}
}

// BenchmarkExportRecordsLoopback10k: the whole call (simulator + HTTP +
// decode) for 10,000 records of the classic project.
func BenchmarkExportRecordsLoopback10k(b *testing.B) {
	e := newEnv(b)
	rows := make([]messages.Row, 0, 10_000)
	for i := 0; i < 10_000; i++ {
		rows = append(rows, messages.Row{"record_id": fmt.Sprint(i + 1), "name": fmt.Sprintf("Person %d", i), "dob": "1980-01-02",
			"sex": fmt.Sprint(i % 2), "race___2": "1", "weight": fmt.Sprint(50 + i%50), "demographics_complete": "2"})
	}
	must(b, e.sim.ImportRows(e.classic, rows, false))
	c := e.client(b, tokClassic)
	b.ReportAllocs()
	for b.Loop() {
		got, err := c.ExportRecords(ctx, redcap.ExportParams{})
		if err != nil || len(got) != 10_000 {
			b.Fatal(len(got), err)
		}
	}
	b.ReportMetric(float64(10_000*b.N)/b.Elapsed().Seconds(), "records/s")
}

func TestGenerateNextRecordNameShowsADAGRestriction(t *testing.T) {
	sim, err := redcapsim.New(redcapsim.Options{})
	must(t, err)
	defer sim.Close()
	url, err := sim.Listen("127.0.0.1:0")
	must(t, err)
	pid, err := sim.CreateProject(redcapsim.ProjectSpec{Title: "dags", Fields: []messages.Field{{FieldName: "record_id", FormName: "f", FieldType: "text"}},
		DAGs: []messages.DAG{{Name: "East", Unique: "east"}}})
	must(t, err)
	must(t, sim.ImportRows(pid, []messages.Row{{"record_id": "1"}, {"record_id": "7"}}, false))
	all, east := strings.Repeat("A", 32), strings.Repeat("B", 32)
	must(t, sim.AddToken(pid, all, redcapsim.Rights{Export: true}, ""))
	must(t, sim.AddToken(pid, east, redcapsim.Rights{Export: true}, "east"))
	for tok, want := range map[string]*regexp.Regexp{all: regexp.MustCompile(`^8$`), east: regexp.MustCompile(`^[0-9]+-1$`)} {
		c, err := redcap.New(redcap.Options{Site: "s", URL: url, Token: tok, CallsPerMinute: -1})
		must(t, err)
		got, err := c.GenerateNextRecordName(ctx)
		if err != nil || !want.MatchString(got) {
			t.Errorf("next record name %q (%v), want %s", got, err, want)
		}
	}
}
