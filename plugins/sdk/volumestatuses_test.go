package sdk_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// statusFunc is a backend whose VolumeStatus is f; nothing else is called.
type statusFunc struct {
	sdk.Backend
	f func(ctx context.Context, vol sdk.Volume) (sdk.VolumeReplication, error)
}

func (s statusFunc) VolumeStatus(ctx context.Context, vol sdk.Volume) (sdk.VolumeReplication, error) {
	return s.f(ctx, vol)
}

func volumes(n int) []sdk.Volume {
	env := sdk.Environment{ID: "storage.1.2"}
	vols := make([]sdk.Volume, n)
	for i := range vols {
		vols[i] = sdk.Volume{Environment: env, ClusterID: 1, VolumeID: uint64(i), VolumeUUID: fmt.Sprintf("volume-%d", i)}
	}
	return vols
}

// TestVolumeStatusesOneByOne: one VolumeStatus per volume, answers in the
// order asked however the calls finish, at most sdk.OneByOneCalls at a
// time.
func TestVolumeStatusesOneByOne(t *testing.T) {
	vols := volumes(50)
	var mu sync.Mutex
	running, most := 0, 0
	entered := make(chan chan struct{}, len(vols)) // each call's release
	b := statusFunc{f: func(ctx context.Context, vol sdk.Volume) (sdk.VolumeReplication, error) {
		mu.Lock()
		running++
		most = max(most, running)
		mu.Unlock()
		defer func() { mu.Lock(); running--; mu.Unlock() }()
		release := make(chan struct{})
		entered <- release
		select {
		case <-release:
		case <-ctx.Done():
			return sdk.VolumeReplication{}, ctx.Err()
		}
		return sdk.VolumeReplication{State: sdk.ReplicationReplaying, Lag: vol.VolumeUUID}, nil
	}}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	type result struct {
		reps []sdk.VolumeReplication
		err  error
	}
	done := make(chan result, 1)
	go func() {
		reps, err := sdk.VolumeStatusesOneByOne(ctx, b, vols[0].Environment, vols)
		done <- result{reps, err}
	}()
	// Hold the calls, releasing the latest whenever OneByOneCalls are
	// held: finished out of order, and never more at once unless the
	// helper starts more.
	var held []chan struct{}
	for range vols {
		select {
		case release := <-entered:
			held = append(held, release)
		case <-ctx.Done():
			t.Fatalf("only %d VolumeStatus calls were made, want %d", len(held), len(vols))
		}
		if len(held) == sdk.OneByOneCalls {
			close(held[len(held)-1])
			held = held[:len(held)-1]
		}
	}
	for _, release := range held {
		close(release)
	}
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if len(r.reps) != len(vols) {
		t.Fatalf("%d answers for %d volumes", len(r.reps), len(vols))
	}
	for i, rep := range r.reps {
		if rep.Lag != vols[i].VolumeUUID {
			t.Fatalf("answer %d is of %s, want %s: the order asked is lost", i, rep.Lag, vols[i].VolumeUUID)
		}
	}
	if most != sdk.OneByOneCalls {
		t.Fatalf("%d VolumeStatus calls ran at once, want at most (and here exactly) %d", most, sdk.OneByOneCalls)
	}

	reps, err := sdk.VolumeStatusesOneByOne(t.Context(), b, vols[0].Environment, nil)
	if err != nil || reps == nil || len(reps) != 0 {
		t.Fatalf("VolumeStatusesOneByOne of no volumes = %#v, %v; want no answers, no error", reps, err)
	}
}

// TestVolumeStatusesOneByOneFails: the first error ends the other calls
// and comes back naming its volume, errors.Is intact.
func TestVolumeStatusesOneByOneFails(t *testing.T) {
	vols := volumes(20)
	b := statusFunc{f: func(ctx context.Context, vol sdk.Volume) (sdk.VolumeReplication, error) {
		if vol.VolumeUUID == "volume-3" {
			return sdk.VolumeReplication{}, fmt.Errorf("pool gone: %w", sdk.ErrPrecondition)
		}
		<-ctx.Done() // the others answer only once ended
		return sdk.VolumeReplication{}, ctx.Err()
	}}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	reps, err := sdk.VolumeStatusesOneByOne(ctx, b, vols[0].Environment, vols)
	if !errors.Is(err, sdk.ErrPrecondition) || !strings.Contains(err.Error(), "volume-3") || reps != nil {
		t.Fatalf("VolumeStatusesOneByOne with volume-3 failing = %v, %v; want no answers and volume-3's error", reps, err)
	}
	if ctx.Err() != nil {
		t.Fatal("the other calls were not ended by the first error")
	}
}

// TestVolumeStatusesOneByOneCancelled: when ctx ends, it returns at once
// with ctx's error; with ctx already ended, it calls nothing.
func TestVolumeStatusesOneByOneCancelled(t *testing.T) {
	vols := volumes(20)
	ctx, cancel := context.WithCancel(t.Context())
	called := make(chan struct{}, len(vols))
	b := statusFunc{f: func(ctx context.Context, vol sdk.Volume) (sdk.VolumeReplication, error) {
		called <- struct{}{}
		<-ctx.Done()
		return sdk.VolumeReplication{}, fmt.Errorf("status of %s: %w", vol.VolumeUUID, ctx.Err())
	}}
	go func() { <-called; cancel() }()
	if _, err := sdk.VolumeStatusesOneByOne(ctx, b, vols[0].Environment, vols); !errors.Is(err, context.Canceled) {
		t.Fatalf("VolumeStatusesOneByOne with ctx cancelled during the calls = %v, want context.Canceled", err)
	}
	for len(called) > 0 {
		<-called
	}
	if _, err := sdk.VolumeStatusesOneByOne(ctx, b, vols[0].Environment, vols); !errors.Is(err, context.Canceled) {
		t.Fatalf("VolumeStatusesOneByOne with ctx cancelled = %v, want context.Canceled", err)
	}
	if len(called) != 0 {
		t.Fatalf("VolumeStatusesOneByOne with ctx cancelled made %d VolumeStatus calls, want none", len(called))
	}
}
