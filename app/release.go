package app

import (
	"context"
	"sync"
	"time"

	"github.com/cdmdr/mirror/core"
	"github.com/cdmdr/mirror/ports"
)

// releaseTimeout bounds one ReleaseEnvironment call: a stop never waits
// longer for a plugin.
const releaseTimeout = 10 * time.Second

// wonEnvironment follows a leadership of environment id just won: the
// backend is told when it ends (resigned, lost, shut down), a release of
// an earlier lead still under way is waited for (it must not stop what
// this lead starts), and the environment's leaderless volumes that
// follow it are queued at once.
func (m *monitor) wonEnvironment(id core.EnvironmentID, l *lead) {
	if env, backend, err := m.releaseTarget(id); err == nil {
		l.env, l.backend = env, backend
	}
	m.mu.Lock()
	pending := m.releasing[id]
	m.mu.Unlock()
	if pending != nil {
		select {
		case <-pending:
		case <-m.ctx.Done():
		}
	}
	m.leadWG.Add(1)
	go func() {
		defer m.leadWG.Done()
		select {
		case <-l.Lost():
		case <-m.quit:
		}
		m.release(id, l)
	}()
	if m.alone() {
		return
	}
	if follow, err := m.follows(m.ctx, id); err == nil && follow {
		for _, v := range m.e.volumesIn(id) {
			if m.leaderOf(v) == "" {
				m.touch(v)
			}
		}
	}
}

// release tells the backend, once per lead, that this daemon no longer
// leads environment id (lead l ends: before a resign, or after a loss),
// unless it leads it again already. Failures are logged: the call is
// bounded and never blocks a stop for long.
func (m *monitor) release(id core.EnvironmentID, l *lead) {
	l.released.Do(func() { m.releaseNow(id, l) })
}

func (m *monitor) releaseNow(id core.EnvironmentID, l *lead) {
	r := core.EnvironmentResource(id)
	done := make(chan struct{})
	m.mu.Lock()
	if cur := m.held[r]; cur != nil && cur != l && !isClosed(cur.Lost()) {
		m.mu.Unlock()
		return // led here again: its host-bound work goes on
	}
	m.releasing[id] = done
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		if m.releasing[id] == done {
			delete(m.releasing, id)
		}
		m.mu.Unlock()
		close(done)
	}()
	m.markDirty() // volumes following it go to its next leader

	env, backend, err := m.releaseTarget(id)
	if err != nil {
		if l.backend == nil {
			m.e.log.Warn("cannot release environment: its backend is unknown", "environment", r.Key(), "err", err)
			return
		}
		env, backend = l.env, l.backend // as resolved when won (the records may be gone)
	}
	m.callRelease(context.Background(), r, env, backend)
}

// callRelease asks the backend to release env, bounded by releaseTimeout;
// a failure is logged, never returned: the call never blocks a stop.
func (m *monitor) callRelease(ctx context.Context, r core.Resource, env ports.Environment, backend ports.StorageBackend) {
	ctx, cancel := context.WithTimeout(ctx, releaseTimeout)
	defer cancel()
	if err := backend.ReleaseEnvironment(ctx, env); err != nil {
		m.e.log.Warn("releasing environment failed", "environment", r.Key(), "err", err)
		return
	}
	m.e.log.Info("environment released", "environment", r.Key())
}

// releaseTarget resolves environment id and its backend from the cache.
func (m *monitor) releaseTarget(id core.EnvironmentID) (ports.Environment, ports.StorageBackend, error) {
	data, ok := m.e.cache.get(core.EnvironmentKey(id))
	if !ok {
		return ports.Environment{}, nil, ports.ErrNotFound
	}
	spec, err := core.DecodeEnvironment(id, data)
	if err != nil {
		return ports.Environment{}, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), infoTimeout)
	defer cancel()
	return m.e.resolve(ctx, id, spec.Source, spec.Target)
}

// releaseLeftovers tells the backend, before this daemon leads anything,
// that it leads no environment yet: host-bound work a killed earlier run
// of it left behind on this host (Ceph: an orphaned rbd-mirror, which
// would rejoin the pool behind the next leader's back) stops, and an
// environment won later starts it afresh. Only backends whose volumes
// follow their environment run such work; a few environments are
// released at once.
func (m *monitor) releaseLeftovers() {
	var wg sync.WaitGroup
	slots := make(chan struct{}, 16)
	for _, id := range m.e.cache.environments() {
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-slots; wg.Done() }()
			if follow, err := m.follows(m.ctx, id); err != nil || !follow {
				return
			}
			env, backend, err := m.releaseTarget(id)
			if err != nil {
				return
			}
			m.callRelease(m.ctx, core.EnvironmentResource(id), env, backend)
		}()
	}
	wg.Wait()
}
