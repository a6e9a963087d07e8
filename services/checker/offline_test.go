package checker

import (
	"archive/zip"
	"bytes"
	"encoding/csv"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/protocol"
	"github.com/redcap-relay/relay/services/internal/testfixtures"
)

func writeCSV(t *testing.T, path string, header []string, rows [][]string) {
	t.Helper()
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	w.Write(header)
	w.WriteAll(rows)
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

// writeProject writes a snapshot as the CSVs REDCap's API exports:
// dictionary, arms, events, instrument designation.
func writeProject(t *testing.T, dir string, m *messages.MetadataSnapshot) Offline {
	t.Helper()
	var rows [][]string
	for _, f := range m.Fields {
		rows = append(rows, []string{f.FieldName, f.FormName, f.FieldType, f.FieldLabel, f.SelectChoicesOrCalculations,
			f.TextValidationTypeOrShowSlider, f.TextValidationMin, f.TextValidationMax, f.BranchingLogic, f.RequiredField, f.MatrixGroupName})
	}
	o := Offline{Site: m.Site, Dictionary: filepath.Join(dir, "dictionary.csv"), Arms: filepath.Join(dir, "arms.csv"),
		Events: filepath.Join(dir, "events.csv"), Mapping: filepath.Join(dir, "designation.csv")}
	writeCSV(t, o.Dictionary, []string{"field_name", "form_name", "field_type", "field_label", "select_choices_or_calculations",
		"text_validation_type_or_show_slider_number", "text_validation_min", "text_validation_max", "branching_logic", "required_field", "matrix_group_name"}, rows)
	rows = nil
	for _, a := range m.Arms {
		rows = append(rows, []string{fmt.Sprint(a.ArmNum), a.Name})
	}
	writeCSV(t, o.Arms, []string{"arm_num", "name"}, rows)
	rows = nil
	for _, e := range m.Events {
		rows = append(rows, []string{e.EventName, fmt.Sprint(e.ArmNum), e.UniqueEventName})
	}
	writeCSV(t, o.Events, []string{"event_name", "arm_num", "unique_event_name"}, rows)
	rows = nil
	for _, fe := range m.FormEventMapping {
		rows = append(rows, []string{fmt.Sprint(fe.ArmNum), fe.UniqueEventName, fe.Form})
	}
	writeCSV(t, o.Mapping, []string{"arm_num", "unique_event_name", "form"}, rows)
	return o
}

// A longitudinal project checked offline: with its events it conforms;
// from the dictionary alone events are not checked (a note), never the
// false "the project is not longitudinal" error.
func TestOfflineLongitudinalProject(t *testing.T) {
	p, _ := protocol.HEALAdult()
	dir := t.TempDir()
	o := writeProject(t, dir, protocol.SiteSnapshot(p, "site-a"))
	r := CheckOffline(p, []Offline{o})[0]
	if r.Status != messages.ProtocolConformant || *r.Score != 100 || len(r.Findings) != 0 || !r.Longitudinal || r.Events != 4 {
		t.Fatalf("with events: %s %v %+v", r.Status, *r.Score, r.Findings)
	}
	r = CheckOffline(p, []Offline{{Site: "site-a", Dictionary: o.Dictionary}})[0]
	if r.Status != messages.ProtocolConformant || len(r.Findings) != 1 || r.Findings[0].Kind != protocol.KindEventsNotChecked ||
		r.Findings[0].Severity != messages.SeverityInfo {
		t.Fatalf("dictionary alone: %s %+v", r.Status, r.Findings)
	}
	// a designation removed is seen offline too
	var rows [][]string
	b, _ := os.ReadFile(o.Mapping)
	recs, _ := csv.NewReader(bytes.NewReader(b)).ReadAll()
	for _, rec := range recs[1:] {
		if !(rec[1] == "month_6_arm_1" && rec[2] == "pgic") {
			rows = append(rows, rec)
		}
	}
	writeCSV(t, o.Mapping, recs[0], rows)
	r = CheckOffline(p, []Offline{o})[0]
	if len(r.Findings) != 1 || r.Findings[0].Kind != protocol.KindEventNotMapped || r.Findings[0].Event != "month_6" {
		t.Fatalf("designation removed: %+v", r.Findings)
	}
}

// A project XML carries the events itself; it gives the same snapshot as
// the project's own CSVs.
func TestOfflineProjectXML(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"project.xml", "dictionary.csv", "event.csv", "arm.csv"} {
		b, err := testfixtures.Read("redcap/projects/longitudinal/" + name)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dir, name), b, 0o644)
	}
	fromXML, known, err := LoadOffline(Offline{Site: "l", Dictionary: filepath.Join(dir, "project.xml")})
	if err != nil || !known || fromXML.Project.IsLongitudinal != 1 {
		t.Fatalf("xml: %v %v %+v", err, known, fromXML.Project)
	}
	fromCSV, known, err := LoadOffline(Offline{Site: "l", Dictionary: filepath.Join(dir, "dictionary.csv"),
		Events: filepath.Join(dir, "event.csv"), Arms: filepath.Join(dir, "arm.csv")})
	if err != nil || !known {
		t.Fatal(err)
	}
	if len(fromXML.Events) != len(fromCSV.Events) || len(fromXML.Arms) != len(fromCSV.Arms) || len(fromXML.Fields) != len(fromCSV.Fields) {
		t.Fatalf("xml %d events %d arms %d fields; csv %d %d %d", len(fromXML.Events), len(fromXML.Arms), len(fromXML.Fields),
			len(fromCSV.Events), len(fromCSV.Arms), len(fromCSV.Fields))
	}
	for i, e := range fromXML.Events {
		if e.UniqueEventName != fromCSV.Events[i].UniqueEventName || e.EventName != fromCSV.Events[i].EventName {
			t.Errorf("event %d: xml %+v csv %+v", i, e, fromCSV.Events[i])
		}
	}
	if len(fromXML.FormEventMapping) == 0 {
		t.Error("the XML's designations are missing")
	}
	// checked against itself, the XML project conforms
	p := protocol.FromSnapshot("ref", "1", fromXML)
	r := CheckOffline(p, []Offline{{Site: "l", Dictionary: filepath.Join(dir, "project.xml")}})[0]
	if r.Status != messages.ProtocolConformant || r.Errors != 0 {
		t.Fatalf("%s: %+v", r.Status, r.Findings)
	}
}

