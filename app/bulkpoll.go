package app

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/cdmdr/mirror/core"
	"github.com/cdmdr/mirror/ports"
)

// bulkPollTick paces the bulk poll: at most one backend call per
// environment per tick.
const bulkPollTick = time.Second

// report is a backend's answer about one volume, kept for the reconcile
// the bulk poll queued.
type report struct {
	obs ports.VolumeReplication
	at  time.Time
}

// settledVolume is what the bulk poll needs of a settled volume, decoded
// by the reconcile that settled it. It stays true while the volume is in
// the settled set: any change of its keys, its environment or storages
// queues the volume, whose reconcile takes it out of the set first.
type settledVolume struct {
	mv     core.MirrorVolume
	op     core.Operation
	status core.Status
}

// sweep is the bulk poll's progress through one environment's settled
// volumes.
type sweep struct {
	next  time.Time // when the next sweep may start
	order []core.VolumeRef
	i     int
}

// settle hands a settled volume to the bulk poll.
func (m *monitor) settle(ref core.VolumeRef, v *settledVolume) {
	m.mu.Lock()
	defer m.mu.Unlock()
	vols := m.settled[ref.Env]
	if vols == nil {
		vols = map[core.VolumeRef]*settledVolume{}
		m.settled[ref.Env] = vols
	}
	vols[ref] = v
}

// isSettled says the bulk poll watches ref.
func (m *monitor) isSettled(ref core.VolumeRef) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.settled[ref.Env][ref]
	return ok
}

// environmentSettled says environment id is mirroring with nothing under
// way, as the cache shows its status.
func (m *monitor) environmentSettled(id core.EnvironmentID) bool {
	data, ok := m.e.cache.get(core.EnvironmentStatusKey(id))
	if !ok {
		return false
	}
	st, err := core.DecodeStatus(data)
	return err == nil && st.StateCode == core.StateMirroring && st.ErrorReason == nil
}

// unsettle takes a volume back from the bulk poll: it is reconciled on
// its own again.
func (m *monitor) unsettle(ref core.VolumeRef) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if vols := m.settled[ref.Env]; vols != nil {
		delete(vols, ref)
		if len(vols) == 0 {
			delete(m.settled, ref.Env)
		}
	}
}

// takeReport returns the bulk poll's report on ref, if a recent one waits.
func (m *monitor) takeReport(ref core.VolumeRef) (ports.VolumeReplication, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r, ok := m.reports[ref]
	delete(m.reports, ref)
	if !ok || m.e.clock.Now().Sub(r.at) > m.e.cfg.PollInterval {
		return ports.VolumeReplication{}, false
	}
	return r.obs, true
}

// runBulkPoll looks at the settled volumes this daemon leads without a
// call per volume: each environment's are swept every PollInterval, with
// at most one bulk call per environment per tick, and only the volumes
// whose plan would now do something are queued (with the report, so
// their reconcile does not ask again).
func (m *monitor) runBulkPoll(ctx context.Context) {
	sweeps := map[core.EnvironmentID]*sweep{}
	for {
		t := m.e.clock.NewTimer(bulkPollTick)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
		now := m.e.clock.Now()
		m.mu.Lock()
		envs := slices.Collect(maps.Keys(m.settled))
		m.mu.Unlock()
		for id := range sweeps {
			if !slices.Contains(envs, id) {
				delete(sweeps, id)
			}
		}
		for _, id := range envs {
			sw := sweeps[id]
			if sw == nil {
				sw = &sweep{next: now}
				sweeps[id] = sw
			}
			if sw.i >= len(sw.order) {
				if now.Before(sw.next) {
					continue
				}
				m.mu.Lock()
				sw.order = slices.SortedFunc(maps.Keys(m.settled[id]), func(a, b core.VolumeRef) int {
					return cmp.Compare(a.VolumeID, b.VolumeID)
				})
				m.mu.Unlock()
				sw.i, sw.next = 0, now.Add(m.e.cfg.PollInterval)
			}
			end := min(sw.i+ports.MaxVolumeStatuses, len(sw.order))
			m.pollChunk(ctx, id, sw.order[sw.i:end])
			sw.i = end
		}
	}
}

