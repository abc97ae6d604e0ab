package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/cdmdr/mirror/core"
	"github.com/cdmdr/mirror/ports"
)

// Engine is one mirrord's work: watchers feeding the cache, monitors
// running a worker per environment and per volume this daemon leads, and
// the snapshot event consumer.
type Engine struct {
	cfg      Config
	kv       ports.KV
	election ports.Election
	bus      ports.Bus
	backends ports.Backends
	events   ports.EventReporter
	clock    ports.Clock
	log      *slog.Logger

	cache    *cache
	monitor  *monitor
	resyncCh []chan struct{}
}

// NewEngine assembles an engine; Run starts it.
func NewEngine(cfg Config, kv ports.KV, election ports.Election, bus ports.Bus, backends ports.Backends,
	events ports.EventReporter, clock ports.Clock, log *slog.Logger) *Engine {
	cfg = cfg.WithDefaults()
	e := &Engine{cfg: cfg, kv: kv, election: election, bus: bus, backends: backends, events: events,
		clock: clock, log: log.With("daemon", election.Identity()), cache: newCache()}
	e.monitor = newMonitor(e)
	return e
}

// prefixes are the watched key spaces. clusters/ holds the storages the
// workers resolve; leader keys tell who leads what.
func (e *Engine) prefixes() []string {
	return []string{core.ClustersPrefix, core.EnvironmentPrefix, core.VolumePrefix, e.cfg.LeaderPrefix}
}

// Run runs the engine until ctx ends, then stops every worker, resigns
// every leadership and returns. It returns an error only if it could not
// start.
func (e *Engine) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var wg sync.WaitGroup
	var synced sync.WaitGroup
	for _, p := range e.prefixes() {
		ch := make(chan struct{}, 1)
		e.resyncCh = append(e.resyncCh, ch)
		wg.Add(1)
		synced.Add(1)
		go func() {
			defer wg.Done()
			e.watchPrefix(ctx, p, ch, synced.Done)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		e.resyncLoop(ctx)
	}()

	// Workers read the cache, and snapshot events are matched against the
	// cached volumes: start both only once the cache is filled, or a
	// volume would find its environment missing and early events no
	// volume.
	synced.Wait()
	var subs []ports.Subscription
	if ctx.Err() == nil {
		e.monitor.start()
		var err error
		// A subscription failing because ctx ended is a stop during start,
		// not a failure to start: shut down as usual.
		if subs, err = e.subscribeSnapshots(ctx); err != nil && ctx.Err() == nil {
			cancel()
			wg.Wait()
			e.monitor.stopAll()
			return err
		}
		e.log.Info("engine started", "resync_interval", e.cfg.ResyncInterval, "leader_prefix", e.cfg.LeaderPrefix)
	}

	<-ctx.Done()
	for _, s := range subs {
		if err := s.Stop(); err != nil {
			e.log.Warn("snapshot subscription did not stop cleanly", "err", err)
		}
	}
	wg.Wait()
	e.monitor.stopAll()
	e.log.Info("engine stopped")
	return nil
}

