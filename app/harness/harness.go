// Package harness assembles mirrord's engine on fake ports with wire, so a
// test drives whole daemons deterministically: one in-memory store, bus,
// storage backend and clock shared by any number of daemons.
//
// # Bubbles and idleness
//
// Every test using the harness runs inside testing/synctest's Test: New
// fails the test otherwise. The daemons and all the fakes then live in
// the test's bubble, which gives the harness a sound notion of "nothing
// is left to do":
//
// [Harness.WaitIdle] lets the bubble's own time run on by [IdleWindow],
// then returns once every goroutine of the bubble but the test's own is
// durably blocked (on a channel or select made in the bubble, a
// sync.Cond, a WaitGroup, a sleep). The runtime, not the
// harness, counts the goroutines, so there is nothing to keep in step
// with the engine as it changes: a worker reconciling, a watch event on
// its way from the store to the cache, a message in the bus's queue, a
// call into the fake backend, a goroutine waiting for a mutex — each is
// a goroutine that is running, runnable or not durably blocked, and
// WaitIdle waits for it. A negative check made after WaitIdle ("no
// second StartVolume", "no status written") therefore holds for as long
// as the test neither acts nor moves the fake clock, however slow the
// machine: before, a real 50 ms sleep passed whenever the engine was
// merely late.
//
// What could make WaitIdle report idle wrongly:
//   - a goroutine outside the bubble that would wake the daemons: the
//     fakes are built by New inside the bubble, so nothing of theirs is
//     outside; a bubble goroutine blocked on something from outside
//     (I/O, a mutex, a channel made outside) is not durably blocked, and
//     WaitIdle waits for it rather than returning early;
//   - work scheduled on the bubble's time (time.Sleep, time.After,
//     context deadlines) further ahead than IdleWindow: the engine takes
//     its time from the fake ports.Clock, which moves only when the test
//     ticks it, and its real-time deadlines bound backend calls that the
//     fake backend answers at once, unless a test holds them with Block.
//
// Time in the bubble moves only while every goroutine is durably
// blocked, so the 10 s bound of WaitFor and WaitTicking counts how long
// the daemons sat quiet, never how fast the machine is. The other side of
// that: a daemon that never blocks (a busy loop) stops the bubble's time,
// and the test then fails only at go test's -timeout, whose goroutine
// dump shows the loop.
package harness

//go:generate go tool wire

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cdmdr/mirror/adapters/fake"
	"github.com/cdmdr/mirror/app"
	"github.com/cdmdr/mirror/core"
	"github.com/cdmdr/mirror/ports"
	"github.com/cdmdr/mirror/test/secretscan"
)

// CephType is the storage type of the seed's examples, served by the
// harness's fake backend.
const CephType = "openstack.storage.type.ceph"

// Identity is a daemon's id in a test.
type Identity string

// Shared are the fakes every daemon of a test shares.
type Shared struct {
	KV       *fake.KV
	Bus      *fake.Bus
	Backend  *fake.Backend
	Backends *fake.Backends
	Clock    *fake.Clock
	Events   *fake.Events
}

// Daemon is one mirrord on the shared fakes.
type Daemon struct {
	ID       Identity
	Election *fake.Election
	Engine   *app.Engine

	cancel context.CancelFunc
	done   chan struct{}
	err    error // Run's result, once done is closed
}

func provideElection(kv *fake.KV, id Identity) *fake.Election {
	return fake.NewElection(kv, string(id))
}

// Harness runs daemons on shared fakes for one test.
type Harness struct {
	T      testing.TB
	Shared *Shared
	Config app.Config

	mu      sync.Mutex
	daemons []*Daemon
	// secrets scans the daemons' logs, the KV, events and the bus for
	// the test secrets (secrets.go).
	secrets *secretscan.Scanner
}

// Epoch is the fake clock's start.
var Epoch = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// New returns a harness whose daemons stop at the end of the test. t
// must be the *testing.T of a synctest.Test bubble (see the package
// comment).
func New(t testing.TB) *Harness {
	t.Helper()
	if !inBubble() {
		t.Fatal("harness.New outside a synctest bubble: run the test body in synctest.Test")
	}
	clock := fake.NewClock(Epoch)
	b := fake.NewBackend(CephType)
	b.SetNow(clock.Now) // sync times on the test's clock, not the bubble's
	h := &Harness{T: t, Shared: &Shared{
		KV: fake.NewKV(), Bus: fake.NewBus(), Backend: b,
		Backends: fake.NewBackends(map[string]ports.StorageBackend{CephType: b}),
		Clock:    clock, Events: fake.NewEvents(),
	}, Config: app.Config{ResyncInterval: time.Minute, PollInterval: 30 * time.Second, FastPollInterval: 2 * time.Second}}
	h.secrets = secretscan.New()
	t.Cleanup(h.scanSecrets) // after StopAll: the daemons have written all
	t.Cleanup(h.StopAll)
	return h
}

// Start runs a daemon with the harness's config until Stop or the end of
// the test.
func (h *Harness) Start(id string) *Daemon {
	out := h.secrets.Writer("the log of daemon "+id, testWriter{h.T})
	log := slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	d := newDaemon(Identity(id), h.Shared, h.Config, log)
	ctx, cancel := context.WithCancel(context.Background())
	d.cancel, d.done = cancel, make(chan struct{})
	go func() {
		d.err = d.Engine.Run(ctx)
		close(d.done)
	}()
	h.mu.Lock()
	h.daemons = append(h.daemons, d)
	h.mu.Unlock()
	return d
}

