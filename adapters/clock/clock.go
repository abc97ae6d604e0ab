// Package clock is the real ports.Clock: the system's time.
package clock

import (
	"time"

	"github.com/cdmdr/mirror/ports"
)

// System reads the system clock.
type System struct{}

var _ ports.Clock = System{}

// New returns the system clock.
func New() System { return System{} }

// Now returns the current time.
func (System) Now() time.Time { return time.Now() }

// NewTimer returns a timer firing once after d.
func (System) NewTimer(d time.Duration) ports.Timer { return timer{time.NewTimer(d)} }

type timer struct{ t *time.Timer }

func (t timer) C() <-chan time.Time { return t.t.C }
func (t timer) Stop() bool          { return t.t.Stop() }