// resyncLoop asks every watcher to list its prefix again each interval.
func (e *Engine) resyncLoop(ctx context.Context) {
	for {
		t := e.clock.NewTimer(e.cfg.ResyncInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
		for _, ch := range e.resyncCh {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
}

// watchPrefix keeps the cache of one prefix: list, then watch from the
// listing's revision until the watch ends (compaction, failure) or a
// resync is due, then list again. Listing replaces the cache, so events a
// watch missed are found by the next listing.
func (e *Engine) watchPrefix(ctx context.Context, prefix string, resync <-chan struct{}, synced func()) {
	log := e.log.With("prefix", prefix)
	attempt := 0
	var once sync.Once
	defer once.Do(synced)
	for ctx.Err() == nil {
		kvs, rev, err := e.kv.List(ctx, prefix)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			attempt++
			log.Warn("listing failed; retrying", "err", err, "attempt", attempt)
			if !e.sleep(ctx, e.cfg.Backoff.Delay(attempt)) {
				return
			}
			continue
		}
		attempt = 0
		for _, ev := range e.cache.replace(prefix, kvs, rev) {
			e.dispatch(ctx, ev)
		}
		e.monitor.ensureAll(prefix)
		once.Do(synced)

		wctx, stop := context.WithCancel(ctx)
		events := e.kv.Watch(wctx, prefix, rev+1)
	watching:
		for {
			select {
			case <-ctx.Done():
				stop()
				return
			case <-resync:
				break watching
			case ev, ok := <-events:
				if !ok {
					break watching
				}
				if ev.Err != nil {
					if errors.Is(ev.Err, ports.ErrCompacted) {
						log.Info("watch revision compacted; listing again")
					} else {
						log.Warn("watch ended; listing again", "err", ev.Err)
					}
					break watching
				}
				e.cache.apply(prefix, ev)
				e.dispatch(ctx, ev)
			}
		}
		stop()
		for range events { // drain so the watcher's goroutine can exit
		}
	}
}

// dispatch tells the monitor which environment or volume a changed key
// concerns, parsing the key once.
func (e *Engine) dispatch(ctx context.Context, ev ports.WatchEvent) {
	key := ev.KV.Key
	if leaderOf, ok := strings.CutPrefix(key, e.cfg.LeaderPrefix); ok {
		if e.isMemberKey(key) {
			e.monitor.membersChanged()
			return
		}
		res, err := core.ParseResource(leaderOf)
		if err != nil {
			return
		}
		if ev.Type == ports.EventDelete {
			e.monitor.touch(res) // leaderless: campaign
		}
		if res.Kind == core.ResourceEnvironment {
			e.monitor.markDirty() // volumes following it may have to move
		}
		return
	}
	pk, err := core.ParseKey(key)
	if err != nil {
		// Other cluster data under clusters/ is not ours; a key the DR
		// manager wrote in a form mirrord does not know has no status
		// to say so (docs/contract.md §2.1), so an event does.
		if ev.Type == ports.EventPut && (strings.HasPrefix(key, core.EnvironmentPrefix) || strings.HasPrefix(key, core.VolumePrefix)) {
			e.log.Warn("key ignored", "err", err)
			e.report(ctx, ports.LevelWarn, core.BadKeyCode(), key, "ignored: %v: none of the key forms mirrord reads; delete it or write it under its proper key", err)
		}
		return
	}
	if pk.Kind == core.KindStorage || pk.Kind == core.KindStorageMetadata {
		e.touchEnvironmentsOf(pk.Storage)
		return
	}
	res, ok := pk.Resource()
	if !ok {
		return
	}
	switch pk.Kind {
	case core.KindEnvironmentStatus:
		e.monitor.touchUnlessLed(res)
		for _, v := range e.volumesIn(pk.Env) {
			e.monitor.touch(v) // waiting volumes move on
		}
	case core.KindVolumeStatus, core.KindSnapshotStatus:
		e.monitor.touchUnlessLed(res)
	case core.KindVolume:
		e.monitor.touch(res)
		if ev.Type == ports.EventDelete {
			e.monitor.touch(core.EnvironmentResource(pk.Env)) // a stopping environment may go on
		}
	default:
		e.monitor.touch(res)
	}
}

// touchEnvironmentsOf nudges every environment using storage s, and its
// volumes, so a fixed storage record heals them at once.
func (e *Engine) touchEnvironmentsOf(s core.StorageRef) {
	for _, kv := range e.cache.list(core.EnvironmentPrefix) {
		pk, err := core.ParseKey(kv.Key)
		if err != nil || pk.Kind != core.KindEnvironment {
			continue
		}
		spec, err := core.DecodeEnvironment(pk.Env, kv.Value)
		if err == nil && (spec.Source == s || spec.Target == s) {
			e.monitor.touch(core.EnvironmentResource(pk.Env))
			for _, v := range e.volumesIn(pk.Env) {
				e.monitor.touch(v)
			}
		}
	}
}

// sleep waits d on the engine's clock; false if ctx ended first.
func (e *Engine) sleep(ctx context.Context, d time.Duration) bool {
	t := e.clock.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C():
		return true
	}
}

// report sends an event and never fails.
func (e *Engine) report(ctx context.Context, level ports.EventLevel, code, key, format string, args ...any) {
	e.events.Report(context.WithoutCancel(ctx), ports.Event{Code: code, Level: level, Key: key,
		Message: fmt.Sprintf(format, args...), Time: e.clock.Now().UTC()})
}