// Stop stops the daemon gracefully and waits for it.
func (d *Daemon) Stop() error {
	d.cancel()
	<-d.done
	return d.err
}

// Crash kills the daemon's session (its leaderships are lost at once and
// it campaigns no more, as when a daemon dies), then stops its goroutines.
func (d *Daemon) Crash() {
	d.Election.Kill()
	d.cancel()
	<-d.done
}

// StopAll stops every daemon still running.
func (h *Harness) StopAll() {
	h.mu.Lock()
	ds := h.daemons
	h.daemons = nil
	h.mu.Unlock()
	for _, d := range ds {
		_ = d.Stop() // idempotent: a stopped daemon returns at once
	}
}

// Put writes a JSON value as the DR manager or cluster manager would.
func (h *Harness) Put(key string, v any) {
	h.T.Helper()
	var data []byte
	switch x := v.(type) {
	case string:
		data = []byte(x)
	case []byte:
		data = x
	default:
		var err error
		if data, err = json.Marshal(v); err != nil {
			h.T.Fatalf("marshal %s: %v", key, err)
		}
	}
	if _, err := h.Shared.KV.Put(context.Background(), key, data); err != nil {
		h.T.Fatalf("put %s: %v", key, err)
	}
}

// Get returns a key's value, or "" if missing.
func (h *Harness) Get(key string) string {
	kv, err := h.Shared.KV.Get(context.Background(), key)
	if err != nil {
		return ""
	}
	return string(kv.Value)
}

// Status decodes a status key; ok is false when it is missing.
func (h *Harness) Status(key string) (core.Status, bool) {
	v := h.Get(key)
	if v == "" {
		return core.Status{}, false
	}
	st, err := core.DecodeStatus([]byte(v))
	if err != nil {
		h.T.Fatalf("status %s: %v (%s)", key, err, v)
	}
	return st, true
}

// WaitFor polls cond until it holds, or fails the test after 10 s of the
// bubble's time saying what it waited for. The bubble's time moves only
// while every daemon is blocked, so cond is looked at each time they went
// quiet, however loaded the machine.
func (h *Harness) WaitFor(what string, cond func() bool) {
	h.T.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			h.T.Fatalf("timed out waiting for %s; store:\n%s", what, h.dump())
		}
		time.Sleep(time.Millisecond)
	}
}

// WaitTicking is WaitFor while advancing the fake clock by step between
// looks, for conditions that need a timer (a poll, a backoff) to fire:
// advancing once could come before the worker armed its timer.
func (h *Harness) WaitTicking(what string, step time.Duration, cond func() bool) {
	h.T.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			h.T.Fatalf("timed out waiting for %s; store:\n%s", what, h.dump())
		}
		h.Shared.Clock.Advance(step)
		time.Sleep(time.Millisecond)
	}
}

// TickState waits, ticking the clock by step, until the status at key
// has state s.
func (h *Harness) TickState(key string, s core.State, step time.Duration) core.Status {
	h.T.Helper()
	var st core.Status
	h.WaitTicking(key+" = "+string(s), step, func() bool {
		var ok bool
		st, ok = h.Status(key)
		return ok && st.StateCode == s
	})
	return st
}

// WaitState waits until the status at key has state s.
func (h *Harness) WaitState(key string, s core.State) core.Status {
	h.T.Helper()
	var st core.Status
	h.WaitFor(key+" = "+string(s), func() bool {
		var ok bool
		st, ok = h.Status(key)
		return ok && st.StateCode == s
	})
	return st
}

// WaitGone waits until key no longer exists.
func (h *Harness) WaitGone(key string) {
	h.T.Helper()
	h.WaitFor(key+" deleted", func() bool { return h.Get(key) == "" })
}

// Tick advances the fake clock by d, firing due timers (requeues, resyncs).
func (h *Harness) Tick(d time.Duration) { h.Shared.Clock.Advance(d) }

// IdleWindow is how long WaitIdle lets the bubble's time run while the
// daemons are blocked: anything they would do on their own within it
// (on real-time APIs, which the bubble fakes), they do before WaitIdle
// returns. Far below every real-time bound of the engine and the fakes
// that a test does not mean to reach (action, destroy and resign
// timeouts), far above a stray sleep or retry on real time.
const IdleWindow = time.Second

// WaitIdle returns once the daemons have nothing left to do until the
// test acts or moves the fake clock: IdleWindow of the bubble's time has
// passed and every goroutine of the bubble but the caller's is durably
// blocked (see the package comment for why that is sound). Make negative
// checks after it.
func (h *Harness) WaitIdle() {
	time.Sleep(IdleWindow) // returns once all else is blocked at its end
	synctest.Wait()        // and whatever its end woke is done too
}

// inBubble reports whether the caller runs in a synctest bubble:
// synctest.Wait panics outside one (and inside one only waits for the
// bubble's other goroutines to block, harmless at New).
func inBubble() (ok bool) {
	defer func() { ok = recover() == nil }()
	synctest.Wait()
	return true
}

func (h *Harness) dump() string {
	s := ""
	for k, v := range h.Shared.KV.Dump() {
		s += "  " + k + " = " + v + "\n"
	}
	return s
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p[:len(p)-1]))
	return len(p), nil
}
