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

// monitor runs one worker per environment or volume this daemon leads,
// the original's environment and volume monitors in one: a touched
// resource with a worker gets a nudge; one without a worker gets a worker
// that campaigns for it first.
type monitor struct {
	e       *Engine
	mu      sync.Mutex
	workers map[core.Resource]*worker
	stopped bool
	// open is false until every watched prefix was listed once: a worker
	// started earlier would find its environment or storages missing from
	// the cache and write a false error.
	open   bool
	wg     sync.WaitGroup
	ctx    context.Context
	cancel context.CancelFunc
	// campaigns bounds simultaneous campaigns, so a start with thousands
	// of volumes does not open thousands of store requests at once.
	campaigns chan struct{}
}

func newMonitor(e *Engine) *monitor {
	ctx, cancel := context.WithCancel(context.Background())
	return &monitor{e: e, workers: make(map[core.Resource]*worker), ctx: ctx, cancel: cancel,
		campaigns: make(chan struct{}, e.cfg.CampaignConcurrency)}
}

// touch nudges the worker of resource, or starts one if the resource
// exists and nobody else leads it.
func (m *monitor) touch(resource core.Resource) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.stopped || !m.open {
		return
	}
	if w, ok := m.workers[resource]; ok {
		w.nudge()
		return
	}
	if !m.exists(resource) || m.ledElsewhere(resource) {
		return
	}
	w := newWorker(m.e, resource)
	m.workers[resource] = w
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		w.run(m.ctx, m.campaigns)
		m.mu.Lock()
		if m.workers[resource] == w {
			delete(m.workers, resource)
		}
		m.mu.Unlock()
		// Keys may have changed while the worker was leaving; look again.
		if w.lostLeadership() {
			return
		}
		if m.exists(resource) && !w.finished() {
			m.touch(resource)
		}
	}()
}

// touchUnlessLed is touch for a change the resource's own worker made
// (statuses are written by the leader only): a local worker needs no
// nudge for its own write, but a resource nobody here leads still gets
// campaigned for.
func (m *monitor) touchUnlessLed(resource core.Resource) {
	m.mu.Lock()
	_, led := m.workers[resource]
	m.mu.Unlock()
	if !led {
		m.touch(resource)
	}
}

// ensureAll touches every environment and volume under prefix (after a
// listing), and every resource of every listing of the leader prefix, so
// leaderless resources are campaigned for.
func (m *monitor) ensureAll(prefix string) {
	var resources []core.Resource
	switch prefix {
	case core.EnvironmentPrefix, core.VolumePrefix:
		for _, kv := range m.e.cache.list(prefix) {
			if r, err := core.ParseResource(kv.Key); err == nil {
				resources = append(resources, r)
			}
		}
	case m.e.cfg.LeaderPrefix:
		m.ensureAll(core.EnvironmentPrefix)
		m.ensureAll(core.VolumePrefix)
		return
	}
	for _, r := range resources {
		m.touch(r)
	}
}

// start lets touches start workers, once the cache holds every prefix,
// and touches every environment and volume.
func (m *monitor) start() {
	m.mu.Lock()
	m.open = true
	m.mu.Unlock()
	m.ensureAll(core.EnvironmentPrefix)
	m.ensureAll(core.VolumePrefix)
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

// stopAll stops every worker and waits for them; workers resign.
func (m *monitor) stopAll() {
	m.mu.Lock()
	m.stopped = true
	m.mu.Unlock()
	m.cancel()
	m.wg.Wait()
}

// worker drives one environment or volume while this daemon leads it.
type worker struct {
	e        *Engine
	resource core.Resource
	wake     chan struct{}

	mu   sync.Mutex
	lost bool
	done bool
}

func newWorker(e *Engine, resource core.Resource) *worker {
	return &worker{e: e, resource: resource, wake: make(chan struct{}, 1)}
}

func (w *worker) nudge() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

func (w *worker) lostLeadership() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lost
}

func (w *worker) finished() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.done
}

// reconcile runs the resource's reconciler once.
func (w *worker) reconcile(ctx context.Context, lead ports.Leadership, fresh bool) (result, error) {
	if w.resource.Kind == core.ResourceEnvironment {
		return w.e.reconcileEnvironment(ctx, lead, w.resource.Env, fresh)
	}
	return w.e.reconcileVolume(ctx, lead, w.resource.Volume, fresh)
}

// run campaigns for the resource, then reconciles it until the lead is
// lost, the resource is finished, or ctx ends (then it resigns).
func (w *worker) run(ctx context.Context, campaigns chan struct{}) {
	leaderKey := core.LeaderKey(w.e.cfg.LeaderPrefix, w.resource.Key())
	select {
	case campaigns <- struct{}{}:
	case <-ctx.Done():
		return
	}
	lead, err := w.e.election.TryCampaign(ctx, leaderKey)
	<-campaigns
	if err != nil {
		if !errors.Is(err, ports.ErrLeaderElsewhere) && ctx.Err() == nil {
			w.e.log.Warn("campaign failed", "resource", w.resource, "err", err)
		}
		w.mu.Lock()
		w.lost = true // not ours; the leader-key watch brings us back
		w.mu.Unlock()
		return
	}
	log := w.e.log.With("resource", w.resource.Key())
	log.Debug("leading")

	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-lead.Lost():
			cancel() // stop in-flight backend calls and writes at once
		case <-lctx.Done():
		}
	}()

	// The first reconcile after winning reads the store: the previous
	// leader's last writes may not have reached the cache yet.
	fresh, attempt := true, 0
	for {
		res, err := w.reconcile(lctx, lead, fresh)
		if errors.Is(err, ports.ErrNotLeader) || isClosed(lead.Lost()) {
			log.Info("leadership lost; worker stopped", "err", err)
			w.mu.Lock()
			w.lost = true
			w.mu.Unlock()
			return
		}
		if ctx.Err() != nil {
			break
		}
		if err != nil {
			log.Warn("reconcile failed", "err", err)
		} else {
			fresh = false
		}
		if res.finished {
			w.mu.Lock()
			w.done = true
			w.mu.Unlock()
			break
		}
		wait := res.requeue
		if res.failed {
			attempt++
			wait = w.e.cfg.Backoff.Delay(attempt)
		} else {
			attempt = 0
		}
		t := w.e.clock.NewTimer(wait)
		select {
		case <-w.wake:
		case <-t.C():
		case <-lead.Lost():
		case <-ctx.Done():
		}
		t.Stop()
	}
	rctx, rcancel := context.WithTimeout(context.WithoutCancel(ctx), resignTimeout)
	defer rcancel()
	if err := lead.Resign(rctx); err != nil {
		log.Warn("resign failed; the lead expires with the session", "err", err)
	}
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