// pollChunk asks the backend about refs (all of environment id) at once
// and queues those whose plan would now act or write.
func (m *monitor) pollChunk(ctx context.Context, id core.EnvironmentID, refs []core.VolumeRef) {
	e := m.e
	// A hand-over of a volume this call asks about waits for its end.
	done := make(chan struct{})
	defer func() {
		m.mu.Lock()
		for _, ref := range refs {
			if m.polling[ref] == done {
				delete(m.polling, ref)
			}
		}
		m.mu.Unlock()
		close(done)
	}()
	type polled struct {
		ref core.VolumeRef
		in  core.VolumeInput
	}
	var (
		vols    []ports.Volume
		inputs  []polled
		env     ports.Environment
		backend ports.StorageBackend
	)
	envState := e.environmentState(id)
	for _, ref := range refs {
		r := core.VolumeResource(ref)
		m.mu.Lock()
		l := m.held[r]
		sv := m.settled[id][ref]
		if sv != nil && l != nil && !isClosed(l.Lost()) {
			m.polling[ref] = done
		}
		m.mu.Unlock()
		if sv == nil {
			continue // queued since the sweep began
		}
		if l == nil || isClosed(l.Lost()) {
			m.unsettle(ref)
			if l != nil {
				m.lost(r, nil)
			}
			continue
		}
		if backend == nil {
			var err error
			if env, backend, err = e.resolve(ctx, id, sv.mv.Source, sv.mv.Target); err != nil {
				m.unsettle(ref)
				m.queue.add(r) // its reconcile says what is wrong
				continue
			}
		}
		status := sv.status
		vols = append(vols, core.BackendVolume(env, sv.mv))
		inputs = append(inputs, polled{ref, core.VolumeInput{Operation: sv.op, Status: &status, EnvState: envState}})
	}
	if len(vols) == 0 {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, e.cfg.ActionTimeout)
	obs, err := askStatuses(cctx, backend, env, vols)
	cancel()
	if err != nil {
		if ctx.Err() == nil {
			e.log.Warn("bulk volume status failed; each volume is looked at on its own", "environment", core.EnvironmentKey(id), "volumes", len(vols), "err", err)
			for _, p := range inputs {
				m.unsettle(p.ref)
				m.queue.add(core.VolumeResource(p.ref))
			}
		}
		return
	}
	now := e.clock.Now()
	for i, p := range inputs {
		in := p.in
		in.Observed = &obs[i]
		if !m.wouldChange(in) {
			continue
		}
		m.mu.Lock()
		m.reports[p.ref] = report{obs: obs[i], at: now}
		m.mu.Unlock()
		m.unsettle(p.ref)
		m.queue.add(core.VolumeResource(p.ref))
	}
}

// wouldChange says a reconcile with this input would act or write.
func (m *monitor) wouldChange(in core.VolumeInput) bool {
	plan := core.PlanVolume(in)
	if plan.Observe || plan.Action != core.ActNone || plan.OnSuccess.Finish || plan.OnSuccess.Write != nil {
		return true
	}
	if plan.Write == nil {
		return false
	}
	if in.Status == nil {
		return true
	}
	w := *plan.Write
	w.Owner = in.Status.Owner // an owner alone is not written (writeStatus)
	return !in.Status.Same(w)
}

// askStatuses asks the backend about vols at once.
func askStatuses(ctx context.Context, b ports.StorageBackend, env ports.Environment, vols []ports.Volume) ([]ports.VolumeReplication, error) {
	obs, err := b.VolumeStatuses(ctx, env, vols)
	if err == nil && len(obs) != len(vols) {
		err = fmt.Errorf("bulk volume status answered for %d volumes, %d were asked", len(obs), len(vols))
	}
	return obs, err
}
