package fake

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"

	"github.com/cdmdr/mirror/ports"
)

var _ ports.KV = (*KV)(nil)

// KV is an in-memory ports.KV that behaves like etcd: one global revision
// (starting at 1, like an empty etcd) bumped by every change, per-key
// CreateRevision and ModRevision, and a full event history so Watch can
// replay from any revision not yet compacted.
//
// Writers never block on watchers: each watcher has an unbounded queue
// drained by its own goroutine.
type KV struct {
	mu        sync.Mutex
	rev       int64
	compacted int64 // oldest revision still in history
	data      map[string]ports.KeyValue
	history   []ports.WatchEvent
	watchers  map[*watcher]struct{}
	// hooks see every committed change under mu; the fake election uses
	// them to notice a deleted leader key in the same step as the delete.
	hooks []func([]ports.WatchEvent)
	fail  error
	// dropUnder and drop: the next drop events under dropUnder reach no
	// watcher.
	dropUnder string
	drop      int
	calls     int
}

// NewKV returns an empty store at revision 1.
func NewKV() *KV {
	return &KV{
		rev:       1,
		compacted: 1,
		data:      map[string]ports.KeyValue{},
		watchers:  map[*watcher]struct{}{},
	}
}

// Get implements ports.KV.
func (kv *KV) Get(ctx context.Context, key string) (ports.KeyValue, error) {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	if err := kv.begin(ctx); err != nil {
		return ports.KeyValue{}, err
	}
	v, ok := kv.data[key]
	if !ok {
		return ports.KeyValue{}, fmt.Errorf("get %q: %w", key, ports.ErrNotFound)
	}
	return cloneKV(v), nil
}

// List implements ports.KV.
func (kv *KV) List(ctx context.Context, prefix string) ([]ports.KeyValue, int64, error) {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	if err := kv.begin(ctx); err != nil {
		return nil, 0, err
	}
	var out []ports.KeyValue
	for _, k := range kv.keysUnder(prefix) {
		out = append(out, cloneKV(kv.data[k]))
	}
	return out, kv.rev, nil
}

// Put implements ports.KV.
func (kv *KV) Put(ctx context.Context, key string, value []byte) (int64, error) {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	if err := kv.begin(ctx); err != nil {
		return 0, err
	}
	tx := kv.newTx()
	tx.Put(key, value)
	kv.commit(tx)
	return kv.rev, nil
}

// CompareAndSwap implements ports.KV.
func (kv *KV) CompareAndSwap(ctx context.Context, key string, value []byte, expected int64) (int64, error) {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	if err := kv.begin(ctx); err != nil {
		return 0, err
	}
	cur, ok := kv.data[key]
	if (expected == 0 && ok) || (expected != 0 && (!ok || cur.ModRevision != expected)) {
		return 0, fmt.Errorf("compare-and-swap %q at %d: %w", key, expected, ports.ErrConflict)
	}
	tx := kv.newTx()
	tx.Put(key, value)
	kv.commit(tx)
	return kv.rev, nil
}

// Delete implements ports.KV.
func (kv *KV) Delete(ctx context.Context, key string) error {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	if err := kv.begin(ctx); err != nil {
		return err
	}
	tx := kv.newTx()
	tx.Delete(key)
	kv.commit(tx)
	return nil
}

// DeletePrefix implements ports.KV. Several keys go in one revision, as an
// etcd range delete does.
func (kv *KV) DeletePrefix(ctx context.Context, prefix string) error {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	if err := kv.begin(ctx); err != nil {
		return err
	}
	tx := kv.newTx()
	tx.DeletePrefix(prefix)
	kv.commit(tx)
	return nil
}

// Watch implements ports.KV.
func (kv *KV) Watch(ctx context.Context, prefix string, fromRevision int64) <-chan ports.WatchEvent {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	if err := kv.begin(ctx); err != nil {
		return endedWatch(err)
	}
	if fromRevision > 0 && fromRevision < kv.compacted {
		return endedWatch(fmt.Errorf("watch %q from %d (compacted at %d): %w",
			prefix, fromRevision, kv.compacted, ports.ErrCompacted))
	}
	w := &watcher{prefix: prefix, minRev: fromRevision, wake: make(chan struct{}, 1)}
	if fromRevision > 0 {
		for _, ev := range kv.history {
			w.offer(ev)
		}
	}
	// Registering under the same lock as the replay means no change falls
	// between history and live events.
	kv.watchers[w] = struct{}{}
	ch := make(chan ports.WatchEvent)
	go w.run(ctx, ch, func() {
		kv.mu.Lock()
		delete(kv.watchers, w)
		kv.mu.Unlock()
	})
	return ch
}

