package redcapsim

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const superToken = "ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789ABCDEF0123456789"

// designOf exports what a project's design is: metadata, instruments, arms,
// events (without event_id, which a new project assigns anew), mapping,
// repeating setup and DAGs.
func designOf(t *testing.T, e *simEnv, tok string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, content := range []string{"metadata", "instrument", "arm", "event", "formEventMapping", "repeatingFormsEvents", "dag", "exportFieldNames"} {
		_, body := e.callTok(tok, "content", content, "format", "json")
		if content == "event" && strings.HasPrefix(body, "[") {
			var evs []map[string]any
			json.Unmarshal([]byte(body), &evs)
			for _, ev := range evs {
				delete(ev, "event_id")
			}
			b, _ := json.Marshal(evs)
			body = string(b)
		}
		if content == "dag" && strings.HasPrefix(body, "[") {
			var ds []map[string]any
			json.Unmarshal([]byte(body), &ds)
			for _, d := range ds {
				delete(d, "data_access_group_id")
			}
			b, _ := json.Marshal(ds)
			body = string(b)
		}
		out[content] = body
	}
	return out
}

// TestCreateProjectFromEachFixture: every project in testdata loads, and a
// project created through content=project from its project XML exports
// the same design (and data).
func TestCreateProjectFromEachFixture(t *testing.T) {
	dirs, _ := filepath.Glob("testdata/projects/*")
	if len(dirs) < 5 {
		t.Fatalf("only %d fixture projects", len(dirs))
	}
	for _, dir := range dirs {
		if _, err := os.Stat(filepath.Join(dir, "project.xml")); err != nil {
			continue
		}
		t.Run(filepath.Base(dir), func(t *testing.T) {
			e := loadFixture(t, filepath.Base(dir))
			e.s.SetSuperToken(superToken)
			_, x := e.call("content", "project_xml")
			code, _, tok := post(t, e.url, form("token", superToken, "content", "project", "format", "json",
				"data", `[{"project_title":"Copy","purpose":"2"}]`, "odm", x))
			if code != 200 || !tokenRE.MatchString(tok) || len(tok) != 32 {
				t.Fatalf("create: %d %q", code, tok)
			}
			want, got := designOf(t, e, testToken), designOf(t, e, tok)
			for k := range want {
				if want[k] != got[k] {
					t.Errorf("%s differs:\n%s\nwant\n%s", k, got[k], want[k])
				}
			}
			_, wantData := e.call("content", "record", "format", "csv", "exportDataAccessGroups", "true")
			_, gotData := e.callTok(tok, "content", "record", "format", "csv", "exportDataAccessGroups", "true")
			if wantData != gotData {
				t.Errorf("data differs")
			}
		})
	}
}

func TestCreateProjectForms(t *testing.T) {
	s, u := startSim(t, Options{})
	s.SetSuperToken(superToken)
	for _, c := range []struct{ format, data string }{
		{"xml", `<?xml version="1.0" encoding="UTF-8" ?><item><project_title>Bare item</project_title><purpose>0</purpose></item>`},
		{"xml", `<?xml version="1.0" encoding="UTF-8" ?><records><item><project_title>Wrapped</project_title><purpose>4</purpose><is_longitudinal>1</is_longitudinal></item></records>`},
		{"csv", "project_title,purpose\nFrom CSV,3\n"},
		{"json", `[{"project_title":"From JSON","purpose":"1","purpose_other":"tests"}]`},
	} {
		code, _, tok := post(t, u, form("token", superToken, "content", "project", "format", c.format, "data", c.data))
		if code != 200 || len(tok) != 32 || !tokenRE.MatchString(tok) {
			t.Fatalf("%s: %d %q", c.format, code, tok)
		}
		code, _, info := post(t, u, form("token", tok, "content", "project", "format", "json"))
		if code != 200 || !strings.Contains(info, `"record_autonumbering_enabled":1`) {
			t.Fatalf("%s: project info %s", c.format, info)
		}
		if strings.Contains(c.data, "<is_longitudinal>1") {
			if _, _, ev := post(t, u, form("token", tok, "content", "event", "format", "json")); !strings.Contains(ev, `"unique_event_name":"event_1_arm_1"`) {
				t.Fatalf("longitudinal default event: %s", ev)
			}
		}
	}
	for _, c := range []struct{ data, text string }{
		{`[{"project_title":"A","purpose":"0"},{"project_title":"B","purpose":"0"}]`, "Only one project can be created at a time"},
		{`[{"project_title":"A","purpose":"7"}]`, "'purpose' must have a value of 0, 1, 2, 3, or 4"},
		{`[{"purpose":"0"}]`, "project_title"},
		{`[{"project_title":"A","purpose":"1"}]`, "purpose_other"},
		{`not json`, "not formatted correctly"},
	} {
		code, _, body := post(t, u, form("token", superToken, "content", "project", "format", "json", "returnFormat", "json", "data", c.data))
		if code != 400 || !strings.Contains(body, c.text) {
			t.Errorf("%s: %d %s", c.data, code, body)
		}
	}
	// A project XML whose data does not import creates nothing.
	before := len(s.projs)
	bad := strings.Replace(minimalODM, "</ODM>", `<ClinicalData StudyOID="Project.X" MetaDataVersionOID="Metadata.X"><SubjectData SubjectKey="1"><FormData FormOID="Form.f"><ItemGroupData ItemGroupOID="f.items"><ItemData ItemOID="nope" Value="1"/></ItemGroupData></FormData></SubjectData></ClinicalData></ODM>`, 1)
	code, _, body := post(t, u, form("token", superToken, "content", "project", "format", "json", "returnFormat", "json", "data", `[{"project_title":"X","purpose":"0"}]`, "odm", bad))
	if code != 400 || len(s.projs) != before {
		t.Fatalf("bad data: %d %s, %d projects (was %d)", code, body, len(s.projs), before)
	}
}

