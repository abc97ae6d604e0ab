package ports

import (
	"context"
	"time"
)

// EventLevel is the severity of an Event.
type EventLevel string

// Event levels.
const (
	LevelInfo  EventLevel = "info"
	LevelWarn  EventLevel = "warn"
	LevelError EventLevel = "error"
)

// Event is something an operator should know about, published beside the
// logs (docs/contract.md §5.5: code, level, key, message, time). Message never carries
// secrets.
type Event struct {
	Code    string     `json:"code"`
	Level   EventLevel `json:"level"`
	Key     string     `json:"key"`
	Message string     `json:"message"`
	Time    time.Time  `json:"time"`
}

// EventReporter publishes events. Reporting is best effort: it never blocks
// the caller for long and never fails the work that caused the event.
type EventReporter interface {
	Report(ctx context.Context, e Event)
}