// Txn runs fn under the store's lock and applies the writes it made through
// tx atomically, in one revision, if fn returns nil and something changed.
// fn must not call other methods of the KV.
func (kv *KV) Txn(ctx context.Context, fn func(tx *Tx) error) error {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	if err := kv.begin(ctx); err != nil {
		return err
	}
	return kv.txnLocked(fn)
}

// txnRev is Txn returning the store's revision right after it, as
// etcd's response header does: the write's revision, or the current one
// when the transaction changed nothing.
func (kv *KV) txnRev(ctx context.Context, fn func(tx *Tx) error) (int64, error) {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	if err := kv.begin(ctx); err != nil {
		return 0, err
	}
	if err := kv.txnLocked(fn); err != nil {
		return 0, err
	}
	return kv.rev, nil
}

// txn is Txn for the fakes' own bookkeeping (session expiry): no failure
// injection, not counted as a request.
func (kv *KV) txn(fn func(tx *Tx) error) error {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	return kv.txnLocked(fn)
}

func (kv *KV) txnLocked(fn func(tx *Tx) error) error {
	tx := kv.newTx()
	if err := fn(tx); err != nil {
		return err
	}
	kv.commit(tx)
	return nil
}

// Compact drops the history before rev, like an etcd compaction: a later
// Watch from an older revision gets ErrCompacted. rev is capped at the
// current revision.
func (kv *KV) Compact(rev int64) {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	rev = min(rev, kv.rev)
	if rev <= kv.compacted {
		return
	}
	kv.compacted = rev
	i, _ := slices.BinarySearchFunc(kv.history, rev, func(ev ports.WatchEvent, r int64) int {
		return int(ev.KV.ModRevision - r)
	})
	kv.history = slices.Clone(kv.history[i:])
}

// Revision returns the current store revision.
func (kv *KV) Revision() int64 {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	return kv.rev
}

// SetFailure makes every later request fail with err (a new Watch gets one
// event carrying err), until cleared with nil. Running watches go on.
func (kv *KV) SetFailure(err error) {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	kv.fail = err
}

// DropNextEvents makes every running and future watcher miss the next n
// events on keys under prefix (they stay in the history, so a watch from an
// older revision still sees them). It breaks the Watch contract on purpose,
// to test that a periodic resync repairs what a lost event left behind.
// Only keys under prefix count, so a write the daemon happens to make at
// that moment is not the one lost.
func (kv *KV) DropNextEvents(prefix string, n int) {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	kv.dropUnder, kv.drop = prefix, n
}

// Dump returns every key with its value as a string.
func (kv *KV) Dump() map[string]string {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	out := make(map[string]string, len(kv.data))
	for k, v := range kv.data {
		out[k] = string(v.Value)
	}
	return out
}

// History returns every change since the last compaction, oldest first:
// what was written, not only what is left (the secret scan of the app
// tests reads it).
func (kv *KV) History() []ports.WatchEvent {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	return slices.Clone(kv.history)
}

// Calls returns how many requests (port methods and Txn) were made.
func (kv *KV) Calls() int {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	return kv.calls
}

// onCommit registers fn to see every committed change, under the store's
// lock: fn must not call the KV.
func (kv *KV) onCommit(fn func([]ports.WatchEvent)) {
	kv.mu.Lock()
	defer kv.mu.Unlock()
	kv.hooks = append(kv.hooks, fn)
}

// begin counts a request and returns the error it must fail with, if any.
// Callers hold mu.
func (kv *KV) begin(ctx context.Context) error {
	kv.calls++
	if err := ctx.Err(); err != nil {
		return err
	}
	return kv.fail
}

