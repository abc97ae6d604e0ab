package fake_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cdmdr/mirror/adapters/fake"
	"github.com/cdmdr/mirror/ports"
	"github.com/cdmdr/mirror/ports/porttest"
)

func TestKVConformance(t *testing.T) {
	porttest.RunKV(t, func(*testing.T) ports.KV { return fake.NewKV() })
}

// One shared store for every subtest, as a real etcd would be.
func TestKVConformanceShared(t *testing.T) {
	kv := fake.NewKV()
	porttest.RunKV(t, func(*testing.T) ports.KV { return kv })
}

func TestKVRevisions(t *testing.T) {
	ctx := t.Context()
	kv := fake.NewKV()
	if got := kv.Revision(); got != 1 {
		t.Fatalf("empty store at revision %d, want 1", got)
	}
	if r, _ := kv.Put(ctx, "a/1", []byte("x")); r != 2 {
		t.Fatalf("first Put at %d, want 2", r)
	}
	_, _ = kv.Put(ctx, "a/2", []byte("x"))
	_ = kv.Delete(ctx, "missing")
	_ = kv.DeletePrefix(ctx, "missing/")
	if got := kv.Revision(); got != 3 {
		t.Fatalf("deleting nothing moved the revision to %d", got)
	}
	_ = kv.DeletePrefix(ctx, "a/")
	if got := kv.Revision(); got != 4 {
		t.Fatalf("DeletePrefix of two keys ended at %d, want one revision (4)", got)
	}
	ch := kv.Watch(ctx, "a/", 4)
	for range 2 {
		if ev := recv(t, ch); ev.Type != ports.EventDelete || ev.KV.ModRevision != 4 {
			t.Fatalf("event %+v, want delete at 4", ev)
		}
	}
}

// Revision 1 is the empty store: a watch from it replays everything.
func TestKVWatchFromFirstRevision(t *testing.T) {
	ctx := t.Context()
	kv := fake.NewKV()
	_, _ = kv.Put(ctx, "k", []byte("v"))
	if ev := recv(t, kv.Watch(ctx, "", 1)); ev.KV.Key != "k" || ev.KV.ModRevision != 2 {
		t.Fatalf("watch from 1 = %+v, want the put of k at 2", ev)
	}
}

func TestKVCompact(t *testing.T) {
	ctx := t.Context()
	kv := fake.NewKV()
	for range 5 {
		_, _ = kv.Put(ctx, "k", []byte("v"))
	} // revisions 2..6
	kv.Compact(5)
	ev := recv(t, kv.Watch(ctx, "", 4))
	if !errors.Is(ev.Err, ports.ErrCompacted) {
		t.Fatalf("watch from 4 after Compact(5) = %+v, want ErrCompacted", ev)
	}
	ch := kv.Watch(ctx, "", 5)
	if ev := recv(t, ch); ev.Err != nil || ev.KV.ModRevision != 5 {
		t.Fatalf("watch from 5 = %+v, want the put at 5", ev)
	}
	if ev := recv(t, ch); ev.KV.ModRevision != 6 {
		t.Fatalf("second event = %+v, want the put at 6", ev)
	}
	kv.Compact(100) // capped at the current revision
	if ev := recv(t, kv.Watch(ctx, "", 6)); ev.Err != nil {
		t.Fatalf("watch from the current revision after an over-compaction: %v", ev.Err)
	}
}

func TestKVDropNextEvents(t *testing.T) {
	ctx := t.Context()
	kv := fake.NewKV()
	live := kv.Watch(ctx, "", 0)
	kv.DropNextEvents("d/", 2)
	for _, k := range []string{"d/a", "x", "d/b", "d/c"} {
		_, _ = kv.Put(ctx, k, []byte("v"))
	}
	for _, want := range []string{"x", "d/c"} {
		if ev := recv(t, live); ev.KV.Key != want {
			t.Fatalf("live watcher got %q, want %q (d/a and d/b dropped, x kept)", ev.KV.Key, want)
		}
	}
	// The history still has them.
	replay := kv.Watch(ctx, "", 2)
	if ev := recv(t, replay); ev.KV.Key != "d/a" {
		t.Fatalf("replay starts with %q, want d/a", ev.KV.Key)
	}
}

func TestKVSetFailureAndCalls(t *testing.T) {
	ctx := t.Context()
	kv := fake.NewKV()
	boom := errors.New("boom")
	kv.SetFailure(boom)
	if _, err := kv.Put(ctx, "k", []byte("v")); !errors.Is(err, boom) {
		t.Fatalf("Put = %v, want boom", err)
	}
	if ev := recv(t, kv.Watch(ctx, "", 0)); !errors.Is(ev.Err, boom) {
		t.Fatalf("Watch = %+v, want boom", ev)
	}
	kv.SetFailure(nil)
	if _, err := kv.Put(ctx, "k", []byte("v")); err != nil {
		t.Fatal(err)
	}
	if got := kv.Calls(); got != 3 {
		t.Fatalf("Calls = %d, want 3", got)
	}
	if got := kv.Dump(); len(got) != 1 || got["k"] != "v" {
		t.Fatalf("Dump = %v", got)
	}
}

func TestKVWatchNeverBlocksWriters(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	kv := fake.NewKV()
	ch := kv.Watch(ctx, "", 0) // never read until all writes are done
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 1000 {
			_, _ = kv.Put(ctx, "k", []byte("v"))
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("writers blocked by an unread watch")
	}
	n := 0
	for range 1000 {
		recv(t, ch)
		n++
	}
	cancel()
	for range ch {
	}
	if n != 1000 {
		t.Fatalf("watcher got %d events, want 1000", n)
	}
}

func TestKVTxnAtomic(t *testing.T) {
	ctx := t.Context()
	kv := fake.NewKV()
	_, _ = kv.Put(ctx, "x/1", []byte("v"))
	err := kv.Txn(ctx, func(tx *fake.Tx) error {
		tx.Put("y", []byte("1"))
		tx.DeletePrefix("x/")
		return nil
	})
	if err != nil || kv.Revision() != 3 {
		t.Fatalf("Txn = %v at revision %d, want one revision (3)", err, kv.Revision())
	}
	rollback := errors.New("rollback")
	if err := kv.Txn(ctx, func(tx *fake.Tx) error { tx.Put("z", nil); return rollback }); !errors.Is(err, rollback) {
		t.Fatal(err)
	}
	if _, ok := kv.Dump()["z"]; ok || kv.Revision() != 3 {
		t.Fatal("a failed Txn wrote")
	}
}

// recv returns the next watch event, or fails after a few seconds.
func recv(t *testing.T, ch <-chan ports.WatchEvent) ports.WatchEvent {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("watch closed")
		}
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no watch event")
	}
	return ports.WatchEvent{}
}
