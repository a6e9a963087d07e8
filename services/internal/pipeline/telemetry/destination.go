package telemetry

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// destinationGauge is relay_destination_up. A plain gauge would be exported
// as 0 by every service that never touches the destination (an alert on it
// would always fire), and an importer that has just started does not know
// yet. So the gauge says nothing until the importer has heard from the
// destination: 1 after a call that succeeded, 0 while it waits for it.
type destinationGauge struct {
	desc *prometheus.Desc

	mu    sync.Mutex
	known bool
	up    bool
}

// Set is the importer's word: 1 the destination answered, 0 it waits for it.
func (g *destinationGauge) Set(v float64) {
	g.mu.Lock()
	g.known, g.up = true, v != 0
	g.mu.Unlock()
}

func (g *destinationGauge) Describe(ch chan<- *prometheus.Desc) { ch <- g.desc }

func (g *destinationGauge) Collect(ch chan<- prometheus.Metric) {
	g.mu.Lock()
	known, up := g.known, g.up
	g.mu.Unlock()
	if !known {
		return
	}
	v := 0.0
	if up {
		v = 1
	}
	ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, v)
}
