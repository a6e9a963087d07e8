package checker

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/pipeline/retry"
	"github.com/redcap-relay/relay/services/internal/protocol"
	"github.com/redcap-relay/relay/services/internal/tools/redcapsim"
)

func TestCheckSitesOnDemand(t *testing.T) {
	p, _ := protocol.HEALAdult()
	sim, err := redcapsim.New(redcapsim.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sim.Close() })
	url, err := sim.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := protocol.SiteSnapshot(p, "site-a")
	b := protocol.SiteSnapshot(p, "site-b")
	for i := range b.Fields {
		if b.Fields[i].FieldName == "dem_age" {
			b.Fields[i].TextValidationTypeOrShowSlider = "number"
		}
	}
	// REDCap lets a token read the project design only with API export rights
	noMeta := redcapsim.Rights{Import: true}
	tokens := map[string]string{
		"site-a": simSite(t, sim, a, 1, redcapsim.FullRights()),
		"site-b": simSite(t, sim, b, 2, redcapsim.FullRights()),
		"site-c": simSite(t, sim, protocol.SiteSnapshot(p, "site-c"), 3, noMeta),
	}
	n := Network(t, url, tokens, t.TempDir())
	rs := CheckSites(context.Background(), n, p, []string{"site-a", "site-b", "site-c", "site-z"}, Options{Items: true, Retry: retry.Policy{MaxElapsed: 1}})
	got := map[string]*messages.ProtocolReport{}
	for _, r := range rs {
		got[r.Site] = r
		t.Logf("%s: %s %s", r.Site, r.Status, r.Error)
	}
	if r := got["site-a"]; r.Status != messages.ProtocolConformant || r.SiteName != "Site site-a" {
		t.Errorf("site-a: %+v", r)
	}
	if r := got["site-b"]; r.Status != messages.ProtocolDeviations || r.Errors != 1 || r.Findings[0].Kind != protocol.KindValidation {
		t.Errorf("site-b: %+v", r.Findings)
	}
	if r := got["site-c"]; r.Status != messages.ProtocolError || !strings.Contains(r.Error, "metadata") || r.Score != nil {
		t.Errorf("site-c: %s %s", r.Status, r.Error)
	}
	if r := got["site-z"]; r.Status != messages.ProtocolError || !strings.Contains(r.Error, "not in the network file") {
		t.Errorf("site-z: %+v", r)
	}
	for _, r := range rs {
		for _, tok := range tokens {
			if strings.Contains(r.Error, tok) {
				t.Errorf("token in report of %s", r.Site)
			}
		}
	}
	if code := ExitCode(p, rs); code != 2 {
		t.Errorf("exit code %d", code)
	}
	if code := ExitCode(p, rs[:2]); code != 1 {
		t.Errorf("exit code %d", code)
	}
	if code := ExitCode(p, rs[:1]); code != 0 {
		t.Errorf("exit code %d", code)
	}
}

// A malformed dictionary file is an error report for that site; the other
// sites are still checked.
func TestCheckFilesBadInput(t *testing.T) {
	p, _ := protocol.HEALAdult()
	dir := t.TempDir()
	good := filepath.Join(dir, "good.csv")
	var sb strings.Builder
	sb.WriteString("field_name,form_name,section_header,field_type,field_label,select_choices_or_calculations\n")
	sb.WriteString("record_id,phq2,,text,Record ID,\n")
	sb.WriteString("phq_interest,phq2,,radio,Little interest,\"0, Not at all | 1, Several days | 2, More than half the days | 3, Nearly every day\"\n")
	sb.WriteString("phq_down,phq2,,radio,Feeling down,\"0, Not at all | 1, Several days | 2, More than half the days | 3, Nearly every day\"\n")
	os.WriteFile(good, []byte(sb.String()), 0o644)
	bad := filepath.Join(dir, "bad.csv")
	os.WriteFile(bad, []byte("Variable,Form\nx,y\n"), 0o644)
	rs := CheckFiles(p, map[string]string{"a": good, "b": bad, "c": filepath.Join(dir, "missing.csv")}, []string{"a", "b", "c"})
	if rs[0].Status != messages.ProtocolDeviations || rs[0].Instruments[6].Status != messages.InstrumentPresent {
		t.Errorf("a: %s %+v", rs[0].Status, rs[0].Instruments[6])
	}
	for _, r := range rs[1:] {
		if r.Status != messages.ProtocolError || r.Error == "" {
			t.Errorf("%s: %+v", r.Site, r)
		}
		t.Logf("%s: %s", r.Site, r.Error)
	}
}
