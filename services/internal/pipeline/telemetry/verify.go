package telemetry

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/redcap-relay/relay/messages"
)

var (
	// VerifyDifferences is each site's last verification's differences by
	// kind (missing, stale, extra); all 0 when the destination was equal.
	VerifyDifferences = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "relay", Name: "verify_differences", Help: "Records that differed between a site and the destination at the site's last verification, by kind (missing, stale, extra).",
	}, []string{"site", "kind"})
	// VerifyLast is when each site's last verification finished, by status
	// (equal, differences, error): one series per site, the others removed.
	VerifyLast = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Namespace: "relay", Name: "verify_last_timestamp_seconds", Help: "When each site's last verification finished, labelled with its status (equal, differences, error).",
	}, []string{"site", "status"})
)

func init() { register(VerifyDifferences, VerifyLast) }

// ObserveVerify records a site's verification result.
func ObserveVerify(r messages.VerifyResult) {
	for _, s := range []string{messages.VerifyEqual, messages.VerifyDifferences, messages.VerifyError} {
		VerifyLast.DeleteLabelValues(r.Site, s)
	}
	VerifyLast.WithLabelValues(r.Site, r.Status).Set(float64(r.FinishedAt.Unix()))
	if r.Status == messages.VerifyError {
		return // the counts of a verification that could not finish mean nothing
	}
	VerifyDifferences.WithLabelValues(r.Site, "missing").Set(float64(r.Counts.Missing))
	VerifyDifferences.WithLabelValues(r.Site, "stale").Set(float64(r.Counts.Stale))
	VerifyDifferences.WithLabelValues(r.Site, "extra").Set(float64(r.Counts.Extra))
}
