package harness_test

import (
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/goleak"

	"github.com/cdmdr/mirror/app/harness"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// WaitIdle returns only after what goroutines do on their own (at once,
// or on the bubble's time within IdleWindow) is done, and before what
// waits for the fake clock.
func TestWaitIdle(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := harness.New(t)
		var soon, late, onClock atomic.Bool
		go func() {
			time.Sleep(harness.IdleWindow / 2)
			soon.Store(true)
		}()
		go func() {
			time.Sleep(2 * harness.IdleWindow)
			late.Store(true)
		}()
		tick := h.Shared.Clock.NewTimer(time.Minute)
		go func() {
			<-tick.C()
			onClock.Store(true)
		}()

		h.WaitIdle()
		if !soon.Load() {
			t.Fatal("WaitIdle returned before work due within IdleWindow")
		}
		if late.Load() || onClock.Load() {
			t.Fatalf("WaitIdle ran past its window (late %v) or moved the fake clock (%v)", late.Load(), onClock.Load())
		}
		h.Tick(time.Minute)
		h.WaitIdle()
		if !onClock.Load() || !late.Load() {
			t.Fatalf("after a tick and a second window: on clock %v, late %v", onClock.Load(), late.Load())
		}
	})
}

// fatalTB records Fatal instead of ending the test.
type fatalTB struct {
	testing.TB
	failed string
}

type fatalCalled struct{}

func (f *fatalTB) Fatal(args ...any) {
	f.failed = "fatal"
	panic(fatalCalled{})
}

func (f *fatalTB) Helper() {}

func TestNewNeedsABubble(t *testing.T) {
	tb := &fatalTB{TB: t}
	func() {
		defer func() {
			if r := recover(); r != nil && r != (fatalCalled{}) {
				panic(r)
			}
		}()
		harness.New(tb)
	}()
	if tb.failed == "" {
		t.Fatal("harness.New outside a bubble did not fail the test")
	}
}
