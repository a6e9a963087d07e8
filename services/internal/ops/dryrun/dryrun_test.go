package dryrun

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/policy"
	"github.com/redcap-relay/relay/services/internal/tools/redcapsim"
)

func f(name, form, typ, val, choices string) messages.Field {
	return messages.Field{FieldName: name, FormName: form, FieldType: typ, TextValidationTypeOrShowSlider: val, SelectChoicesOrCalculations: choices}
}

const testPolicy = `name: dry-run-test
approved:
  forms: [demographics, peg]
dates: shift
free_text: drop
rules:
  - field: first_name
    rule: drop
  - field: dob
    rule: year
  - field: age
    rule: cap_age
  - field: zip
    rule: zip3
rename:
  record_id: participant_id
  sex: gender
`

const (
	siteToken = "0123456789ABCDEF0123456789ABCDEF"
	destToken = "FEDCBA9876543210FEDCBA9876543210"
)

type env struct {
	sim      *redcapsim.Server
	sitePID  int
	destPID  int
	net      *config.Network
	compiled *policy.Compiled
}

func setup(t *testing.T) *env {
	t.Helper()
	sim, err := redcapsim.New(redcapsim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	url, err := sim.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sitePID, err := sim.CreateProject(redcapsim.ProjectSpec{Title: "Site A", Fields: []messages.Field{
		f("record_id", "demographics", "text", "", ""),
		f("first_name", "demographics", "text", "", ""),
		f("dob", "demographics", "text", "date_ymd", ""),
		f("age", "demographics", "text", "integer", ""),
		f("zip", "demographics", "text", "zipcode", ""),
		f("sex", "demographics", "radio", "", "1, Male | 2, Female"),
		f("peg_pain", "peg", "radio", "", "0, 0 | 1, 1 | 2, 2 | 3, 3 | 4, 4 | 5, 5"),
		f("peg_date", "peg", "text", "date_ymd", ""),
		f("peg_notes", "peg", "notes", "", ""),
		f("ssn", "contact", "text", "ssn", ""),
	}})
	if err != nil {
		t.Fatal(err)
	}
	destPID, err := sim.CreateProject(redcapsim.ProjectSpec{Title: "Coordinating center", Fields: []messages.Field{
		f("participant_id", "demographics", "text", "", ""),
		f("dob", "demographics", "text", "integer", ""),
		f("age", "demographics", "text", "integer", ""),
		f("zip", "demographics", "text", "", ""),
		f("gender", "demographics", "radio", "", "1, Male | 2, Female"),
		f("peg_pain", "peg", "radio", "", "0, 0 | 1, 1 | 2, 2 | 3, 3 | 4, 4 | 5, 5"),
		f("peg_date", "peg", "text", "date_ymd", ""),
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.AddToken(sitePID, siteToken, redcapsim.FullRights(), ""); err != nil {
		t.Fatal(err)
	}
	if err := sim.AddToken(destPID, destToken, redcapsim.FullRights(), ""); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("site.token", siteToken)
	write("dest.token", destToken)
	write("pseudonym.key", "dry-run-test-key-0123456789")
	write("policy.yaml", testPolicy)
	write("network.yaml", `destination:
  url: `+url+`
  token: {file: dest.token}
pseudonym_key: {file: pseudonym.key}
sites:
  - id: site_a
    url: `+url+`
    token: {file: site.token}
    policy: policy.yaml
    namespace: A
    propagate_deletions: true
    calls_per_minute: 500
`)
	net, err := config.Load(filepath.Join(dir, "network.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	site := []messages.Row{
		{"record_id": "1", "first_name": "Zelda Quuxington", "dob": "1931-04-02", "age": "93", "zip": "27157", "sex": "2", "demographics_complete": "2",
			"peg_pain": "3", "peg_date": "2024-05-06", "peg_notes": "lives on Quux Street", "peg_complete": "2", "ssn": "123-45-6789"},
		{"record_id": "2", "first_name": "Yannick Wobble", "dob": "1980-01-01", "age": "44", "zip": "03601", "sex": "1", "demographics_complete": "1",
			"peg_pain": "5", "peg_date": "2024-06-07", "peg_complete": "2"},
		{"record_id": "3", "first_name": "Xavier Plonk", "dob": "1990-12-31", "age": "33", "zip": "90210", "sex": "1", "demographics_complete": "0"},
	}
	if err := sim.ImportRows(sitePID, site, false); err != nil {
		t.Fatal(err)
	}
	// The destination already holds record 1 as a sync would write it, an
	// older version of record 2, and a record the site has since deleted.
	s, _ := net.Site("site_a")
	pol, err := policy.Load(s.Policy)
	if err != nil {
		t.Fatal(err)
	}
	meta := &messages.MetadataSnapshot{Fields: []messages.Field{
		f("record_id", "demographics", "text", "", ""), f("first_name", "demographics", "text", "", ""),
		f("dob", "demographics", "text", "date_ymd", ""), f("age", "demographics", "text", "integer", ""),
		f("zip", "demographics", "text", "zipcode", ""), f("sex", "demographics", "radio", "", "1, Male | 2, Female"),
		f("peg_pain", "peg", "radio", "", "0, 0 | 1, 1 | 2, 2 | 3, 3 | 4, 4 | 5, 5"), f("peg_date", "peg", "text", "date_ymd", ""),
		f("peg_notes", "peg", "notes", "", ""), f("ssn", "contact", "text", "ssn", ""),
	}}
	popts, _ := PolicyOptions(net, s)
	c, err := policy.Compile(pol, meta, popts)
	if err != nil {
		t.Fatal(err)
	}
	var dest []messages.Row
	for i, row := range site[:2] {
		row := copyRow(row)
		delete(row, "ssn") // not exported: the policy does not approve it
		out, err := c.Apply(messages.RecordExported{Site: "site_a", RecordID: row["record_id"], Rows: []messages.Row{row}})
		if err != nil {
			t.Fatal(err)
		}
		if i == 1 {
			out.Rows[0]["peg_pain"] = "1"
		}
		dest = append(dest, out.Rows...)
	}
	dest = append(dest, messages.Row{"participant_id": "A-99", "age": "50"})
	if err := sim.ImportRows(destPID, dest, false); err != nil {
		t.Fatal(err)
	}
	return &env{sim: sim, sitePID: sitePID, destPID: destPID, net: net, compiled: c}
}

func copyRow(r messages.Row) messages.Row {
	o := messages.Row{}
	for k, v := range r {
		o[k] = v
	}
	return o
}

func TestDryRunEndToEnd(t *testing.T) {
	e := setup(t)
	before, _ := e.sim.ExportRows(e.destPID)
	rep, err := Run(context.Background(), Options{Network: e.net, Site: "site_a"})
	if err != nil {
		t.Fatal(err)
	}
	after, _ := e.sim.ExportRows(e.destPID)
	if !reflect.DeepEqual(before, after) {
		t.Fatal("the dry run changed the destination")
	}
	status := map[string]RecordResult{}
	for _, r := range rep.Records {
		status[r.DestRecordID] = r
	}
	want := map[string]string{"A-1": StatusUnchanged, "A-2": StatusChanged, "A-3": StatusNew, "A-99": StatusDeleted}
	for id, s := range want {
		if status[id].Status != s {
			t.Errorf("%s: %+v, want %s", id, status[id], s)
		}
	}
	if len(rep.Records) != 4 {
		t.Errorf("records: %+v", rep.Records)
	}
	if got := status["A-2"].ChangedFields; !reflect.DeepEqual(got, []string{"peg_pain"}) {
		t.Errorf("A-2 changed fields = %v", got)
	}
	if len(rep.DestinationProblems) != 0 {
		t.Errorf("destination problems: %v", rep.DestinationProblems)
	}
	fields := map[string]FieldChange{}
	for _, fc := range rep.Fields {
		fields[fc.Field] = fc
	}
	if fields["peg_pain"].Changed != 1 || fields["gender"].New != 1 || fields["dob"].New != 1 || fields["participant_id"].New != 1 {
		t.Errorf("per field: %+v", rep.Fields)
	}
	dropped := map[string]string{}
	for _, d := range rep.Dropped {
		dropped[d.Field] = d.Why
	}
	if !strings.Contains(dropped["first_name"], "rules[0]") || dropped["peg_notes"] != "free_text: drop" || !strings.Contains(dropped["ssn"], "not approved") {
		t.Errorf("dropped: %v", dropped)
	}
	if !reflect.DeepEqual(rep.ExportFields, []string{"record_id", "dob", "age", "zip", "sex", "demographics_complete", "peg_pain", "peg_date", "peg_complete"}) {
		t.Errorf("export fields %v", rep.ExportFields)
	}
	var text bytes.Buffer
	if err := rep.WriteText(&text, true); err != nil {
		t.Fatal(err)
	}
	js, _ := json.Marshal(rep)
	for _, phi := range []string{"Zelda", "Quux", "Yannick", "Plonk", "1931-04-02", "27157", "03601", "123-45-6789", "2024-05-06"} {
		if strings.Contains(text.String(), phi) || strings.Contains(string(js), phi) {
			t.Errorf("report shows the value %q", phi)
		}
	}
	for _, s := range []string{"nothing was imported", "1 new, 1 changed, 1 unchanged, 0 refused by the policy, 1 would be deleted", "A-2", "peg_pain", "first_name", "free_text: drop"} {
		if !strings.Contains(text.String(), s) {
			t.Errorf("report lacks %q:\n%s", s, text.String())
		}
	}
	t.Log("\n" + text.String())
}

func TestDryRunDestinationMismatchAndExplain(t *testing.T) {
	e := setup(t)
	// The destination loses a field: the dry run still compares, and says a
	// real run would stop.
	s, _ := e.net.Site("site_a")
	pol, meta, ds, err := Explain(context.Background(), e.net, "site_a", nil)
	if err != nil || pol == nil || meta == nil {
		t.Fatalf("explain: %v", err)
	}
	acts := map[string]string{}
	for _, d := range ds {
		acts[d.Field] = d.Action
	}
	if acts["ssn"] != policy.Drop || acts["dob"] != policy.Year || acts["peg_date"] != policy.Shift || acts["record_id"] != "record_id" {
		t.Errorf("explain: %v", acts)
	}
	os.WriteFile(s.Policy, []byte(strings.Replace(testPolicy, "  sex: gender\n", "", 1)), 0o600)
	rep, err := Run(context.Background(), Options{Network: e.net, Site: "site_a"})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.DestinationProblems) != 1 || !strings.Contains(rep.DestinationProblems[0], "field sex → sex: not in the destination") {
		t.Errorf("destination problems: %v", rep.DestinationProblems)
	}
	// A policy that no longer fits the site is refused with its reasons.
	os.WriteFile(s.Policy, []byte(strings.Replace(testPolicy, "  - field: zip\n    rule: zip3\n", "", 1)), 0o600)
	_, err = Run(context.Background(), Options{Network: e.net, Site: "site_a"})
	if err == nil || !strings.Contains(err.Error(), "field zip: approved, but looks like an identifier") {
		t.Errorf("refusal: %v", err)
	}
	if _, err := Run(context.Background(), Options{Network: e.net, Site: "nope"}); err == nil || !strings.Contains(err.Error(), "site_a") {
		t.Errorf("unknown site: %v", err)
	}
}
