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
	workers map[string]*worker
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
	return &monitor{e: e, workers: make(map[string]*worker), ctx: ctx, cancel: cancel,
		campaigns: make(chan struct{}, e.cfg.CampaignConcurrency)}
}

// touch nudges the worker of resource (an environment or volume key), or
// starts one if the resource exists and nobody else leads it.
func (m *monitor) touch(resource string) {
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
func (m *monitor) touchUnlessLed(resource string) {
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
	var resources []string
	switch prefix {
	case core.EnvironmentPrefix, core.VolumePrefix:
		for _, kv := range m.e.cache.list(prefix) {
			if pk, err := core.ParseKey(kv.Key); err == nil && (pk.Kind == core.KindEnvironment || pk.Kind == core.KindVolume) {
				resources = append(resources, kv.Key)
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
func (m *monitor) exists(resource string) bool {
	if _, ok := m.e.cache.get(resource); ok {
		return true
	}
	return m.e.cache.hasChildren(resource)
}

// ledElsewhere reports whether the cache shows another daemon's leader key.
func (m *monitor) ledElsewhere(resource string) bool {
	v, ok := m.e.cache.get(core.LeaderKey(m.e.cfg.LeaderPrefix, resource))
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
	resource string
	kind     core.KeyKind
	wake     chan struct{}

	mu   sync.Mutex
	lost bool
	done bool
}

func newWorker(e *Engine, resource string) *worker {
	kind := core.KindUnknown
	if pk, err := core.ParseKey(resource); err == nil {
		kind = pk.Kind
	}
	return &worker{e: e, resource: resource, kind: kind, wake: make(chan struct{}, 1)}
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

// result is what one reconcile asks of its worker.
type result struct {
	// requeue is when to reconcile again if nothing else happens.
	requeue time.Duration
	// finished: the resource's keys are gone; resign and exit.
	finished bool
}

// reconciler is one resource's reconcile logic, with whatever it keeps
// between reconciles while leading.
type reconciler interface {
	reconcile(ctx context.Context, lead ports.Leadership) (result, error)
}

// run campaigns for the resource, then reconciles it until the lead is
// lost, the resource is finished, or ctx ends (then it resigns).
func (w *worker) run(ctx context.Context, campaigns chan struct{}) {
	leaderKey := core.LeaderKey(w.e.cfg.LeaderPrefix, w.resource)
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
	log := w.e.log.With("resource", w.resource)
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

	var r reconciler
	switch w.kind {
	case core.KindEnvironment:
		r = newEnvironmentReconciler(w.e, w.resource)
	default:
		r = newVolumeReconciler(w.e, w.resource)
	}
	for {
		res, err := r.reconcile(lctx, lead)
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
		}
		if res.finished {
			w.mu.Lock()
			w.done = true
			w.mu.Unlock()
			break
		}
		t := w.e.clock.NewTimer(res.requeue)
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

// under reports whether key is resource itself or below it.
func under(key, resource string) bool {
	return key == resource || strings.HasPrefix(key, resource+"/")
}
