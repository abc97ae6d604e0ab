package etcd_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cdmdr/mirror/adapters/etcd"
	"github.com/cdmdr/mirror/adapters/etcd/etcdtest"
	"github.com/cdmdr/mirror/ports"
	"github.com/cdmdr/mirror/ports/porttest"
)

// compactingKV lets the conformance suite compact the server's history.
type compactingKV struct {
	*etcd.KV
	t *testing.T
	s *etcdtest.Server
}

func (k compactingKV) Compact(rev int64) { k.s.Compact(k.t, rev) }

func TestKVConformance(t *testing.T) {
	s := etcdtest.Start(t)
	c := s.Client(t)
	porttest.RunKV(t, func(t *testing.T) ports.KV {
		return compactingKV{KV: etcd.NewKV(c), t: t, s: s}
	})
}

func TestWatchSurvivesRestart(t *testing.T) {
	s := etcdtest.Start(t)
	kv := etcd.NewKV(s.Client(t))
	ctx := t.Context()
	r1, err := kv.Put(ctx, "w/before", []byte("1"))
	if err != nil {
		t.Fatal(err)
	}
	ch := kv.Watch(ctx, "w/", r1)
	if ev := recv(t, ch); ev.KV.Key != "w/before" {
		t.Fatalf("first event %+v, want put of w/before", ev)
	}

	s.Restart(t)

	var r2 int64
	deadline := time.Now().Add(10 * time.Second)
	for { // the client reconnects on its own; writes fail until it has
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		r2, err = kv.Put(pctx, "w/after", []byte("2"))
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("put after restart: %v", err)
		}
	}
	ev := recv(t, ch)
	if ev.Type != ports.EventPut || ev.KV.Key != "w/after" || ev.KV.ModRevision != r2 {
		t.Fatalf("event after restart %+v, want put of w/after at %d", ev, r2)
	}
}

func TestWatchCompacted(t *testing.T) {
	s := etcdtest.Start(t)
	kv := etcd.NewKV(s.Client(t))
	ctx := t.Context()
	r1, err := kv.Put(ctx, "c/1", []byte("1"))
	if err != nil {
		t.Fatal(err)
	}
	r2, err := kv.Put(ctx, "c/2", []byte("2"))
	if err != nil {
		t.Fatal(err)
	}
	s.Compact(t, r2)
	ch := kv.Watch(ctx, "c/", r1)
	ev := recv(t, ch)
	if !errors.Is(ev.Err, ports.ErrCompacted) {
		t.Fatalf("watch from a compacted revision sent %+v, want ErrCompacted", ev)
	}
	if _, ok := <-ch; ok {
		t.Fatal("watch still open after ErrCompacted")
	}
}

func TestWatchEndsWhenClientCloses(t *testing.T) {
	s := etcdtest.Start(t)
	c, closeClient, err := etcd.NewClient(etcd.Config{Endpoints: s.Endpoints()}, quiet())
	if err != nil {
		t.Fatal(err)
	}
	ch := etcd.NewKV(c).Watch(t.Context(), "x/", 0)
	closeClient()
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				return
			}
			if ev.Err == nil {
				t.Fatalf("event %+v from a closed client", ev)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("watch still open after its client closed")
		}
	}
}

func recv(t *testing.T, ch <-chan ports.WatchEvent) ports.WatchEvent {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("watch closed early")
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no watch event within 10s")
	}
	panic("unreachable")
}
