package fake

import (
	"slices"
	"sync"
	"time"

	"github.com/cdmdr/mirror/ports"
)

var (
	_ ports.Clock = (*Clock)(nil)
	_ ports.Timer = (*timer)(nil)
)

// Clock is a ports.Clock that moves only when told to. Timers fire, in
// deadline order, when Advance or Set reaches their deadline.
type Clock struct {
	mu      sync.Mutex
	changed *sync.Cond // broadcast whenever the set of pending timers changes
	now     time.Time
	pending []*timer
}

// NewClock returns a clock stopped at start.
func NewClock(start time.Time) *Clock {
	c := &Clock{now: start}
	c.changed = sync.NewCond(&c.mu)
	return c
}

// Now implements ports.Clock.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// NewTimer implements ports.Clock. A timer of d <= 0 fires at once.
func (c *Clock) NewTimer(d time.Duration) ports.Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &timer{clock: c, at: c.now.Add(d), c: make(chan time.Time, 1)}
	if d <= 0 {
		t.c <- c.now
		return t
	}
	c.pending = append(c.pending, t)
	c.changed.Broadcast()
	return t
}

// Advance moves the clock forward by d and fires the timers due.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.setLocked(c.now.Add(d))
}

// Set moves the clock to t (backwards too) and fires the timers due.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.setLocked(t)
}

// Waiters returns how many timers are pending.
func (c *Clock) Waiters() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending)
}

// BlockUntil waits until at least n timers are pending, so a test knows the
// code under test is waiting on the clock before it advances it.
func (c *Clock) BlockUntil(n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.pending) < n {
		c.changed.Wait()
	}
}

func (c *Clock) setLocked(now time.Time) {
	c.now = now
	slices.SortStableFunc(c.pending, func(a, b *timer) int { return a.at.Compare(b.at) })
	n := 0
	for _, t := range c.pending {
		if t.at.After(now) {
			break
		}
		// The channel has room: a timer fires once and is sent to only here.
		t.c <- now
		n++
	}
	if n > 0 {
		c.pending = slices.Delete(c.pending, 0, n)
		c.changed.Broadcast()
	}
}

type timer struct {
	clock *Clock
	at    time.Time
	c     chan time.Time
}

// C implements ports.Timer.
func (t *timer) C() <-chan time.Time { return t.c }

// Stop implements ports.Timer.
func (t *timer) Stop() bool {
	c := t.clock
	c.mu.Lock()
	defer c.mu.Unlock()
	i := slices.Index(c.pending, t)
	if i < 0 {
		return false
	}
	c.pending = slices.Delete(c.pending, i, i+1)
	c.changed.Broadcast()
	return true
}
