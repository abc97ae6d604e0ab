package fake

import (
	"context"
	"sync"

	"github.com/cdmdr/mirror/ports"
)

var _ ports.EventReporter = (*Events)(nil)

// Events is a ports.EventReporter that records what was reported.
type Events struct {
	mu     sync.Mutex
	events []ports.Event
}

// NewEvents returns an empty recorder.
func NewEvents() *Events { return &Events{} }

// Report implements ports.EventReporter. It records even when ctx has
// ended: reporting is best effort and never depends on the caller's work.
func (r *Events) Report(_ context.Context, e ports.Event) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, e)
}

// Events returns the reported events, oldest first.
func (r *Events) Events() []ports.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]ports.Event(nil), r.events...)
}

// Codes returns the codes of the reported events, oldest first.
func (r *Events) Codes() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, len(r.events))
	for i, e := range r.events {
		out[i] = e.Code
	}
	return out
}

// Reset forgets the recorded events.
func (r *Events) Reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = nil
}
