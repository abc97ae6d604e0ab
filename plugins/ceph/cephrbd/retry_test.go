package cephrbd

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestBackoffDoublesUpToMax(t *testing.T) {
	b := newBackoff(10*time.Millisecond, 25*time.Millisecond)
	var got []time.Duration
	for range 4 {
		got = append(got, b.next)
		if err := b.wait(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	want := []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 25 * time.Millisecond, 25 * time.Millisecond}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("waits %v, want %v", got, want)
		}
	}
}

// A wait ends with its context, not after its interval.
func TestSleepEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	begin := time.Now()
	if err := sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("sleep on an ended context = %v, want context.Canceled", err)
	}
	if err := newBackoff(time.Hour, time.Hour).wait(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("backoff wait on an ended context = %v, want context.Canceled", err)
	}
	if d := time.Since(begin); d > time.Minute {
		t.Fatalf("the waits took %v", d)
	}
}

func TestRetryContextKeepsAReplyMargin(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	outer, _ := ctx.Deadline()
	loop, cancelLoop := retryContext(ctx, time.Hour)
	defer cancelLoop()
	inner, ok := loop.Deadline()
	if margin := outer.Sub(inner); !ok || margin < 1900*time.Millisecond || margin > 2*time.Second {
		t.Fatalf("loop deadline %v before the caller's (ok %v), want 2 s (a tenth)", margin, ok)
	}

	ctx, cancel = context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	outer, _ = ctx.Deadline()
	loop, cancelLoop = retryContext(ctx, time.Hour)
	defer cancelLoop()
	if inner, _ := loop.Deadline(); outer.Sub(inner) != maxReplyMargin {
		t.Fatalf("loop deadline %v before a 10 min caller's, want %v", outer.Sub(inner), maxReplyMargin)
	}

	loop, cancelLoop = retryContext(t.Context(), 7*time.Second)
	defer cancelLoop()
	if inner, ok := loop.Deadline(); !ok || time.Until(inner) > 7*time.Second || time.Until(inner) < 6*time.Second {
		t.Fatalf("without a caller's deadline the loop ends in %v (ok %v), want the fallback 7 s", time.Until(inner), ok)
	}
}

// DestroyVolume's sides share the caller's deadline: none may outlast
// it, the copy's side waits for the source's and still has time after.
func TestSplitDestroyBudget(t *testing.T) {
	for _, c := range []struct {
		name        string
		left        time.Duration
		hasDeadline bool
		want        destroyBudget
	}{
		{"the daemon's 2 min", 2 * time.Minute, true, destroyBudget{source: 57500 * time.Millisecond, target: 115 * time.Second, grace: 10 * time.Second}},
		{"20 s", 20 * time.Second, true, destroyBudget{source: 9 * time.Second, target: 18 * time.Second, grace: 4500 * time.Millisecond}},
		{"no deadline", 0, false, destroyBudget{source: 30 * time.Second, target: 60 * time.Second, grace: 10 * time.Second}},
		{"deadline passed", -time.Second, true, destroyBudget{}},
	} {
		got := splitDestroyBudget(c.left, c.hasDeadline)
		if got != c.want {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
		}
		if c.hasDeadline && c.left > 0 && (got.target >= c.left || got.source >= got.target || got.grace > got.target-got.source) {
			t.Errorf("%s: %+v does not fit in %v", c.name, got, c.left)
		}
	}
}
