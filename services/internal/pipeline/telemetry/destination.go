package telemetry

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/redcap-relay/relay/messages"
)

// destinationGauge is relay_destination_up. A plain gauge would be exported
// as 0 by every service that never touches the destination (an alert on it
// would always fire), and the importer sets it to 1 when it starts, before
// it has reached the destination. So the gauge says nothing until the
// destination has answered: until records were imported or deleted there
// (the import stage's records_total outcomes, counted only after REDCap
// confirmed them), or until the importer saw it come back after an outage.
type destinationGauge struct {
	desc *prometheus.Desc

	mu    sync.Mutex
	state upState
}

type upState int

const (
	upUnknown  upState = iota // no importer here, or it has not reached the destination
	upClaimed                 // the importer started and set 1: not yet confirmed
	upAnswered                // the destination answered; 1
	upDown                    // the importer waits for the destination; 0
)

// Set is the importer's view: 0 while it waits for the destination, 1 when
// it runs or the destination answers again.
func (g *destinationGauge) Set(v float64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	switch {
	case v == 0:
		g.state = upDown
	case g.state == upDown:
		g.state = upAnswered // set after a call that succeeded
	case g.state == upUnknown:
		g.state = upClaimed
	}
}

// answered records that the destination confirmed records.
func (g *destinationGauge) answered() {
	g.mu.Lock()
	if g.state != upDown {
		g.state = upAnswered
	}
	g.mu.Unlock()
}

func (g *destinationGauge) Describe(ch chan<- *prometheus.Desc) { ch <- g.desc }

func (g *destinationGauge) Collect(ch chan<- prometheus.Metric) {
	g.mu.Lock()
	st := g.state
	g.mu.Unlock()
	switch st {
	case upAnswered:
		ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, 1)
	case upDown:
		ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, 0)
	}
}

// recordCounter is relay_records_total; it tells DestinationUp when the
// destination confirmed records.
type recordCounter struct{ *prometheus.CounterVec }

// WithLabelValues returns the counter of a stage, site and outcome.
func (c recordCounter) WithLabelValues(lvs ...string) prometheus.Counter {
	ctr := c.CounterVec.WithLabelValues(lvs...)
	if len(lvs) == 3 && lvs[0] == messages.StageImport && (lvs[2] == "imported" || lvs[2] == "deleted") {
		return confirmed{ctr}
	}
	return ctr
}

type confirmed struct{ prometheus.Counter }

func (c confirmed) Inc()          { c.Counter.Inc(); DestinationUp.answered() }
func (c confirmed) Add(v float64) { c.Counter.Add(v); DestinationUp.answered() }
