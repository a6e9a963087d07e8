package telemetry

import (
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// scrape returns the value of an unlabelled metric as /metrics shows it.
func scrape(t *testing.T, name string) (float64, bool) {
	t.Helper()
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(Registry, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, line := range strings.Split(rec.Body.String(), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f, true
		}
	}
	return 0, false
}

func destinationUp(t *testing.T) (float64, bool) { return scrape(t, "relay_destination_up") }

// relay_destination_up is absent where no importer runs, stays absent
// when the importer starts (it has not reached the destination yet), is 1
// once the destination confirmed records, 0 during an outage (even if a
// worker still confirms a batch sent before it), and 1 again after.
func TestDestinationUpOnlyAfterTheDestinationAnswered(t *testing.T) {
	step := func(what string, wantV float64, wantPresent bool) {
		t.Helper()
		v, ok := destinationUp(t)
		if ok != wantPresent || (ok && v != wantV) {
			t.Errorf("%s: relay_destination_up = %v (exported %v), want %v (exported %v)", what, v, ok, wantV, wantPresent)
		}
	}
	step("no importer", 0, false)
	Records.WithLabelValues("export", "wake", "exported").Add(5)
	step("an exporter exported", 0, false)
	DestinationUp.Set(1)
	step("importer started", 0, false)
	Records.WithLabelValues("import", "wake", "skipped_stale").Inc()
	step("a stale record skipped without a call", 0, false)
	Records.WithLabelValues("import", "wake", "imported").Add(3)
	step("records imported", 1, true)
	DestinationUp.Set(0)
	step("destination down", 0, true)
	Records.WithLabelValues("import", "wake", "imported").Add(1)
	step("a batch confirmed while another worker waits", 0, true)
	DestinationUp.Set(1)
	step("destination answers again", 1, true)
}
