package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redcap-relay/relay/messages"
)

// Survey completion times travel only where the policy says how, with the
// record's own date shift, in a real destination field (REDCap ignores
// <form>_timestamp on import).
const surveyPolicy = `name: e2e-surveys
approved:
  forms: [survey]
record_id: {mode: namespace}
dates: shift
survey_timestamps: shift
free_text: drop
rules:
  - field: name
    rule: drop
rename:
  survey_timestamp: survey_completed_at
`

var completedAt = messages.Field{FieldName: "survey_completed_at", FormName: "survey", FieldType: "text",
	FieldLabel: "Survey completed at", TextValidationTypeOrShowSlider: "datetime_seconds_ymd"}

var visitDate = messages.Field{FieldName: "visit_date", FormName: "survey", FieldType: "text", FieldLabel: "Visit date", TextValidationTypeOrShowSlider: "date_ymd"}

func TestSurveyTimestampsAreShiftedLikeTheRecordsDates(t *testing.T) {
	n := newNet(t, netOpts{sites: []string{"alpha"}, records: 12, surveys: true, key: true, policy: surveyPolicy,
		destExtra: []messages.Field{visitDate, completedAt}})
	pid := n.sites["alpha"]
	for i := 1; i <= 12; i++ {
		if i%4 == 0 {
			continue // never answered the survey
		}
		if err := n.sim.SetSurveyResponse(pid, fmt.Sprint(i), "", "survey", 0, fmt.Sprintf("2026-03-%02d 09:%02d:30", i, i)); err != nil {
			t.Fatal(err)
		}
	}
	n.start(pipeline...)
	if ev := n.sync(false, time.Now())["alpha"]; ev.Phase != messages.PhaseExported {
		t.Fatalf("run: %+v", ev)
	}
	site, err := n.sim.ExportRows(pid)
	if err != nil {
		t.Fatal(err)
	}
	dest, err := n.sim.ExportRows(n.dest)
	if err != nil {
		t.Fatal(err)
	}
	byID := map[string]messages.Row{}
	for _, r := range dest {
		byID[r["record_id"]] = r
	}
	checked := 0
	for i := 1; i <= 12; i++ {
		d := byID[fmt.Sprintf("alpha-%d", i)]
		siteVisit, _ := time.Parse("2006-01-02", site[i-1]["visit_date"])
		destVisit, err := time.Parse("2006-01-02", d["visit_date"])
		if err != nil {
			t.Fatalf("record %d: visit_date %q at the destination", i, d["visit_date"])
		}
		offset := siteVisit.Sub(destVisit)
		if offset < 0 || offset > 364*24*time.Hour {
			t.Fatalf("record %d: dates shifted by %s", i, offset)
		}
		if i%4 == 0 {
			if d["survey_completed_at"] != "" {
				t.Fatalf("record %d never answered, but has a completion time %q", i, d["survey_completed_at"])
			}
			continue
		}
		got, err := time.Parse("2006-01-02 15:04:05", d["survey_completed_at"])
		if err != nil {
			t.Fatalf("record %d: survey_completed_at %q at the destination", i, d["survey_completed_at"])
		}
		want := time.Date(2026, 3, i, 9, i, 30, 0, time.UTC).Add(-offset)
		if !got.Equal(want) {
			t.Fatalf("record %d: completion time %s, want %s (shifted by the record's %s, like its visit date)", i, got, want, offset)
		}
		checked++
	}
	if checked != 9 {
		t.Fatalf("checked %d completion times, want 9", checked)
	}
}

func TestASurveyTimestampWithoutItsDestinationFieldStopsTheRun(t *testing.T) {
	n := newNet(t, netOpts{sites: []string{"alpha"}, records: 5, surveys: true, key: true, policy: surveyPolicy,
		destExtra: []messages.Field{visitDate}})
	n.start(pipeline...)
	ev := n.sync(false, time.Now())["alpha"]
	if ev.Phase != messages.PhaseFailed || !strings.Contains(ev.Error, "survey_timestamp → survey_completed_at: not in the destination") {
		t.Fatalf("run: %s %q; want it stopped by the destination check, naming the missing field", ev.Phase, ev.Error)
	}
	if got := len(n.destination()); got != 0 {
		t.Fatalf("%d records imported", got)
	}
}
