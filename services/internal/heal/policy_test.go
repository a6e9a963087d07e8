package heal

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/config"
	"github.com/redcap-relay/relay/services/internal/heal/vlmd"
	"github.com/redcap-relay/relay/services/internal/protocol"
	"github.com/redcap-relay/relay/services/internal/tools/redcapsim"
)

// A two-site network seeded through the simulator's Go API with what the
// pipeline writes (each site's records through its compiled policy):
// site a names PEG's first item peg_avg and its policy renames it to the
// library's pegavgpainscl, and drops PEG's third item; site b uses the
// library's names and releases all three. The destination also holds a
// field no policy writes and, for a record of site a, a value site a's
// policy does not release (entered at the center).
type twoSites struct {
	sim  *redcapsim.Server
	net  *config.Network
	dest int
	dir  string
}

func pegField(name, label string) messages.Field {
	return messages.Field{FieldName: name, FormName: "peg", FieldType: "radio", FieldLabel: label,
		SelectChoicesOrCalculations: "0, 0 No pain | 1, 1 | 2, 2 | 3, 3 | 4, 4 | 5, 5 | 6, 6 | 7, 7 | 8, 8 | 9, 9 | 10, 10 Worst"}
}

var (
	siteAFields = []messages.Field{
		{FieldName: "record_id", FormName: "peg", FieldType: "text", FieldLabel: "ID"},
		pegField("peg_avg", "Average pain"), pegField("pegenjoylifescl", "Enjoyment"), pegField("peggenactvtscl", "Activity"),
		{FieldName: "peg_comment", FormName: "peg", FieldType: "notes", FieldLabel: "Comment"},
	}
	siteBFields = []messages.Field{
		{FieldName: "record_id", FormName: "peg", FieldType: "text", FieldLabel: "ID"},
		pegField("pegavgpainscl", "Average pain"), pegField("pegenjoylifescl", "Enjoyment"), pegField("peggenactvtscl", "Activity"),
	}
	twoDestFields = []messages.Field{
		{FieldName: "record_id", FormName: "peg", FieldType: "text", FieldLabel: "ID"},
		pegField("pegavgpainscl", "Average pain"), pegField("pegenjoylifescl", "Enjoyment"), pegField("peggenactvtscl", "Activity"),
		{FieldName: "center_only", FormName: "peg", FieldType: "text", FieldLabel: "Entered at the center"},
	}
)

const policyA = `name: site-a
approved: {forms: [peg]}
free_text: drop
rename: {peg_avg: pegavgpainscl}
rules:
  - {field: peggenactvtscl, rule: drop}
`
const policyB = `name: site-b
approved: {forms: [peg]}
`

