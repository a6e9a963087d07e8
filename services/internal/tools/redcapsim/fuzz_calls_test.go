package redcapsim

import (
	"bytes"
	"encoding/json"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/redcap-relay/relay/messages"
)

// stateOf is everything a write call can change: records, design, users,
// roles, files, folders, survey identifiers.
func stateOf(t *testing.T, s *Server, pid int) string {
	rows, err := s.ExportRows(pid)
	if err != nil {
		t.Fatal(err)
	}
	p := s.project(pid)
	p.mu.RLock()
	defer p.mu.RUnlock()
	b, _ := json.Marshal(struct {
		Rows      any
		Fields    any
		Events    any
		FEM       any
		Arms      any
		Repeating any
		DAGs      any
		Users     any
		Roles     any
		Docs      any
		Folders   any
		SurveyIDs any
		Title     string
	}{rows, p.fields, p.events, p.fem, p.arms, p.repeating, p.dags, p.userList(), p.roles, p.docList(), p.folders, p.surveyIdents, p.title})
	return string(b)
}

// fuzzClient gives up on a call that hangs (a lock left held would stall
// every later call).
var fuzzClient = &http.Client{Timeout: 10 * time.Second}

// writeCalls are the content/action pairs that change a project.
var writeCalls = [][2]string{
	{"record", "import"}, {"record", "delete"}, {"record", "rename"}, {"file", "import"}, {"file", "delete"},
	{"user", "import"}, {"user", "delete"}, {"userRole", "import"}, {"userRole", "delete"}, {"userRoleMapping", "import"},
	{"userDagMapping", "import"}, {"dag", "import"}, {"dag", "delete"}, {"dag", "switch"}, {"fileRepository", "createFolder"},
	{"fileRepository", "import"}, {"fileRepository", "delete"}, {"metadata", "import"}, {"event", "import"}, {"arm", "import"},
	{"formEventMapping", "import"}, {"repeatingFormsEvents", "import"}, {"project", "import"},
}

// FuzzWriteCalls sends every kind of write call with fuzzed parameters and
// data (as a form, or multipart with a file): never a 5xx (a panic), and a
// refused call changes nothing.
func FuzzWriteCalls(f *testing.F) {
	s, u := startSim(f, Options{MaxRequestBytes: 1 << 20, MaxFileMB: 1})
	pid, err := s.CreateProject(filesSpec())
	if err != nil {
		f.Fatal(err)
	}
	s.AddToken(pid, testToken, FullRights(), "")
	s.ImportRows(pid, []messages.Row{{"rid": "1", "redcap_event_name": "baseline_arm_1", "weight": "1"}}, false)
	seeds := []struct {
		call                 byte
		format, data, p1, p2 string
		multipart            bool
	}{
		{0, "json", `[{"rid":"2","weight":"5"}]`, "", "", false},
		{1, "json", "", "1", "crf", false},
		{2, "json", "", "1", "9", false},
		{3, "json", "%PDF", "1", "consent_pdf", true},
		{5, "json", `[{"username":"a","forms":{"consent":1}}]`, "", "", false},
		{7, "json", `[{"unique_role_name":"","role_label":"R","api_export":1}]`, "", "", false},
		{10, "csv", "username,redcap_data_access_group\na,\n", "", "", false},
		{14, "json", "", "Folder", "", false},
		{15, "json", "content", "1", "", true},
		{17, "json", `[{"field_name":"rid","form_name":"f","field_type":"text"}]`, "", "", false},
		{20, "json", `[{"arm_num":1,"unique_event_name":"baseline_arm_1","form":"consent"}]`, "", "", false},
		{22, "xml", `<item><project_title>T</project_title></item>`, "", "", false},
	}
	for _, sd := range seeds {
		f.Add(sd.call, sd.format, sd.data, sd.p1, sd.p2, sd.multipart)
	}
	f.Fuzz(func(t *testing.T, call byte, format, data, p1, p2 string, asMultipart bool) {
		wc := writeCalls[int(call)%len(writeCalls)]
		fields := map[string]string{"token": testToken, "content": wc[0], "action": wc[1], "format": format, "returnFormat": "json", "data": data,
			// p1/p2 fill the parameters these calls read.
			"record": p1, "records[0]": p1, "new_record_name": p2, "instrument": p2, "field": p2, "event": "baseline_arm_1",
			"repeat_instance": p2, "users[0]": p1, "roles[0]": p1, "dags[0]": p1, "dag": p1, "name": p1, "folder_id": p2, "doc_id": p1,
			"override": p2}
		before := stateOf(t, s, pid)
		var resp *http.Response
		var err error
		if asMultipart {
			var b bytes.Buffer
			mw := multipart.NewWriter(&b)
			for k, v := range fields {
				mw.WriteField(k, v)
			}
			fw, _ := mw.CreateFormFile("file", p2+".bin")
			fw.Write([]byte(data))
			mw.Close()
			resp, err = fuzzClient.Post(u, mw.FormDataContentType(), &b)
		} else {
			v := url.Values{}
			for k, x := range fields {
				v.Set(k, x)
			}
			resp, err = fuzzClient.PostForm(u, v)
		}
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode >= 500 {
			t.Fatalf("%v: status %d: %s", wc, resp.StatusCode, body)
		}
		if resp.StatusCode != 200 {
			if after := stateOf(t, s, pid); after != before {
				t.Fatalf("%v refused (%d %s) but changed the project", wc, resp.StatusCode, strings.TrimSpace(string(body)))
			}
		}
	})
}
