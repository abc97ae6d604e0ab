package app

import (
	"context"
	"encoding/json"
	"log/slog"

	"github.com/cdmdr/mirror/ports"
)

// DefaultEventSubject is where mirrord publishes its events (docs/contract.md §5.5).
const DefaultEventSubject = "cdm.dr.mirror.event"

// EventSubject names the subject events are published on.
type EventSubject string

// BusEvents publishes events as JSON on the bus, the original's
// ReportEvent. A failed publish is logged, never returned: reporting must
// not fail the work that caused the event.
type BusEvents struct {
	bus     ports.Bus
	subject string
	log     *slog.Logger
}

var _ ports.EventReporter = (*BusEvents)(nil)

// NewBusEvents returns a reporter publishing on subject (default
// cdm.dr.mirror.event).
func NewBusEvents(bus ports.Bus, subject EventSubject, log *slog.Logger) *BusEvents {
	if subject == "" {
		subject = DefaultEventSubject
	}
	return &BusEvents{bus: bus, subject: string(subject), log: log.With("component", "events")}
}

// Report publishes e.
func (b *BusEvents) Report(ctx context.Context, e ports.Event) {
	data, err := json.Marshal(e)
	if err == nil {
		err = b.bus.Publish(ctx, b.subject, data)
	}
	if err != nil {
		b.log.Warn("event not published", "code", e.Code, "key", e.Key, "err", err)
	}
}
