package clock

import (
	"testing"
	"time"
)

func TestTimerFiresAndStops(t *testing.T) {
	c := New()
	start := c.Now()
	tm := c.NewTimer(10 * time.Millisecond)
	select {
	case at := <-tm.C():
		if at.Sub(start) < 10*time.Millisecond {
			t.Fatalf("fired after %s, want at least 10ms", at.Sub(start))
		}
	case <-time.After(5 * time.Second):
		t.Fatal("timer never fired")
	}
	stopped := c.NewTimer(time.Hour)
	if !stopped.Stop() {
		t.Fatal("Stop on a pending timer reported it had already fired")
	}
}
