package fake_test

import (
	"testing"
	"time"

	"github.com/cdmdr/mirror/adapters/fake"
)

var t0 = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)

func fired(tm interface{ C() <-chan time.Time }) (time.Time, bool) {
	select {
	case at := <-tm.C():
		return at, true
	default:
		return time.Time{}, false
	}
}

func TestClockAdvanceFiresDueTimers(t *testing.T) {
	c := fake.NewClock(t0)
	a := c.NewTimer(time.Second)
	b := c.NewTimer(3 * time.Second)
	if c.Waiters() != 2 {
		t.Fatalf("Waiters = %d, want 2", c.Waiters())
	}
	c.Advance(999 * time.Millisecond)
	if _, ok := fired(a); ok {
		t.Fatal("timer fired early")
	}
	c.Advance(time.Millisecond)
	if at, ok := fired(a); !ok || !at.Equal(t0.Add(time.Second)) {
		t.Fatalf("timer a = %v, %v; want fired at t0+1s", at, ok)
	}
	if c.Waiters() != 1 {
		t.Fatalf("Waiters = %d, want 1", c.Waiters())
	}
	c.Set(t0.Add(time.Hour))
	if _, ok := fired(b); !ok {
		t.Fatal("Set past the deadline did not fire b")
	}
	if !c.Now().Equal(t0.Add(time.Hour)) {
		t.Fatalf("Now = %v", c.Now())
	}
}

func TestClockStop(t *testing.T) {
	c := fake.NewClock(t0)
	tm := c.NewTimer(time.Second)
	if !tm.Stop() {
		t.Fatal("Stop of a pending timer = false")
	}
	if tm.Stop() {
		t.Fatal("second Stop = true")
	}
	c.Advance(time.Hour)
	if _, ok := fired(tm); ok {
		t.Fatal("a stopped timer fired")
	}
	fired2 := c.NewTimer(time.Second)
	c.Advance(time.Second)
	if fired2.Stop() {
		t.Fatal("Stop of a fired timer = true")
	}
	if now := c.NewTimer(0); now.Stop() {
		t.Fatal("a zero timer is pending")
	}
}

func TestClockBlockUntil(t *testing.T) {
	c := fake.NewClock(t0)
	woke := make(chan time.Time)
	go func() {
		tm := c.NewTimer(time.Minute)
		woke <- <-tm.C()
	}()
	c.BlockUntil(1)
	c.Advance(time.Minute)
	if at := <-woke; !at.Equal(t0.Add(time.Minute)) {
		t.Fatalf("woke at %v", at)
	}
}
