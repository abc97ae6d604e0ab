package app

import (
	"container/heap"
	"context"
	"sync"
	"time"

	"github.com/cdmdr/mirror/core"
	"github.com/cdmdr/mirror/ports"
)

// workQueue holds the resources waiting to be reconciled, in the manner of
// controller-runtime's work queue: a resource is queued at most once; one
// being reconciled that is added again is reconciled again afterwards,
// never by two workers at once; a delayed add waits on the engine's clock
// (the earliest one wins); failures back off per resource. A fixed pool of
// workers takes from it, so goroutines do not grow with the volume count.
type workQueue struct {
	clock   ports.Clock
	backoff core.Backoff

	mu       sync.Mutex
	nonEmpty *sync.Cond
	ready    []core.Resource // FIFO
	queued   map[core.Resource]bool
	active   map[core.Resource]bool
	again    map[core.Resource]bool // added while active
	due      map[core.Resource]time.Time
	delays   delayHeap
	attempts map[core.Resource]int
	closed   bool
	// rescan tells the delay loop an earlier due time arrived.
	rescan chan struct{}
}

func newWorkQueue(clock ports.Clock, backoff core.Backoff) *workQueue {
	q := &workQueue{clock: clock, backoff: backoff,
		queued: map[core.Resource]bool{}, active: map[core.Resource]bool{}, again: map[core.Resource]bool{},
		due: map[core.Resource]time.Time{}, attempts: map[core.Resource]int{}, rescan: make(chan struct{}, 1)}
	q.nonEmpty = sync.NewCond(&q.mu)
	return q
}

// add queues r now.
func (q *workQueue) add(r core.Resource) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.addLocked(r)
}

func (q *workQueue) addLocked(r core.Resource) {
	if q.closed {
		return
	}
	delete(q.due, r) // an immediate reconcile supersedes a later one
	if q.active[r] {
		q.again[r] = true
		return
	}
	if q.queued[r] {
		return
	}
	q.queued[r] = true
	q.ready = append(q.ready, r)
	q.nonEmpty.Signal()
}

// addAfter queues r once d has passed on the clock, unless it is due
// earlier already.
func (q *workQueue) addAfter(r core.Resource, d time.Duration) {
	if d <= 0 {
		q.add(r)
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return
	}
	at := q.clock.Now().Add(d)
	if cur, ok := q.due[r]; ok && !cur.After(at) {
		return
	}
	q.due[r] = at
	first := len(q.delays) == 0 || at.Before(q.delays[0].at)
	heap.Push(&q.delays, delayed{at: at, r: r})
	if first {
		select {
		case q.rescan <- struct{}{}:
		default:
		}
	}
}

// retry queues r after its next backoff delay.
func (q *workQueue) retry(r core.Resource) {
	q.mu.Lock()
	q.attempts[r]++
	d := q.backoff.Delay(q.attempts[r])
	q.mu.Unlock()
	q.addAfter(r, d)
}

// forget resets r's backoff.
func (q *workQueue) forget(r core.Resource) {
	q.mu.Lock()
	delete(q.attempts, r)
	q.mu.Unlock()
}

// get waits for a resource to reconcile; false once the queue is closed.
// The caller calls done when finished with it.
func (q *workQueue) get() (core.Resource, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for len(q.ready) == 0 && !q.closed {
		q.nonEmpty.Wait()
	}
	if q.closed {
		return core.Resource{}, false
	}
	r := q.ready[0]
	q.ready[0] = core.Resource{}
	q.ready = q.ready[1:]
	delete(q.queued, r)
	q.active[r] = true
	return r, true
}

// done ends r's reconcile; if it was added meanwhile, it is queued again.
func (q *workQueue) done(r core.Resource) {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.active, r)
	if q.again[r] {
		delete(q.again, r)
		q.addLocked(r)
	}
}

// close wakes every get, which then returns false.
func (q *workQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.nonEmpty.Broadcast()
	q.mu.Unlock()
}

// runDelays moves due resources to the queue until ctx ends: one timer
// for the earliest due time.
func (q *workQueue) runDelays(ctx context.Context) {
	for {
		q.mu.Lock()
		now := q.clock.Now()
		for len(q.delays) > 0 && !q.delays[0].at.After(now) {
			d := heap.Pop(&q.delays).(delayed)
			if at, ok := q.due[d.r]; ok && at.Equal(d.at) {
				q.addLocked(d.r)
			}
		}
		wait := time.Duration(-1)
		if len(q.delays) > 0 {
			wait = q.delays[0].at.Sub(now)
		}
		q.mu.Unlock()

		var fired <-chan time.Time
		var t ports.Timer
		if wait >= 0 {
			t = q.clock.NewTimer(wait)
			fired = t.C()
		}
		select {
		case <-ctx.Done():
		case <-q.rescan:
		case <-fired:
		}
		if t != nil {
			t.Stop()
		}
		if ctx.Err() != nil {
			return
		}
	}
}

// delayed is one delayed add; stale ones (superseded in due) are skipped.
type delayed struct {
	at time.Time
	r  core.Resource
}

type delayHeap []delayed

func (h delayHeap) Len() int           { return len(h) }
func (h delayHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h delayHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *delayHeap) Push(x any)        { *h = append(*h, x.(delayed)) }
func (h *delayHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
