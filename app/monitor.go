package app

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/cdmdr/mirror/core"
	"github.com/cdmdr/mirror/ports"
)

// resignTimeout bounds giving leaderships up at shutdown.
const resignTimeout = 5 * time.Second

// monitor reconciles the environments and volumes this daemon leads, the
// original's environment and volume monitors in one: touched resources go
// through one work queue to a fixed pool of workers; a worker campaigns
// for a resource nobody leads before reconciling it, and keeps the
// leadership between reconciles.
type monitor struct {
	e     *Engine
	queue *workQueue

	mu   sync.Mutex
	held map[core.Resource]*lead
	// settled are the volumes led here that wait for nothing, by
	// environment: the bulk poll watches them (bulkpoll.go).
	settled map[core.EnvironmentID]map[core.VolumeRef]*settledVolume
	// reports are the bulk poll's answers for the volumes it queued.
	reports map[core.VolumeRef]report
	// releasing are the environments whose ReleaseEnvironment is under
	// way, closed when done (release.go).
	releasing map[core.EnvironmentID]chan struct{}

	// polling are the volumes a bulk status call on its way asks about,
	// with the channel closed at its end: a hand-over waits for it, so no
	// call still asks about a volume this daemon gave up.
	polling map[core.VolumeRef]chan struct{}
	members membership
	place   placement

	// leadWG counts the goroutines following environment leaderships;
	// quit ends them at shutdown (release.go).
	leadWG sync.WaitGroup
	quit   chan struct{}

	wg     sync.WaitGroup
	ctx    context.Context
	cancel context.CancelFunc
}

// lead is this daemon's leadership of one resource.
type lead struct {
	ports.Leadership
	// fresh: the next reconcile reads the store (the first after winning,
	// when the cache may lack the previous leader's last writes).
	fresh bool
	// env and backend: an environment's, as resolved when won, for its
	// release should its records be gone by then.
	env     ports.Environment
	backend ports.StorageBackend
	// released: the backend was told this lead ended (once).
	released sync.Once
}

func newMonitor(e *Engine) *monitor {
	ctx, cancel := context.WithCancel(context.Background())
	return &monitor{e: e, queue: newWorkQueue(e.clock, e.cfg.Backoff), held: map[core.Resource]*lead{},
		settled: map[core.EnvironmentID]map[core.VolumeRef]*settledVolume{}, reports: map[core.VolumeRef]report{},
		releasing: map[core.EnvironmentID]chan struct{}{}, polling: map[core.VolumeRef]chan struct{}{}, place: newPlacement(), quit: make(chan struct{}),
		ctx: ctx, cancel: cancel}
}

// touch queues resource for a reconcile.
func (m *monitor) touch(resource core.Resource) { m.queue.add(resource) }

// touchUnlessLed is touch for a change the resource's own leader made
// (statuses are written by the leader only): a resource led here needs no
// reconcile for its own write, but one nobody here leads still gets
// campaigned for.
func (m *monitor) touchUnlessLed(resource core.Resource) {
	m.mu.Lock()
	_, led := m.held[resource]
	m.mu.Unlock()
	if !led {
		m.touch(resource)
	}
}

// ensureAll touches every environment and volume under prefix that
// nobody leads (after a listing), and those of both prefixes after a
// listing of the leader prefix, so leaderless resources are campaigned
// for. Resources with a leader go on at their leader's pace.
func (m *monitor) ensureAll(prefix string) {
	switch prefix {
	case core.EnvironmentPrefix, core.VolumePrefix:
		for _, key := range m.e.cache.leaderless(prefix, m.e.cfg.LeaderPrefix) {
			if r, err := core.ParseResource(key); err == nil {
				m.touchUnlessLed(r)
			}
		}
	case m.e.cfg.LeaderPrefix:
		m.observeMembers()
		m.markDirty()
		m.ensureAll(core.EnvironmentPrefix)
		m.ensureAll(core.VolumePrefix)
	}
}

