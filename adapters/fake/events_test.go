package fake_test

import (
	"context"
	"slices"
	"testing"

	"github.com/cdmdr/mirror/adapters/fake"
	"github.com/cdmdr/mirror/ports"
)

func TestEvents(t *testing.T) {
	r := fake.NewEvents()
	ctx, cancel := context.WithCancel(t.Context())
	r.Report(ctx, ports.Event{Code: "a", Level: ports.LevelInfo})
	cancel()
	r.Report(ctx, ports.Event{Code: "b", Level: ports.LevelError, Key: "k"})
	if got := r.Codes(); !slices.Equal(got, []string{"a", "b"}) {
		t.Fatalf("Codes = %q", got)
	}
	if ev := r.Events(); len(ev) != 2 || ev[1].Key != "k" {
		t.Fatalf("Events = %+v", ev)
	}
	r.Reset()
	if len(r.Events()) != 0 {
		t.Fatal("Reset kept events")
	}
}