func newTwoSites(t *testing.T, destRights redcapsim.Rights) *twoSites {
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
	ts := &twoSites{sim: sim, dir: t.TempDir()}
	write := func(name, body string) {
		if err := os.WriteFile(filepath.Join(ts.dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	project := func(name string, fields []messages.Field, rights redcapsim.Rights) int {
		pid, err := sim.CreateProject(redcapsim.ProjectSpec{Title: name, Fields: fields})
		if err != nil {
			t.Fatal(err)
		}
		tok := fmt.Sprintf("%032X", pid*7919)
		if err := sim.AddToken(pid, tok, rights, ""); err != nil {
			t.Fatal(err)
		}
		write(name+".token", tok)
		return pid
	}
	pa := project("a", siteAFields, redcapsim.Rights{Export: true, Metadata: true})
	pb := project("b", siteBFields, redcapsim.Rights{Export: true, Metadata: true})
	ts.dest = project("destination", twoDestFields, destRights)
	write("a.yaml", policyA)
	write("b.yaml", policyB)
	write("network.yaml", fmt.Sprintf(`destination:
  url: %[1]s
  token: {file: destination.token}
  calls_per_minute: -1
sites:
  - {id: a, url: %[1]s, token: {file: a.token}, policy: a.yaml, calls_per_minute: -1}
  - {id: b, url: %[1]s, token: {file: b.token}, policy: b.yaml, calls_per_minute: -1}
`, url))
	if ts.net, err = config.Load(filepath.Join(ts.dir, "network.yaml")); err != nil {
		t.Fatal(err)
	}
	// Site data, and the destination as the pipeline would write it.
	var destRows []messages.Row
	for i, s := range []struct {
		id   string
		pid  int
		name string
	}{{"a", pa, "peg_avg"}, {"b", pb, "pegavgpainscl"}} {
		var rows []messages.Row
		for r := 1; r <= 30; r++ {
			row := messages.Row{"record_id": fmt.Sprint(r), s.name: fmt.Sprint(r % 11), "pegenjoylifescl": fmt.Sprint((r + 3) % 11),
				"peggenactvtscl": fmt.Sprint((r + 5) % 11), "peg_complete": "2"}
			if s.id == "a" {
				row["peg_comment"] = fmt.Sprintf("lives at %d Hidden Lane, call me", 100+r)
			}
			rows = append(rows, row)
		}
		if err := sim.ImportRows(s.pid, rows, false); err != nil {
			t.Fatal(err)
		}
		st, _ := ts.net.Site(s.id)
		c := compileSite(t, ts.net, st)
		for _, row := range rows {
			out, err := c.Apply(messages.RecordExported{Site: s.id, RecordID: row["record_id"], Rows: []messages.Row{row}})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range out.Rows {
				if i == 0 && row["record_id"] == "1" {
					r["peggenactvtscl"] = "9" // entered at the center, not released by site a
				}
				r["center_only"] = "center value " + out.DestRecordID
				destRows = append(destRows, r)
			}
		}
	}
	if err := sim.ImportRows(ts.dest, destRows, false); err != nil {
		t.Fatal(err)
	}
	return ts
}

func dictFields(t *testing.T, dir string) map[string]vlmd.Field {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, FileDictJSON))
	if err != nil {
		t.Fatal(err)
	}
	var d vlmd.Dictionary
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	return byName(d.Fields)
}

func byName(fs []vlmd.Field) map[string]vlmd.Field {
	m := map[string]vlmd.Field{}
	for _, f := range fs {
		m[f.Name] = f
	}
	return m
}

func TestPoliciesDecideWhatIsInThePackage(t *testing.T) {
	ts := newTwoSites(t, redcapsim.FullRights())
	res, dir := exportPkg(t, ts.net, Options{})
	fields := dictFields(t, dir)
	// The field site a renamed maps to the library item it was renamed to.
	avg, ok := fields["pegavgpainscl"]
	if !ok || len(avg.StandardsMappings) != 1 || avg.StandardsMappings[0].Item.ID != "pegavgpainscl" || avg.StandardsMappings[0].Instrument.ID != "HEALCDE:peg" {
		t.Fatalf("the renamed field's mapping: %+v", avg)
	}
	for _, gone := range []string{"peg_avg", "peg_comment", "center_only"} {
		if _, ok := fields[gone]; ok {
			t.Errorf("%s is in the dictionary: no policy writes it to the destination", gone)
		}
	}
	header, rows := readCSV(t, filepath.Join(dir, res.DataFile))
	col := map[string]int{}
	for j, h := range header {
		col[h] = j
	}
	if _, ok := col["center_only"]; ok {
		t.Fatal("a destination field no policy writes is in the data")
	}
	if len(rows) != 60 || res.Records != 60 {
		t.Fatalf("%d rows, %d records; want 60", len(rows), res.Records)
	}
	for _, r := range rows {
		act := r[col["peggenactvtscl"]]
		if strings.HasPrefix(r[0], "a-") && act != "" {
			t.Fatalf("record %s of site a has peggenactvtscl, which site a's policy drops", r[0])
		}
		if strings.HasPrefix(r[0], "b-") && act == "" {
			t.Fatalf("record %s of site b lost peggenactvtscl", r[0])
		}
	}
	if w := strings.Join(res.Warnings, "\n"); !strings.Contains(w, "site a: 1 value(s)") || !strings.Contains(w, "peggenactvtscl") {
		t.Errorf("the value withheld from a's record is reported by site and field: %s", w)
	}
	b, _ := os.ReadFile(filepath.Join(dir, res.DataFile))
	if strings.Contains(string(b), "Hidden Lane") || strings.Contains(string(b), "center value") {
		t.Fatal("an unreleased value is in the data")
	}

	// Site a alone: the field its policy drops is in neither file.
	res, dir = exportPkg(t, ts.net, Options{Sites: []string{"a"}})
	fields = dictFields(t, dir)
	if _, ok := fields["peggenactvtscl"]; ok {
		t.Fatal("site a drops peggenactvtscl: it must not be in its package's dictionary")
	}
	header, rows = readCSV(t, filepath.Join(dir, res.DataFile))
	if strings.Contains(strings.Join(header, ","), "peggenactvtscl") || len(rows) != 30 {
		t.Fatalf("site a's package: header %v, %d rows", header, len(rows))
	}
	for _, r := range rows {
		if !strings.HasPrefix(r[0], "a-") {
			t.Fatalf("record %s is not site a's", r[0])
		}
	}
	if res.Checklist[1].Instrument != "peg" || res.Checklist[1].Status != CDEUsed || res.Checklist[0].Status != CDENotUsed {
		t.Errorf("checklist: %+v", res.Checklist[:2])
	}
}

// A destination token without the export right: a clear error naming the
// remedy, and no package.
func TestDestinationWithoutExportRights(t *testing.T) {
	ts := newTwoSites(t, redcapsim.Rights{Import: true, Metadata: true})
	p, _ := protocol.HEALAdult()
	dir := filepath.Join(t.TempDir(), "pkg")
	_, err := Export(context.Background(), Options{Network: ts.net, Protocol: p, Out: dir})
	if err == nil || !strings.Contains(err.Error(), "no right to export") || !strings.Contains(err.Error(), "destination.export_token") {
		t.Fatalf("want a clear error about export rights, got %v", err)
	}
	// With a read-only export token of its own, the same network exports.
	tok := "ABCDEF0123456789ABCDEF0123456789"
	if err := ts.sim.AddToken(ts.dest, tok, redcapsim.Rights{Export: true}, ""); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ts.dir, "export.token"), []byte(tok), 0o600); err != nil {
		t.Fatal(err)
	}
	ts.net.Destination.ExportToken = config.Secret{File: filepath.Join(ts.dir, "export.token")}
	if res, _ := exportPkg(t, ts.net, Options{}); res.Records != 60 {
		t.Fatalf("with destination.export_token: %d records", res.Records)
	}
	if _, err := Export(context.Background(), Options{Network: ts.net, Protocol: p, Out: ts.dir}); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("a non-empty --out is refused: %v", err)
	}
}

