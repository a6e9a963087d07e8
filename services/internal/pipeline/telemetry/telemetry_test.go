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

// relay_destination_up is absent where no importer runs and while the
// importer has not heard from the destination, 1 once a call succeeded, 0
// while the importer waits for it, and 1 again when it answers.
func TestDestinationUpOnlyAfterTheDestinationAnswered(t *testing.T) {
	step := func(what string, wantV float64, wantPresent bool) {
		t.Helper()
		v, ok := destinationUp(t)
		if ok != wantPresent || (ok && v != wantV) {
			t.Errorf("%s: relay_destination_up = %v (exported %v), want %v (exported %v)", what, v, ok, wantV, wantPresent)
		}
	}
	step("no importer, or one that has not reached the destination", 0, false)
	Records.WithLabelValues("export", "wake", "exported").Add(5)
	step("an exporter exported", 0, false)
	DestinationUp.Set(1)
	step("a call to the destination succeeded", 1, true)
	DestinationUp.Set(0)
	step("destination down", 0, true)
	DestinationUp.Set(1)
	step("destination answers again", 1, true)
}
