package porttest

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cdmdr/mirror/ports"
)

// Compactor is implemented by KV stores whose tests can compact history;
// RunKV checks ErrCompacted only on those.
type Compactor interface {
	// Compact drops the history before rev.
	Compact(rev int64)
}

// RunKV checks that the stores newKV returns honour the ports.KV contract.
// newKV is called once per subtest; it may return the same shared store
// every time, since every subtest works under its own key prefix.
func RunKV(t *testing.T, newKV func(t *testing.T) ports.KV) {
	t.Helper()
	tests := []struct {
		name string
		run  func(t *testing.T, kv ports.KV)
	}{
		{"GetMissing", testKVGetMissing},
		{"PutGet", testKVPutGet},
		{"ListSortedByPrefix", testKVList},
		{"CompareAndSwap", testKVCompareAndSwap},
		{"Delete", testKVDelete},
		{"DeletePrefix", testKVDeletePrefix},
		{"ArbitraryBytes", testKVBytes},
		{"ConcurrentPutsGetDistinctRevisions", testKVConcurrentPuts},
		{"WatchReplaysFromRevision", testKVWatchReplay},
		{"WatchFromListingMissesNothing", testKVWatchAfterList},
		{"WatchFromNow", testKVWatchFromNow},
		{"WatchClosesOnCancel", testKVWatchCancel},
		{"WatchCompacted", testKVWatchCompacted},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, newKV(t)) })
	}
}

func testKVGetMissing(t *testing.T, kv ports.KV) {
	_, err := kv.Get(t.Context(), prefix(t)+"missing")
	if !errors.Is(err, ports.ErrNotFound) {
		t.Fatalf("Get(missing) = %v, want ErrNotFound", err)
	}
}

func testKVPutGet(t *testing.T, kv ports.KV) {
	k := prefix(t) + "k"
	r1 := mustPut(t, kv, k, "v1")
	if r1 <= 0 {
		t.Fatalf("Put returned revision %d, want > 0", r1)
	}
	got := mustGet(t, kv, k)
	if string(got.Value) != "v1" || got.Key != k || got.CreateRevision != r1 || got.ModRevision != r1 {
		t.Fatalf("Get after first Put = %+v, want value v1 created and modified at %d", got, r1)
	}
	r2 := mustPut(t, kv, k, "v2")
	if r2 <= r1 {
		t.Fatalf("second Put revision %d not after first %d", r2, r1)
	}
	got = mustGet(t, kv, k)
	if string(got.Value) != "v2" || got.CreateRevision != r1 || got.ModRevision != r2 {
		t.Fatalf("Get after update = %+v, want value v2, CreateRevision %d, ModRevision %d", got, r1, r2)
	}
	// Another key's write moves the store revision on but not this key's.
	r3 := mustPut(t, kv, k+"-other", "x")
	if r3 <= r2 {
		t.Fatalf("revision %d of another key not after %d", r3, r2)
	}
	if got := mustGet(t, kv, k); got.ModRevision != r2 {
		t.Fatalf("ModRevision moved to %d by another key's write", got.ModRevision)
	}
}

func testKVList(t *testing.T, kv ports.KV) {
	ctx, p := t.Context(), prefix(t)
	var last int64
	for _, k := range []string{"a/bc", "a/b/2", "a/b", "a/b/1", "a/b/1/x", "b"} {
		last = mustPut(t, kv, p+k, k)
	}
	list := func(pfx string) []string {
		t.Helper()
		kvs, rev, err := kv.List(ctx, p+pfx)
		if err != nil {
			t.Fatalf("List(%q): %v", pfx, err)
		}
		if rev < last {
			t.Fatalf("List(%q) revision %d before the last write %d", pfx, rev, last)
		}
		var keys []string
		for _, e := range kvs {
			if string(e.Value) != e.Key[len(p):] || e.ModRevision <= 0 || e.CreateRevision <= 0 {
				t.Fatalf("List(%q) entry %+v: wrong value or revisions", pfx, e)
			}
			keys = append(keys, e.Key[len(p):])
		}
		return keys
	}
	if got, want := list("a/b/"), []string{"a/b/1", "a/b/1/x", "a/b/2"}; !slices.Equal(got, want) {
		t.Errorf("List(a/b/) = %q, want %q (sorted, children only, not a/bc)", got, want)
	}
	if got, want := list("a/b"), []string{"a/b", "a/b/1", "a/b/1/x", "a/b/2", "a/bc"}; !slices.Equal(got, want) {
		t.Errorf("List(a/b) = %q, want %q (byte prefix)", got, want)
	}
	if got, want := list(""), []string{"a/b", "a/b/1", "a/b/1/x", "a/b/2", "a/bc", "b"}; !slices.Equal(got, want) {
		t.Errorf("List(all) = %q, want %q", got, want)
	}
	if got := list("none/"); len(got) != 0 {
		t.Errorf("List(none/) = %q, want empty", got)
	}
}

