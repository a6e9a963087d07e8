package redcap_test

// Conformance of the calls the pipeline needs for files, survey fields,
// renamed records and DAG changes, against the simulator over loopback.

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/redcap"
	"github.com/redcap-relay/relay/services/internal/tools/redcapsim"
	"github.com/redcap-relay/relay/services/internal/tools/redcapsim/faults"
)

const (
	tokFiles   = "0A0A0A0A0A0A0A0A0A0A0A0A0A0A0A0A"
	tokNorth   = "0B0B0B0B0B0B0B0B0B0B0B0B0B0B0B0B"
	tokNoRight = "0C0C0C0C0C0C0C0C0C0C0C0C0C0C0C0C"
)

type moreEnv struct {
	sim *redcapsim.Server
	inj *faults.Injector
	url string
	pid int
}

// newMoreEnv: a longitudinal project with a consent file field, a
// repeating crf with a scan file field, two survey instruments and two
// DAGs; record 1 (north), 2 (south).
func newMoreEnv(t *testing.T) *moreEnv {
	t.Helper()
	sim, err := redcapsim.New(redcapsim.Options{MaxFileMB: 8})
	if err != nil {
		t.Fatal(err)
	}
	pid, err := sim.CreateProject(redcapsim.ProjectSpec{Title: "more",
		Fields: []messages.Field{
			field("rid", "consent", "text", "ID", "", ""), field("consent_pdf", "consent", "file", "Consent", "", ""),
			field("mood", "daily", "text", "Mood", "", "integer"), field("scan", "crf", "file", "Scan", "", ""),
		},
		Events: []messages.Event{{EventName: "Baseline", UniqueEventName: "baseline_arm_1"}, {EventName: "Week 4", UniqueEventName: "week_4_arm_1"}},
		FormEventMapping: []messages.FormEvent{{UniqueEventName: "baseline_arm_1", Form: "consent"}, {UniqueEventName: "baseline_arm_1", Form: "daily"},
			{UniqueEventName: "week_4_arm_1", Form: "crf"}},
		Repeating: []messages.RepeatingForm{{EventName: "week_4_arm_1", FormName: "crf"}},
		Surveys:   []redcapsim.Survey{{Form: "consent", Title: "Consent"}, {Form: "daily", Title: "Daily"}},
		DAGs:      []messages.DAG{{Name: "North", Unique: "north"}, {Name: "South", Unique: "south"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	must(t, sim.AddToken(pid, tokFiles, redcapsim.FullRights(), ""))
	must(t, sim.AddToken(pid, tokNorth, redcapsim.Rights{Export: true, Import: true}, "north"))
	must(t, sim.AddToken(pid, tokNoRight, redcapsim.Rights{Export: true}, ""))
	must(t, sim.ImportRows(pid, []messages.Row{
		{"rid": "1", "redcap_event_name": "baseline_arm_1", "mood": "3", "redcap_data_access_group": "north"},
		{"rid": "1", "redcap_event_name": "week_4_arm_1", "redcap_repeat_instrument": "crf", "redcap_repeat_instance": "1"},
		{"rid": "2", "redcap_event_name": "baseline_arm_1", "mood": "5", "redcap_data_access_group": "south"},
	}, false))
	must(t, sim.SetSurveyResponse(pid, "1", "baseline_arm_1", "daily", 0, "2025-03-04 05:06:07"))
	inj := faults.New(sim.Handler(), sim.ProjectIDForToken)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: inj}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close(); sim.Close() })
	return &moreEnv{sim: sim, inj: inj, url: "http://" + ln.Addr().String() + "/api/", pid: pid}
}

func (e *moreEnv) client(t *testing.T, tok string) *redcap.Client {
	t.Helper()
	c, err := redcap.New(redcap.Options{Site: "site-a", URL: e.url, Token: tok, CallsPerMinute: -1, Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// countingReader fails the test if the client reads more than it needs at
// once (it must stream, not buffer the file).
type chunkedSource struct {
	r       io.Reader
	biggest int
}

func (c *chunkedSource) Read(p []byte) (int, error) {
	if len(p) > c.biggest {
		c.biggest = len(p)
	}
	return c.r.Read(p)
}

func TestConformanceFiles(t *testing.T) {
	e := newMoreEnv(t)
	c := e.client(t, tokFiles)
	content := make([]byte, 5<<20)
	rand.Read(content)
	src := &chunkedSource{r: bytes.NewReader(content)}
	ref := redcap.FileRef{Record: "1", Field: "consent_pdf", Event: "baseline_arm_1"}
	must(t, c.ImportFile(ctx, ref, "consent.pdf", src, int64(len(content))))
	if src.biggest > 1<<20 {
		t.Errorf("the upload read %d bytes at once", src.biggest)
	}
	h := sha256.New()
	info, err := c.ExportFile(ctx, ref, h)
	if err != nil {
		t.Fatal(err)
	}
	want := sha256.Sum256(content)
	if info.Name != "consent.pdf" || info.MIME != "application/pdf" || info.Size != int64(len(content)) || !bytes.Equal(h.Sum(nil), want[:]) {
		t.Fatalf("export: %+v", info)
	}
	// A repeating instance has its own file; another instance has none.
	inst := redcap.FileRef{Record: "1", Field: "scan", Event: "week_4_arm_1", Instance: 1}
	must(t, c.ImportFile(ctx, inst, "scan.txt", strings.NewReader("scan one"), -1)) // chunked works too
	var buf bytes.Buffer
	if info, err := c.ExportFile(ctx, inst, &buf); err != nil || buf.String() != "scan one" || info.MIME != "text/plain" {
		t.Fatalf("instance export: %+v %v %q", info, err, buf.String())
	}
	_, err = c.ExportFile(ctx, redcap.FileRef{Record: "1", Field: "scan", Event: "week_4_arm_1", Instance: 2}, io.Discard)
	assertErr(t, err, tokFiles, redcap.KindPermanent, 400, "There is no file to download for this record")
	_, err = c.ExportFile(ctx, redcap.FileRef{Record: "1", Field: "mood", Event: "baseline_arm_1"}, io.Discard)
	assertErr(t, err, tokFiles, redcap.KindPermanent, 400, "The field 'mood' does not exist or is not a 'file' field")
	err = c.ImportFile(ctx, redcap.FileRef{Record: "1", Field: "consent_pdf"}, "x.pdf", strings.NewReader("x"), 1)
	assertErr(t, err, tokFiles, redcap.KindPermanent, 400, "invalid event")
	err = c.ImportFile(ctx, ref, "big.bin", bytes.NewReader(make([]byte, 8<<20+1)), 8<<20+1)
	assertErr(t, err, tokFiles, redcap.KindPermanent, 400, "exceeded the maximum file size limit of 8 MB")
	err = e.client(t, tokNoRight).ImportFile(ctx, ref, "x.pdf", strings.NewReader("x"), 1)
	assertErr(t, err, tokNoRight, redcap.KindPermanent, 403, "API Import/Update")
	// The flat export names the file.
	rows, err := c.ExportRecords(ctx, redcap.ExportParams{Fields: []string{"rid", "consent_pdf"}, Events: []string{"baseline_arm_1"}})
	if err != nil || len(rows) != 2 || rows[0]["consent_pdf"] != "consent.pdf" {
		t.Fatalf("flat: %v %v", rows, err)
	}
	// A download whose connection drops is transient, never a silent short
	// file; so is an empty 200 (no file name).
	must(t, e.inj.Set(0, faults.Faults{CutRate: 1}))
	_, err = c.ExportFile(ctx, ref, io.Discard)
	assertErr(t, err, tokFiles, redcap.KindTransient, 200, "broke off after")
	must(t, e.inj.Set(0, faults.Faults{EmptyRate: 1}))
	_, err = c.ExportFile(ctx, ref, io.Discard)
	assertErr(t, err, tokFiles, redcap.KindTransient, 200, "empty")
	e.inj.Reset()
	must(t, c.DeleteFile(ctx, ref))
	_, err = c.ExportFile(ctx, ref, io.Discard)
	assertErr(t, err, tokFiles, redcap.KindPermanent, 400, "There is no file to download")
	assertErr(t, c.DeleteFile(ctx, ref), tokFiles, redcap.KindPermanent, 400, "There is no file to delete for this record")
}

func TestConformanceSurveyFields(t *testing.T) {
	e := newMoreEnv(t)
	c := e.client(t, tokFiles)
	rows, err := c.ExportRecords(ctx, redcap.ExportParams{Forms: []string{"daily"}, Events: []string{"baseline_arm_1"}, ExportSurveyFields: true})
	if err != nil || len(rows) != 2 {
		t.Fatal(rows, err)
	}
	if rows[0]["daily_timestamp"] != "2025-03-04 05:06:07" || rows[1]["daily_timestamp"] != "" {
		t.Fatalf("timestamps: %v", rows)
	}
	if _, ok := rows[0]["redcap_survey_identifier"]; !ok {
		t.Fatalf("no redcap_survey_identifier: %v", rows[0])
	}
	plain, err := c.ExportRecords(ctx, redcap.ExportParams{Forms: []string{"daily"}})
	if err != nil || plain[0]["daily_timestamp"] != "" {
		t.Fatal(plain, err)
	}
	if _, ok := plain[0]["daily_timestamp"]; ok {
		t.Fatal("survey columns without ExportSurveyFields")
	}
}

func TestConformanceRenameAndLog(t *testing.T) {
	e := newMoreEnv(t)
	c := e.client(t, tokFiles)
	must(t, c.RenameRecord(ctx, "2", "20", 0))
	ids, err := c.ExportRecordIDs(ctx, "rid", time.Time{})
	if err != nil || strings.Join(ids, ",") != "1,20" {
		t.Fatalf("ids after rename: %v %v", ids, err)
	}
	log, err := c.ExportLogging(ctx, redcap.LogParams{LogType: "record"})
	if err != nil || len(log) == 0 || log[0].Action != "Rename Record (API) 20" || log[0].Record != "20" || !strings.Contains(log[0].Details, "old_record = '2'") {
		t.Fatalf("log: %+v %v", log, err)
	}
	assertErr(t, c.RenameRecord(ctx, "2", "21", 0), tokFiles, redcap.KindPermanent, 400, "Current Record does not exists.")
	assertErr(t, c.RenameRecord(ctx, "1", "20", 0), tokFiles, redcap.KindPermanent, 400, "already exists")
	assertErr(t, e.client(t, tokNoRight).RenameRecord(ctx, "1", "5", 0), tokNoRight, redcap.KindPermanent, 403, "Rename Record privileges")
}

func TestConformanceSwitchDAG(t *testing.T) {
	e := newMoreEnv(t)
	north := e.client(t, tokNorth)
	ids, err := north.ExportRecordIDs(ctx, "rid", time.Time{})
	if err != nil || strings.Join(ids, ",") != "1" {
		t.Fatalf("north: %v %v", ids, err)
	}
	assertErr(t, north.SwitchDAG(ctx, "south"), tokNorth, redcap.KindPermanent, 403, "DAG Switcher")
	_, user, _ := e.sim.UserForToken(tokNorth)
	must(t, e.sim.AllowDAGSwitch(e.pid, user, "north", "south"))
	must(t, north.SwitchDAG(ctx, "south"))
	if ids, err = north.ExportRecordIDs(ctx, "rid", time.Time{}); err != nil || strings.Join(ids, ",") != "2" {
		t.Fatalf("after the switch: %v %v", ids, err)
	}
	assertErr(t, north.SwitchDAG(ctx, "east"), tokNorth, redcap.KindPermanent, 400, "not a valid unique Data Access Group name")
	log, err := e.client(t, tokFiles).ExportLogging(ctx, redcap.LogParams{LogType: "manage"})
	if err != nil || len(log) == 0 || log[0].Action != "Switch DAG" || log[0].Username != user {
		t.Fatalf("log: %+v %v", log, err)
	}
}

func TestConformanceExportUsers(t *testing.T) {
	e := newMoreEnv(t)
	users, err := e.client(t, tokFiles).ExportUsers(ctx)
	if err != nil || len(users) != 3 {
		t.Fatalf("%+v %v", users, err)
	}
	_, northUser, _ := e.sim.UserForToken(tokNorth)
	var north redcap.User
	for _, u := range users {
		if u.Username == northUser {
			north = u
		}
	}
	if north.DataAccessGroup != "north" || north.Privileges["api_export"] != 1 || north.Privileges["record_delete"] != 0 ||
		north.FormsExport["consent"] != 1 || north.Forms["daily"] != 1 {
		t.Fatalf("north user: %+v", north)
	}
	_, err = e.client(t, tokNoRight).ExportUsers(ctx)
	assertErr(t, err, tokNoRight, redcap.KindPermanent, 403, "'User Rights' privileges")
}