const minimalODM = `<?xml version="1.0" encoding="UTF-8" ?>
<ODM xmlns="http://www.cdisc.org/ns/odm/v1.3" xmlns:redcap="https://projectredcap.org" ODMVersion="1.3.1">
<Study OID="Project.X"><GlobalVariables><StudyName>X</StudyName></GlobalVariables>
<MetaDataVersion OID="Metadata.X" Name="X" redcap:RecordIdField="rid">
<FormDef OID="Form.f" Name="F" redcap:FormName="f"><ItemGroupRef ItemGroupOID="f.items"/></FormDef>
<ItemGroupDef OID="f.items" Name="f"><ItemRef ItemOID="rid" redcap:Variable="rid"/></ItemGroupDef>
<ItemDef OID="rid" Name="rid" DataType="text" redcap:Variable="rid" redcap:FieldType="text"><Question><TranslatedText>ID</TranslatedText></Question></ItemDef>
</MetaDataVersion></Study></ODM>`

// TestDesignImportSemantics: the form-event mapping import replaces the
// whole mapping (every arm); arms and events import with override=1
// replace them all, with override=0 add and rename.
func TestDesignImportSemantics(t *testing.T) {
	e := newTwoArm(t, Options{})
	code, body := e.call("content", "formEventMapping", "format", "json", "data", `[{"arm_num":1,"unique_event_name":"base_arm_1","form":"enrol"}]`)
	if code != 200 || body != "1" {
		t.Fatalf("mapping import: %d %s", code, body)
	}
	if _, m := e.call("content", "formEventMapping", "format", "json"); m != `[{"arm_num":1,"unique_event_name":"base_arm_1","form":"enrol"}]` {
		t.Fatalf("mapping after import: %s", m)
	}
	if code, body = e.call("content", "arm", "action", "import", "format", "json", "data", `[{"arm_num":2,"name":"Renamed"},{"arm_num":3,"name":"Three"}]`); code != 200 || body != "2" {
		t.Fatalf("arms override=0: %d %s", code, body)
	}
	if _, a := e.call("content", "arm", "format", "json"); a != `[{"arm_num":1,"name":"A"},{"arm_num":2,"name":"Renamed"}]` {
		t.Fatalf("arms (arm 3 has no events, so it is not listed): %s", a)
	}
	if code, body = e.call("content", "event", "action", "import", "format", "json", "override", "1", "data", `[{"event_name":"Only","arm_num":"1"}]`); code != 200 {
		t.Fatalf("events override=1: %d %s", code, body)
	}
	if _, ev := e.call("content", "event", "format", "json"); !strings.Contains(ev, `"unique_event_name":"only_arm_1"`) || strings.Contains(ev, "base_arm") {
		t.Fatalf("events after override: %s", ev)
	}
	if code, body = e.call("content", "arm", "action", "import", "format", "json", "override", "1", "data", `[{"arm_num":1,"name":"Sole"}]`); code != 200 {
		t.Fatalf("arms override=1: %d %s", code, body)
	}
	if _, a := e.call("content", "arm", "format", "json"); a != `[{"arm_num":1,"name":"Sole"}]` {
		t.Fatalf("arms after override: %s", a)
	}
	if code, body = e.call("content", "formEventMapping", "format", "json", "returnFormat", "json", "data", `[{"arm_num":1,"unique_event_name":"nope_arm_1","form":"enrol"}]`); code != 400 || !strings.Contains(body, "nope_arm_1") {
		t.Fatalf("mapping to an unknown event: %d %s", code, body)
	}
}