func testKVCompareAndSwap(t *testing.T, kv ports.KV) {
	ctx, k := t.Context(), prefix(t)+"k"
	r1, err := kv.CompareAndSwap(ctx, k, []byte("v1"), 0)
	if err != nil {
		t.Fatalf("create-only CAS on a missing key: %v", err)
	}
	if got := mustGet(t, kv, k); string(got.Value) != "v1" || got.ModRevision != r1 || got.CreateRevision != r1 {
		t.Fatalf("after create-only CAS got %+v, want v1 at %d", got, r1)
	}
	if _, err := kv.CompareAndSwap(ctx, k, []byte("v0"), 0); !errors.Is(err, ports.ErrConflict) {
		t.Fatalf("create-only CAS on an existing key = %v, want ErrConflict", err)
	}
	r2, err := kv.CompareAndSwap(ctx, k, []byte("v2"), r1)
	if err != nil {
		t.Fatalf("CAS at the current revision: %v", err)
	}
	if r2 <= r1 {
		t.Fatalf("CAS revision %d not after %d", r2, r1)
	}
	if _, err := kv.CompareAndSwap(ctx, k, []byte("stale"), r1); !errors.Is(err, ports.ErrConflict) {
		t.Fatalf("CAS at a stale revision = %v, want ErrConflict", err)
	}
	if got := mustGet(t, kv, k); string(got.Value) != "v2" || got.ModRevision != r2 || got.CreateRevision != r1 {
		t.Fatalf("a failed CAS wrote: got %+v", got)
	}
	if _, err := kv.CompareAndSwap(ctx, k+"-missing", []byte("x"), r2); !errors.Is(err, ports.ErrConflict) {
		t.Fatalf("CAS at a revision on a missing key = %v, want ErrConflict", err)
	}
	if _, err := kv.Get(ctx, k+"-missing"); !errors.Is(err, ports.ErrNotFound) {
		t.Fatalf("a failed CAS created the key: %v", err)
	}
}

func testKVDelete(t *testing.T, kv ports.KV) {
	ctx, k := t.Context(), prefix(t)+"k"
	if err := kv.Delete(ctx, k); err != nil {
		t.Fatalf("Delete(missing) = %v, want nil", err)
	}
	mustPut(t, kv, k, "v")
	mustPut(t, kv, k+"x", "v")
	if err := kv.Delete(ctx, k); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Get(ctx, k); !errors.Is(err, ports.ErrNotFound) {
		t.Fatalf("Get after Delete = %v, want ErrNotFound", err)
	}
	if err := kv.Delete(ctx, k); err != nil {
		t.Fatalf("second Delete = %v, want nil", err)
	}
	mustGet(t, kv, k+"x") // Delete is one key, not a prefix.
	// A re-created key starts a new life.
	r := mustPut(t, kv, k, "again")
	if got := mustGet(t, kv, k); got.CreateRevision != r {
		t.Fatalf("re-created key CreateRevision %d, want %d", got.CreateRevision, r)
	}
}