func (kv *KV) keysUnder(prefix string) []string {
	var keys []string
	for k := range kv.data {
		if strings.HasPrefix(k, prefix) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

func (kv *KV) newTx() *Tx {
	return &Tx{kv: kv, writes: map[string][]byte{}}
}

// commit applies tx in one new revision, unless it changes nothing (deleting
// missing keys), and hands the events to history, hooks and watchers.
// Callers hold mu.
func (kv *KV) commit(tx *Tx) {
	var events []ports.WatchEvent
	rev := kv.rev + 1
	for _, k := range slices.Sorted(maps.Keys(tx.writes)) {
		v := tx.writes[k]
		cur, exists := kv.data[k]
		if v == nil {
			if !exists {
				continue
			}
			delete(kv.data, k)
			events = append(events, ports.WatchEvent{Type: ports.EventDelete,
				KV: ports.KeyValue{Key: k, ModRevision: rev}})
			continue
		}
		next := ports.KeyValue{Key: k, Value: v, CreateRevision: rev, ModRevision: rev}
		if exists {
			next.CreateRevision = cur.CreateRevision
		}
		kv.data[k] = next
		events = append(events, ports.WatchEvent{Type: ports.EventPut, KV: next})
	}
	if len(events) == 0 {
		return
	}
	kv.rev = rev
	kv.history = append(kv.history, events...)
	for _, h := range kv.hooks {
		h(events)
	}
	for _, ev := range events {
		if kv.drop > 0 && strings.HasPrefix(ev.KV.Key, kv.dropUnder) {
			kv.drop--
			continue
		}
		for w := range kv.watchers {
			w.offer(ev)
		}
	}
}

// Tx is one multi-key transaction of a KV; see (*KV).Txn. Reads see the
// committed state plus this transaction's own writes.
type Tx struct {
	kv *KV
	// writes maps a key to its new value; nil means delete.
	writes map[string][]byte
}

// Get returns the key as this transaction sees it.
func (tx *Tx) Get(key string) (ports.KeyValue, bool) {
	if v, ok := tx.writes[key]; ok {
		if v == nil {
			return ports.KeyValue{}, false
		}
		cur := tx.kv.data[key]
		return ports.KeyValue{Key: key, Value: bytes.Clone(v),
			CreateRevision: cur.CreateRevision, ModRevision: cur.ModRevision}, true
	}
	v, ok := tx.kv.data[key]
	return cloneKV(v), ok
}

// Put writes key=value at commit.
func (tx *Tx) Put(key string, value []byte) {
	v := bytes.Clone(value)
	if v == nil {
		v = []byte{}
	}
	tx.writes[key] = v
}

// Delete removes key at commit; a missing key is fine.
func (tx *Tx) Delete(key string) {
	tx.writes[key] = nil
}

// DeletePrefix removes every key under prefix at commit.
func (tx *Tx) DeletePrefix(prefix string) {
	for _, k := range tx.kv.keysUnder(prefix) {
		tx.writes[k] = nil
	}
	for k := range tx.writes {
		if strings.HasPrefix(k, prefix) {
			tx.writes[k] = nil
		}
	}
}

// watcher is one running Watch: an unbounded queue the writers append to
// and a goroutine that drains it into the caller's channel.
type watcher struct {
	prefix string
	minRev int64
	mu     sync.Mutex
	queue  []ports.WatchEvent
	wake   chan struct{}
}

func (w *watcher) offer(ev ports.WatchEvent) {
	if !strings.HasPrefix(ev.KV.Key, w.prefix) || ev.KV.ModRevision < w.minRev {
		return
	}
	ev.KV = cloneKV(ev.KV)
	w.mu.Lock()
	w.queue = append(w.queue, ev)
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *watcher) run(ctx context.Context, ch chan<- ports.WatchEvent, done func()) {
	defer close(ch)
	defer done()
	for {
		w.mu.Lock()
		batch := w.queue
		w.queue = nil
		w.mu.Unlock()
		for _, ev := range batch {
			select {
			case ch <- ev:
			case <-ctx.Done():
				return
			}
		}
		select {
		case <-w.wake:
		case <-ctx.Done():
			return
		}
	}
}

func endedWatch(err error) <-chan ports.WatchEvent {
	ch := make(chan ports.WatchEvent, 1)
	ch <- ports.WatchEvent{Err: err}
	close(ch)
	return ch
}

func cloneKV(v ports.KeyValue) ports.KeyValue {
	v.Value = bytes.Clone(v.Value)
	return v
}
