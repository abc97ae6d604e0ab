package core_test

import (
	"math"
	"testing"
	"time"

	"github.com/cdmdr/mirror/core"
)

func TestBackoffDelay(t *testing.T) {
	t.Parallel()
	s := time.Second
	cases := map[string]struct {
		b       core.Backoff
		attempt int
		want    time.Duration
	}{
		"default 1":          {core.DefaultBackoff, 1, 1 * s},
		"default 2":          {core.DefaultBackoff, 2, 2 * s},
		"default 3":          {core.DefaultBackoff, 3, 4 * s},
		"default 4":          {core.DefaultBackoff, 4, 8 * s},
		"default 9":          {core.DefaultBackoff, 9, 256 * s},
		"default 10 capped":  {core.DefaultBackoff, 10, 5 * time.Minute},
		"default 11 capped":  {core.DefaultBackoff, 11, 5 * time.Minute},
		"default 64 capped":  {core.DefaultBackoff, 64, 5 * time.Minute},
		"default huge":       {core.DefaultBackoff, math.MaxInt32, 5 * time.Minute},
		"zero is the first":  {core.DefaultBackoff, 0, 1 * s},
		"negative is first":  {core.DefaultBackoff, -3, 1 * s},
		"exact cap":          {core.Backoff{Base: s, Max: 4 * s}, 3, 4 * s},
		"beyond exact cap":   {core.Backoff{Base: s, Max: 4 * s}, 4, 4 * s},
		"cap not power of 2": {core.Backoff{Base: 100 * time.Millisecond, Max: 250 * time.Millisecond}, 2, 200 * time.Millisecond},
		"cap hit":            {core.Backoff{Base: 100 * time.Millisecond, Max: 250 * time.Millisecond}, 3, 250 * time.Millisecond},
		"base above cap":     {core.Backoff{Base: 10 * s, Max: 5 * s}, 1, 5 * s},
		"huge base no wrap":  {core.Backoff{Base: time.Duration(math.MaxInt64/2 + 1), Max: time.Duration(math.MaxInt64)}, 3, time.Duration(math.MaxInt64)},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if got := c.b.Delay(c.attempt); got != c.want {
				t.Errorf("%+v.Delay(%d) = %v, want %v", c.b, c.attempt, got, c.want)
			}
		})
	}
}

func TestBackoffMonotonicAndBounded(t *testing.T) {
	t.Parallel()
	for _, b := range []core.Backoff{core.DefaultBackoff, {Base: 3 * time.Millisecond, Max: time.Hour},
		{Base: time.Nanosecond, Max: time.Duration(math.MaxInt64)}} {
		prev := time.Duration(0)
		for a := 1; a <= 200; a++ {
			d := b.Delay(a)
			if d <= 0 || d > b.Max || d < prev {
				t.Fatalf("%+v.Delay(%d) = %v after %v", b, a, d, prev)
			}
			if d < b.Max && a > 1 && d != 2*prev {
				t.Fatalf("%+v.Delay(%d) = %v, want double of %v", b, a, d, prev)
			}
			prev = d
		}
		if prev != b.Max {
			t.Errorf("%+v never reaches its cap: %v", b, prev)
		}
	}
}