func testKVDeletePrefix(t *testing.T, kv ports.KV) {
	ctx, p := t.Context(), prefix(t)
	for _, k := range []string{"d/1", "d/2", "d/2/x", "dx", "d"} {
		mustPut(t, kv, p+k, "v")
	}
	if err := kv.DeletePrefix(ctx, p+"d/"); err != nil {
		t.Fatal(err)
	}
	kvs, _, err := kv.List(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, e := range kvs {
		keys = append(keys, e.Key[len(p):])
	}
	if want := []string{"d", "dx"}; !slices.Equal(keys, want) {
		t.Fatalf("after DeletePrefix(d/) keys = %q, want %q", keys, want)
	}
	if err := kv.DeletePrefix(ctx, p+"d/"); err != nil {
		t.Fatalf("DeletePrefix of nothing = %v, want nil", err)
	}
}

func testKVBytes(t *testing.T, kv ports.KV) {
	ctx, p := t.Context(), prefix(t)
	values := map[string][]byte{
		"nul":     {0, 1, 0, 2},
		"high":    {0xff, 0xfe, 0x80, 0xc3, 0x28},
		"empty":   {},
		"newline": []byte("a\nb\r\n\t\"}{"),
		"json":    []byte(`{"pool":"volumes","keyring":"AQ=="}`),
	}
	_, rev0, err := kv.List(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range values {
		if _, err := kv.Put(ctx, p+k, v); err != nil {
			t.Fatal(err)
		}
	}
	for k, v := range values {
		got := mustGet(t, kv, p+k)
		if !bytes.Equal(got.Value, v) {
			t.Errorf("Get(%s) = %q, want %q", k, got.Value, v)
		}
	}
	kvs, _, err := kv.List(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range kvs {
		if want := values[e.Key[len(p):]]; !bytes.Equal(e.Value, want) {
			t.Errorf("List entry %s = %q, want %q", e.Key, e.Value, want)
		}
	}
	ch := kv.Watch(ctx, p, rev0+1)
	for range values {
		ev := recvEvent(t, ch)
		if want := values[ev.KV.Key[len(p):]]; !bytes.Equal(ev.KV.Value, want) {
			t.Errorf("watched %s = %q, want %q", ev.KV.Key, ev.KV.Value, want)
		}
	}
}

func testKVConcurrentPuts(t *testing.T, kv ports.KV) {
	ctx, p := t.Context(), prefix(t)
	const n = 20
	revs := make([]int64, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			revs[i], errs[i] = kv.Put(ctx, p+"k", []byte{byte(i)})
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	slices.Sort(revs)
	if len(slices.Compact(slices.Clone(revs))) != n {
		t.Fatalf("concurrent Puts returned duplicate revisions %v", revs)
	}
	if got := mustGet(t, kv, p+"k"); got.ModRevision != revs[n-1] {
		t.Fatalf("ModRevision %d, want the last Put's %d", got.ModRevision, revs[n-1])
	}
}

func testKVWatchReplay(t *testing.T, kv ports.KV) {
	ctx, p := t.Context(), prefix(t)
	w := p + "w/"
	r1 := mustPut(t, kv, w+"1", "a")
	mustPut(t, kv, p+"wx", "outside") // a sibling that only shares a byte prefix
	mustPut(t, kv, w+"2", "b")
	if err := kv.Delete(ctx, w+"1"); err != nil {
		t.Fatal(err)
	}
	mustPut(t, kv, w+"2", "c")
	mustPut(t, kv, w+"3", "d")
	if err := kv.DeletePrefix(ctx, w); err != nil {
		t.Fatal(err)
	}
	type seen struct {
		typ ports.EventType
		key string
		val string
	}
	want := []seen{
		{ports.EventPut, "1", "a"},
		{ports.EventPut, "2", "b"},
		{ports.EventDelete, "1", ""},
		{ports.EventPut, "2", "c"},
		{ports.EventPut, "3", "d"},
		{ports.EventDelete, "2", ""},
		{ports.EventDelete, "3", ""},
	}
	ch := kv.Watch(ctx, w, r1)
	var got []seen
	var last int64
	for i := range want {
		ev := recvEvent(t, ch)
		if i == 0 && ev.KV.ModRevision != r1 {
			t.Fatalf("replay starts at revision %d, want %d", ev.KV.ModRevision, r1)
		}
		if ev.KV.ModRevision < last {
			t.Fatalf("event %+v out of revision order (after %d)", ev, last)
		}
		last = ev.KV.ModRevision
		if ev.Type == ports.EventPut && ev.KV.CreateRevision <= 0 {
			t.Errorf("put event %+v without CreateRevision", ev)
		}
		got = append(got, seen{ev.Type, ev.KV.Key[len(w):], string(ev.KV.Value)})
	}
	// The two deletes of one DeletePrefix may come in either key order.
	slices.SortFunc(got[5:], func(a, b seen) int { return strings.Compare(a.key, b.key) })
	if !slices.Equal(got, want) {
		t.Fatalf("replayed events\n got %v\nwant %v", got, want)
	}
	// Live events follow the replay on the same channel.
	mustPut(t, kv, w+"4", "e")
	if ev := recvEvent(t, ch); ev.Type != ports.EventPut || ev.KV.Key != w+"4" || ev.KV.ModRevision <= last {
		t.Fatalf("live event after replay = %+v, want put of %s", ev, w+"4")
	}
}

func testKVWatchAfterList(t *testing.T, kv ports.KV) {
	ctx, p := t.Context(), prefix(t)
	mustPut(t, kv, p+"old", "v")
	kvs, rev, err := kv.List(ctx, p)
	if err != nil || len(kvs) != 1 {
		t.Fatalf("List = %v, %v", kvs, err)
	}
	r := mustPut(t, kv, p+"new", "v") // written between List and Watch
	ch := kv.Watch(ctx, p, rev+1)
	if ev := recvEvent(t, ch); ev.KV.Key != p+"new" || ev.KV.ModRevision != r {
		t.Fatalf("first event after listing = %+v, want put of new at %d", ev, r)
	}
}

func testKVWatchFromNow(t *testing.T, kv ports.KV) {
	ctx, p := t.Context(), prefix(t)
	mustPut(t, kv, p+"before", "v")
	ch := kv.Watch(ctx, p, 0)
	r := mustPut(t, kv, p+"after", "v")
	if ev := recvEvent(t, ch); ev.KV.Key != p+"after" || ev.KV.ModRevision != r || ev.Type != ports.EventPut {
		t.Fatalf("first event of a watch from now = %+v, want put of after at %d", ev, r)
	}
}

func testKVWatchCancel(t *testing.T, kv ports.KV) {
	ctx, cancel := context.WithCancel(t.Context())
	p := prefix(t)
	ch := kv.Watch(ctx, p, 0)
	mustPut(t, kv, p+"k", "v")
	cancel()
	deadline := time.After(waitTimeout)
	for {
		select {
		case ev, ok := <-ch:
			if !ok {
				return
			}
			if ev.Err != nil && !errors.Is(ev.Err, context.Canceled) {
				t.Fatalf("watch ended with %v, want a closed channel", ev.Err)
			}
		case <-deadline:
			t.Fatalf("watch channel still open %v after its ctx ended", waitTimeout)
		}
	}
}

func testKVWatchCompacted(t *testing.T, kv ports.KV) {
	c, ok := kv.(Compactor)
	if !ok {
		t.Skip("store cannot compact on demand")
	}
	ctx, p := t.Context(), prefix(t)
	r1 := mustPut(t, kv, p+"1", "v")
	mustPut(t, kv, p+"2", "v")
	r3 := mustPut(t, kv, p+"3", "v")
	c.Compact(r3)

	ch := kv.Watch(ctx, p, r1)
	ev := recvEvent(t, ch)
	if !errors.Is(ev.Err, ports.ErrCompacted) || ev.Type != 0 || ev.KV.Key != "" {
		t.Fatalf("watch from a compacted revision sent %+v, want only Err ErrCompacted", ev)
	}
	select {
	case ev, ok := <-ch:
		if ok {
			t.Fatalf("watch sent %+v after ErrCompacted, want it closed", ev)
		}
	case <-time.After(waitTimeout):
		t.Fatal("watch not closed after ErrCompacted")
	}

	ch = kv.Watch(ctx, p, r3)
	if ev := recvEvent(t, ch); ev.Err != nil || ev.KV.Key != p+"3" {
		t.Fatalf("watch from the compaction revision = %+v, want put of 3", ev)
	}
}

func mustPut(t *testing.T, kv ports.KV, key, value string) int64 {
	t.Helper()
	rev, err := kv.Put(t.Context(), key, []byte(value))
	if err != nil {
		t.Fatalf("Put(%q): %v", key, err)
	}
	return rev
}

func mustGet(t *testing.T, kv ports.KV, key string) ports.KeyValue {
	t.Helper()
	got, err := kv.Get(t.Context(), key)
	if err != nil {
		t.Fatalf("Get(%q): %v", key, err)
	}
	return got
}

// recvEvent returns the next watch event, failing on an error event, a
// closed channel or a timeout. Compaction errors are returned.
func recvEvent(t *testing.T, ch <-chan ports.WatchEvent) ports.WatchEvent {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("watch channel closed early")
		}
		if ev.Err != nil && !errors.Is(ev.Err, ports.ErrCompacted) {
			t.Fatalf("watch error: %v", ev.Err)
		}
		return ev
	case <-time.After(waitTimeout):
		t.Fatalf("no watch event within %v", waitTimeout)
	}
	panic("unreachable")
}