// --validate never passes a broken package: each way of breaking one is
// caught and named.
func TestValidateCatchesBrokenPackages(t *testing.T) {
	ts := newTwoSites(t, redcapsim.FullRights())
	res, dir := exportPkg(t, ts.net, Options{})
	cases := map[string]struct {
		file string
		edit func(string) string
		want []string
	}{
		"decimal minimum": {FileDictJSON, func(s string) string {
			return strings.Replace(s, `"enum": [`, `"minimum": 0.5, "enum": [`, 1)
		}, []string{"got number, want integer", "the manifest says"}},
		"one value changed": {res.DataFile, func(s string) string { return strings.Replace(s, ",2\n", ",1\n", 1) }, []string{"has MD5"}},
		"bad type":          {FileDictCSV, func(s string) string { return strings.Replace(s, ",integer,", ",decimal,", 1) }, []string{"column type", "value must be one of"}},
		"column dropped from the data": {res.DataFile, func(s string) string {
			lines := strings.Split(s, "\n")
			for i, l := range lines {
				if j := strings.LastIndex(l, ","); j >= 0 {
					lines[i] = l[:j]
				}
			}
			return strings.Join(lines, "\n")
		}, []string{"dictionary field peg_complete is not a column of the data"}},
		"extra file": {"data/extra.csv", func(string) string { return "x\n" }, []string{"data/extra.csv is in the package but not in the manifest"}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			d := filepath.Join(t.TempDir(), "pkg")
			if err := os.CopyFS(d, os.DirFS(dir)); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(d, filepath.FromSlash(c.file))
			b, _ := os.ReadFile(p)
			if err := os.WriteFile(p, []byte(c.edit(string(b))), 0o644); err != nil {
				t.Fatal(err)
			}
			vs, err := Validate(d)
			if err != nil {
				t.Fatal(err)
			}
			text := strings.Join(vs, "\n")
			for _, w := range c.want {
				if !strings.Contains(text, w) {
					t.Errorf("want a violation mentioning %q, got:\n%s", w, text)
				}
			}
		})
	}
	if vs, err := Validate(dir); err != nil || len(vs) != 0 {
		t.Fatalf("the untouched package validates: %v %v", vs, err)
	}
}
