package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redcap-relay/relay/messages"
	"github.com/redcap-relay/relay/services/internal/pipeline/sitekit"
	"github.com/redcap-relay/relay/services/internal/redcap"
	"github.com/redcap-relay/relay/services/internal/tools/redcapsim"
)

// A policy that maps the site's data access groups makes the exporter ask
// for each record's DAG (exportDataAccessGroups); REDCap refuses that to a
// token without the Data Access Groups right, and the run says which right
// is missing. With the right, records land in the mapped destination DAGs.
const dagPolicy = testPolicy + `site_dags:
  east: center_east
  west: center_west
`

func TestSiteDAGsNeedTheTokensDAGRight(t *testing.T) {
	n := newNet(t, netOpts{sites: []string{"alpha"}, records: 10, dags: true, policy: dagPolicy})
	n.start(pipeline...)
	ev := n.sync(false, time.Now())["alpha"]
	if ev.Phase != messages.PhaseFailed || !strings.Contains(ev.Error, "'Data Access Groups' privileges") || !strings.Contains(ev.Error, "site_dags") {
		t.Fatalf("run with a token without the DAG right: %s %q; want failed, naming the right", ev.Phase, ev.Error)
	}
	if len(n.destination()) != 0 {
		t.Fatal("records were imported")
	}
}

func TestSiteDAGsMapRecordsToDestinationDAGs(t *testing.T) {
	n := newNet(t, netOpts{sites: []string{"alpha"}, records: 10, dags: true, policy: dagPolicy,
		destDAGs: []messages.DAG{{Name: "Center East", Unique: "center_east"}, {Name: "Center West", Unique: "center_west"}}})
	if err := n.sim.AddToken(n.sites["alpha"], n.tokens["alpha"], redcapsim.Rights{Export: true, Metadata: true, DAGs: true}, ""); err != nil {
		t.Fatal(err)
	}
	n.start(pipeline...)
	if ev := n.sync(false, time.Now())["alpha"]; ev.Phase != messages.PhaseExported {
		t.Fatalf("run: %+v", ev)
	}
	dest, err := sitekit.New(n.network, nil).Destination()
	if err != nil {
		t.Fatal(err)
	}
	rows, err := dest.ExportRecords(context.Background(), redcap.ExportParams{ExportDataAccessGroups: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		want := map[bool]string{true: "center_east", false: "center_west"}[(atoi(strings.TrimPrefix(r["record_id"], "alpha-"))-1)%2 == 0]
		if r["redcap_data_access_group"] != want {
			t.Fatalf("record %s in DAG %q, want %s", r["record_id"], r["redcap_data_access_group"], want)
		}
	}
	if len(rows) != 10 {
		t.Fatalf("%d records at the destination", len(rows))
	}
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}