// start starts the workers and touches every environment and volume. It
// runs once every watched prefix was listed: a reconcile earlier would
// find its environment or storages missing from the cache and write a
// false error, so touches wait in the queue until then.
func (m *monitor) start() {
	m.releaseLeftovers()
	m.wg.Add(4)
	go func() {
		defer m.wg.Done()
		m.queue.runDelays(m.ctx)
	}()
	go func() {
		defer m.wg.Done()
		m.runBulkPoll(m.ctx)
	}()
	go func() {
		defer m.wg.Done()
		m.announce(m.ctx)
	}()
	go func() {
		defer m.wg.Done()
		m.runPlacement(m.ctx)
	}()
	for range m.e.cfg.Workers {
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.work()
		}()
	}
	m.ensureAll(core.EnvironmentPrefix)
	m.ensureAll(core.VolumePrefix)
}

// work is one worker: take a resource, reconcile it, until the queue
// closes.
func (m *monitor) work() {
	for {
		r, ok := m.queue.get()
		if !ok {
			return
		}
		m.process(r)
		m.queue.done(r)
	}
}

// process reconciles r once if this daemon leads it or wins it now, and
// queues what follows.
func (m *monitor) process(r core.Resource) {
	e := m.e
	l := m.leading(r)
	if l == nil {
		if !m.exists(r) || m.ledElsewhere(r) {
			m.stopWaiting(r)
			return
		}
		if now, after := m.mayCampaign(r); !now {
			if after > 0 {
				m.queue.addAfter(r, after)
			}
			return
		}
		// The cache showed no other leader as of (at least) this revision:
		// a previous leader's writes, fenced by its key, came before it.
		noLeaderAt := e.cache.revision(e.cfg.LeaderPrefix)
		won, err := e.election.TryCampaign(m.ctx, core.LeaderKey(e.cfg.LeaderPrefix, r.Key()))
		if err != nil {
			if !errors.Is(err, ports.ErrLeaderElsewhere) && m.ctx.Err() == nil {
				e.log.Warn("campaign failed", "resource", r, "err", err)
			}
			return // not ours; the leader-key watch brings it back
		}
		e.log.Debug("leading", "resource", r.Key())
		// The first reconcile reads the store only if the cache of the
		// resource's keys may not hold those writes yet.
		l = &lead{Leadership: won, fresh: e.cache.revision(prefixOf(r)) < noLeaderAt}
		m.mu.Lock()
		m.held[r] = l
		m.mu.Unlock()
		if r.Kind == core.ResourceEnvironment {
			m.wonEnvironment(r.Env, l)
		}
	}
	if isClosed(l.Lost()) {
		m.lost(r, nil)
		return
	}
	if r.Kind == core.ResourceVolume {
		if m.isSettled(r.Volume) && m.handOverDue(r) {
			m.handOver(r, l)
			return
		}
		m.unsettle(r.Volume) // reconciled on its own until it settles again
	}

	// A lost lead stops in-flight backend calls and writes at once.
	ctx, cancel := context.WithCancel(m.ctx)
	defer cancel()
	go func() {
		select {
		case <-l.Lost():
			cancel()
		case <-ctx.Done():
		}
	}()
	var res result
	var err error
	began := e.clock.Now()
	if r.Kind == core.ResourceEnvironment {
		res, err = e.reconcileEnvironment(ctx, l, r.Env, l.fresh)
		e.cfg.Metrics.Reconciled("environment", e.clock.Now().Sub(began), err)
	} else {
		res, err = e.reconcileVolume(ctx, l, r.Volume, l.fresh)
		e.cfg.Metrics.Reconciled("volume", e.clock.Now().Sub(began), err)
	}
	switch {
	case errors.Is(err, ports.ErrNotLeader) || isClosed(l.Lost()):
		m.lost(r, err)
		return
	case m.ctx.Err() != nil:
		return // shutting down: stopAll resigns
	case err != nil:
		e.log.Warn("reconcile failed", "resource", r.Key(), "err", err)
	default:
		l.fresh = false
	}
	if res.finished {
		m.resign(r, l)
		return
	}
	if res.failed {
		if err == nil && m.followsElsewhere(r) {
			// Failed here (its status says so), nothing under way: it
			// retries where its environment's work runs.
			m.handOver(r, l)
			return
		}
		m.queue.retry(r)
		return
	}
	m.queue.forget(r)
	if res.settled != nil {
		if m.handOverDue(r) {
			m.handOver(r, l)
			return
		}
		m.settle(r.Volume, res.settled)
		return
	}
	if r.Kind == core.ResourceEnvironment && err == nil && m.environmentSettled(r.Env) && m.handOverDue(r) {
		m.handOver(r, l)
		return
	}
	m.queue.addAfter(r, res.requeue)
}