// A REDCap instrument zip (instrument.csv inside) is read as a dictionary.
func TestOfflineInstrumentZip(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "phq8_s1_r1_e1.zip")
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	w, _ := zw.Create("instrument.csv")
	w.Write([]byte(testfixtures.PHQ8Export))
	w, _ = zw.Create("OriginID.txt")
	w.Write([]byte("redcap.example.edu"))
	zw.Close()
	os.WriteFile(path, b.Bytes(), 0o644)
	p, _ := protocol.HEALAdult()
	r := CheckOffline(p, []Offline{{Site: "fiu", Dictionary: path}})[0]
	var in messages.ProtocolInstrument
	for _, x := range r.Instruments {
		if x.Instrument == "phq2" {
			in = x
		}
	}
	if in.Substitute != "phq8" || in.FieldsOK != 8 {
		t.Fatalf("phq2: %+v", in)
	}
	renamed := 0
	for _, f := range r.Findings {
		if f.Kind == protocol.KindFieldRenamed {
			renamed++
		}
		if f.Kind == protocol.KindNotLongitudinal {
			t.Error("a dictionary alone is called not longitudinal")
		}
	}
	if renamed != 8 {
		t.Errorf("%d renamed", renamed)
	}
	// not a zip of an instrument
	bad := filepath.Join(dir, "other.zip")
	b.Reset()
	zw = zip.NewWriter(&b)
	w, _ = zw.Create("readme.txt")
	w.Write([]byte("x"))
	zw.Close()
	os.WriteFile(bad, b.Bytes(), 0o644)
	r = CheckOffline(p, []Offline{{Site: "x", Dictionary: bad}})[0]
	if r.Status != messages.ProtocolError || !strings.Contains(r.Error, "instrument.csv") || !strings.Contains(r.Error, "other.zip") {
		t.Errorf("bad zip: %+v", r)
	}
}

// Every bad file names the site and the file.
func TestOfflineBadFiles(t *testing.T) {
	p, _ := protocol.HEALAdult()
	dir := t.TempDir()
	o := writeProject(t, dir, protocol.SiteSnapshot(p, "s"))
	os.WriteFile(o.Events, []byte("event_name,arm_num,unique_event_name\nBaseline,one,baseline_arm_1\n"), 0o644)
	r := CheckOffline(p, []Offline{o})[0]
	if r.Status != messages.ProtocolError || !strings.Contains(r.Error, "site s") || !strings.Contains(r.Error, "events.csv") || !strings.Contains(r.Error, `"one"`) {
		t.Errorf("bad events: %+v", r.Error)
	}
	o.Events, o.Repeating = "", filepath.Join(dir, "missing.csv")
	r = CheckOffline(p, []Offline{o})[0]
	if r.Status != messages.ProtocolError || !strings.Contains(r.Error, "repeating") {
		t.Errorf("missing repeating file: %+v", r.Error)
	}
}
