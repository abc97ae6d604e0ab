package etcd

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cdmdr/mirror/ports"
)

var _ ports.KV = (*KV)(nil)

// KV is ports.KV on an etcd client. Reads are linearizable.
type KV struct {
	c *clientv3.Client
}

// NewKV returns the store on c. Closing c is the caller's business.
func NewKV(c *clientv3.Client) *KV {
	return &KV{c: c}
}

// Get implements ports.KV.
func (k *KV) Get(ctx context.Context, key string) (ports.KeyValue, error) {
	resp, err := k.c.Get(ctx, key)
	if err != nil {
		return ports.KeyValue{}, fmt.Errorf("etcd get %q: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return ports.KeyValue{}, fmt.Errorf("etcd get %q: %w", key, ports.ErrNotFound)
	}
	return keyValue(resp.Kvs[0]), nil
}

// List implements ports.KV.
func (k *KV) List(ctx context.Context, prefix string) ([]ports.KeyValue, int64, error) {
	resp, err := k.c.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, 0, fmt.Errorf("etcd list %q: %w", prefix, err)
	}
	out := make([]ports.KeyValue, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		out = append(out, keyValue(kv))
	}
	return out, resp.Header.Revision, nil
}

// Put implements ports.KV.
func (k *KV) Put(ctx context.Context, key string, value []byte) (int64, error) {
	resp, err := k.c.Put(ctx, key, string(value))
	if err != nil {
		return 0, fmt.Errorf("etcd put %q: %w", key, err)
	}
	return resp.Header.Revision, nil
}

// CompareAndSwap implements ports.KV.
func (k *KV) CompareAndSwap(ctx context.Context, key string, value []byte, expected int64) (int64, error) {
	cmp := clientv3.Compare(clientv3.ModRevision(key), "=", expected)
	if expected == 0 {
		cmp = clientv3.Compare(clientv3.CreateRevision(key), "=", 0)
	}
	resp, err := k.c.Txn(ctx).If(cmp).Then(clientv3.OpPut(key, string(value))).Commit()
	if err != nil {
		return 0, fmt.Errorf("etcd compare-and-swap %q at %d: %w", key, expected, err)
	}
	if !resp.Succeeded {
		return 0, fmt.Errorf("etcd compare-and-swap %q at %d: %w", key, expected, ports.ErrConflict)
	}
	return resp.Header.Revision, nil
}

// Delete implements ports.KV.
func (k *KV) Delete(ctx context.Context, key string) error {
	if _, err := k.c.Delete(ctx, key); err != nil {
		return fmt.Errorf("etcd delete %q: %w", key, err)
	}
	return nil
}

// DeletePrefix implements ports.KV.
func (k *KV) DeletePrefix(ctx context.Context, prefix string) error {
	if _, err := k.c.Delete(ctx, prefix, clientv3.WithPrefix()); err != nil {
		return fmt.Errorf("etcd delete prefix %q: %w", prefix, err)
	}
	return nil
}

// watchStartTimeout bounds how long Watch from now waits for etcd to say
// what "now" is; past it the watch ends with an error event.
const watchStartTimeout = 10 * time.Second

// Watch implements ports.KV. A watch from now reads the current revision
// before returning (waiting at most 10s), so a write made after Watch
// returns is always seen.
// clientv3 resumes a broken stream by itself; a member that lost its
// leader ends the stream (WithRequireLeader, so a partitioned member cannot
// hold the watch silently) and Watch opens it again from the next
// revision. Any other error is sent once and ends the watch.
func (k *KV) Watch(ctx context.Context, prefix string, fromRevision int64) <-chan ports.WatchEvent {
	out := make(chan ports.WatchEvent)
	if fromRevision <= 0 {
		gctx, cancel := context.WithTimeout(ctx, watchStartTimeout)
		resp, err := k.c.Get(gctx, prefix, clientv3.WithCountOnly())
		cancel()
		if err != nil {
			go func() {
				defer close(out)
				if ctx.Err() == nil {
					send(ctx, out, ports.WatchEvent{Err: fmt.Errorf("etcd watch %q: %w", prefix, err)})
				}
			}()
			return out
		}
		fromRevision = resp.Header.Revision + 1
	}
	go k.watch(ctx, prefix, fromRevision, out)
	return out
}

// watch feeds out from revision next on until ctx ends or the watch fails.
func (k *KV) watch(ctx context.Context, prefix string, next int64, out chan<- ports.WatchEvent) {
	defer close(out)
	fail := func(err error) {
		send(ctx, out, ports.WatchEvent{Err: fmt.Errorf("etcd watch %q from %d: %w", prefix, next, err)})
	}
	backoff := newBackoff()
	for ctx.Err() == nil {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		err := k.stream(ctx, k.c.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(next)), &next, out, backoff)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case errors.Is(err, ports.ErrCompacted):
			fail(err)
			return
		case errors.Is(err, rpctypes.ErrNoLeader):
			// The member lost its leader: open the watch again, maybe on
			// another member, from the first revision not yet delivered.
		case k.c.Ctx().Err() != nil:
			fail(fmt.Errorf("client closed: %w", err))
			return
		case err != nil:
			fail(err)
			return
		}
		if !sleep(ctx, backoff.next()) {
			return
		}
	}
}

// stream delivers the events of one clientv3 watch, moving next past each
// delivered event. It returns when wch ends or ctx does.
func (k *KV) stream(ctx context.Context, wch clientv3.WatchChan, next *int64, out chan<- ports.WatchEvent, b *backoff) error {
	for resp := range wch {
		if resp.CompactRevision != 0 {
			return fmt.Errorf("compacted at %d: %w", resp.CompactRevision, ports.ErrCompacted)
		}
		if err := resp.Err(); err != nil {
			return err
		}
		for _, ev := range resp.Events {
			we := ports.WatchEvent{Type: ports.EventPut, KV: keyValue(ev.Kv)}
			if ev.Type == mvccpb.DELETE {
				// A delete event's KV holds the key and, as ModRevision,
				// the revision of the deletion.
				we = ports.WatchEvent{Type: ports.EventDelete, KV: ports.KeyValue{
					Key: string(ev.Kv.Key), ModRevision: ev.Kv.ModRevision,
				}}
			}
			if !send(ctx, out, we) {
				return ctx.Err()
			}
			*next = ev.Kv.ModRevision + 1
		}
		b.reset()
	}
	return errors.New("watch channel closed")
}

func send(ctx context.Context, out chan<- ports.WatchEvent, ev ports.WatchEvent) bool {
	select {
	case out <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}

func keyValue(kv *mvccpb.KeyValue) ports.KeyValue {
	return ports.KeyValue{
		Key:            string(kv.Key),
		Value:          kv.Value,
		CreateRevision: kv.CreateRevision,
		ModRevision:    kv.ModRevision,
	}
}

// backoff doubles a retry delay from 50ms up to 2s.
type backoff struct{ d time.Duration }

func newBackoff() *backoff { return &backoff{} }

func (b *backoff) next() time.Duration {
	switch {
	case b.d == 0:
		b.d = 50 * time.Millisecond
	case b.d < 2*time.Second:
		b.d *= 2
	}
	return b.d
}

func (b *backoff) reset() { b.d = 0 }

// sleep waits d or until ctx ends, and says whether ctx is still alive.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