// prefixOf is the watched prefix holding r's keys.
func prefixOf(r core.Resource) string {
	if r.Kind == core.ResourceEnvironment {
		return core.EnvironmentPrefix
	}
	return core.VolumePrefix
}

// leading returns this daemon's leadership of r, or nil.
func (m *monitor) leading(r core.Resource) *lead {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.held[r]
}

// lost forgets a leadership that ended under us, and queues the resource
// so a campaign finds out who leads it now.
func (m *monitor) lost(r core.Resource, err error) {
	m.e.log.Info("leadership lost; worker stopped", "resource", r.Key(), "err", err)
	m.mu.Lock()
	delete(m.held, r)
	m.mu.Unlock()
	m.queue.forget(r)
	if r.Kind == core.ResourceVolume {
		m.unsettle(r.Volume)
	}
	if m.ctx.Err() == nil {
		m.queue.add(r)
	}
}

// resign gives up the leadership of a finished resource.
func (m *monitor) resign(r core.Resource, l *lead) {
	m.mu.Lock()
	delete(m.held, r)
	m.mu.Unlock()
	if r.Kind == core.ResourceVolume {
		m.unsettle(r.Volume)
	}
	m.queue.forget(r)
	if r.Kind == core.ResourceEnvironment {
		m.release(r.Env, l) // before another daemon can lead it
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(m.ctx), resignTimeout)
	defer cancel()
	if err := l.Resign(ctx); err != nil {
		m.e.log.Warn("resign failed; the lead expires with the session", "resource", r.Key(), "err", err)
	}
	// Keys may have come back while it finished; look again.
	if m.exists(r) {
		m.queue.add(r)
	}
}

// exists reports whether the cache holds the resource or anything under it.
func (m *monitor) exists(resource core.Resource) bool {
	if _, ok := m.e.cache.get(resource.Key()); ok {
		return true
	}
	return m.e.cache.hasChildren(resource.Key())
}

// ledElsewhere reports whether the cache shows another daemon's leader key.
func (m *monitor) ledElsewhere(resource core.Resource) bool {
	v, ok := m.e.cache.get(core.LeaderKey(m.e.cfg.LeaderPrefix, resource.Key()))
	return ok && string(v) != m.e.election.Identity()
}

// stopAll stops the workers, waits for them, and resigns every
// leadership, a bounded number at once.
func (m *monitor) stopAll() {
	m.queue.close()
	m.cancel()
	m.wg.Wait()
	m.mu.Lock()
	held := m.held
	m.held = map[core.Resource]*lead{}
	m.mu.Unlock()
	// Others stop preferring this daemon first, so they take what it
	// resigns at once.
	ctx, cancel := context.WithTimeout(context.Background(), resignTimeout)
	m.withdraw(ctx)
	cancel()
	// Environments are released while still led (each call bounded), so
	// the next leader's host-bound work never overlaps this host's.
	var wg sync.WaitGroup
	for r, l := range held {
		if r.Kind == core.ResourceEnvironment {
			wg.Add(1)
			go func() {
				defer wg.Done()
				m.release(r.Env, l)
			}()
		}
	}
	wg.Wait()
	ctx, cancel = context.WithTimeout(context.Background(), resignTimeout)
	defer cancel()
	slots := make(chan struct{}, m.e.cfg.Workers)
	for r, l := range held {
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			if err := l.Resign(ctx); err != nil {
				m.e.log.Warn("resign failed; the lead expires with the session", "resource", r.Key(), "err", err)
			}
		}()
	}
	wg.Wait()
	close(m.quit)
	m.leadWG.Wait()
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// isInProgress says the backend's work is under way: not a failure.
func isInProgress(err error) bool { return errors.Is(err, ports.ErrInProgress) }

// under reports whether key is resource itself or below it.
func under(key, resource string) bool {
	return key == resource || strings.HasPrefix(key, resource+"/")
}
