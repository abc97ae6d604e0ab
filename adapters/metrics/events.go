package metrics

import (
	"context"

	"github.com/cdmdr/mirror/ports"
)

// Events counts every event reported through r, by code and level, and
// passes it on. Codes are the fixed list of docs/contract.md §7, so the
// label stays small.
func (m *Metrics) Events(r ports.EventReporter) ports.EventReporter {
	return countedEvents{m: m, next: r}
}

type countedEvents struct {
	m    *Metrics
	next ports.EventReporter
}

func (c countedEvents) Report(ctx context.Context, e ports.Event) {
	c.m.events.WithLabelValues(e.Code, string(e.Level)).Inc()
	c.next.Report(ctx, e)
}
