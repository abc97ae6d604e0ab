package app

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/cdmdr/mirror/core"
	"github.com/cdmdr/mirror/ports"
)

// volumeReconciler drives one mirror volume while this daemon leads it.
type volumeReconciler struct {
	key string
	ref core.VolumeRef

	statusWriter
	loaded bool
	// storeRev is the revision of the last read from the store: a cache
	// older than that would show what we already saw change.
	storeRev int64
	// removedRev is a revision at or after our last snapshot removal: the
	// keys left are older than the removal, so they cannot tell whether
	// the cache has seen it.
	removedRev int64
	snaps      map[uint64]*core.Status
}

func newVolumeReconciler(e *Engine, key string) *volumeReconciler {
	pk, _ := core.ParseKey(key)
	return &volumeReconciler{key: key, ref: pk.Volume, snaps: map[uint64]*core.Status{},
		statusWriter: statusWriter{e: e, resource: key, statusKey: core.VolumeStatusKey(pk.Volume), subject: "volume", log: e.log.With("volume", key)}}
}

// volumeView is a volume's keys at one moment.
type volumeView struct {
	volume, operation []byte
	status            *core.Status
	snapshots         map[uint64]snapshotView
}

type snapshotView struct {
	record []byte
	status *core.Status
}

// load reads the volume's keys: from the store on the first reconcile
// after winning the lead (the cache may lag behind the previous leader's
// last writes) and again whenever the cache is older than that read (or
// after we removed a snapshot), from the cache otherwise, with our own
// status writes taking precedence over the cache's copy.
func (r *volumeReconciler) load(ctx context.Context) (volumeView, error) {
	var kvs []ports.KeyValue
	if r.loaded && r.e.cache.revision(core.VolumePrefix) < max(r.storeRev, r.removedRev) {
		r.loaded = false // the cache lags behind the store: read the store again
	}
	if !r.loaded {
		all, _, err := r.e.kv.List(ctx, r.key)
		if err != nil {
			return volumeView{}, fmt.Errorf("read volume keys: %w", err)
		}
		// The floor is the newest revision among the volume's own keys,
		// not the listing's: the volume prefix's watch reaches that one,
		// while the store's revision moves with every key of every prefix.
		r.storeRev = 0
		for _, kv := range all {
			if under(kv.Key, r.key) {
				kvs = append(kvs, kv)
				r.storeRev = max(r.storeRev, kv.ModRevision)
			}
		}
	} else {
		if v, ok := r.e.cache.get(r.key); ok {
			kvs = append(kvs, ports.KeyValue{Key: r.key, Value: v})
		}
		kvs = append(kvs, r.e.cache.under(r.key)...)
	}
	v := volumeView{snapshots: map[uint64]snapshotView{}}
	for _, kv := range kvs {
		pk, err := core.ParseKey(kv.Key)
		if err != nil || pk.Volume != r.ref {
			continue
		}
		switch pk.Kind {
		case core.KindVolume:
			v.volume = kv.Value
		case core.KindVolumeOperation:
			v.operation = kv.Value
		case core.KindVolumeStatus:
			// A status that is not one of ours (garbage, an unknown state)
			// counts as none: the operation starts over from what the
			// backend reports, as SPEC's "[*]" entries allow.
			if st, err := core.DecodeStatus(kv.Value); err == nil && core.ValidVolumeState(st.StateCode) {
				v.status = &st
			}
		case core.KindSnapshot:
			s := v.snapshots[pk.Snapshot.SnapshotID]
			s.record = kv.Value
			v.snapshots[pk.Snapshot.SnapshotID] = s
		case core.KindSnapshotStatus:
			s := v.snapshots[pk.Snapshot.SnapshotID]
			if st, err := core.DecodeStatus(kv.Value); err == nil {
				s.status = &st
			}
			v.snapshots[pk.Snapshot.SnapshotID] = s
		}
	}
	if r.loaded && v.volume == nil {
		// The record is gone from the cache, which applies a multi-key
		// delete one key at a time: ask the store, which changes all at
		// once, and drop our copy of a status deleted with the record.
		r.loaded = false
		return r.load(ctx)
	}
	if !r.loaded {
		r.loaded = true
		r.status = v.status
		for id, s := range v.snapshots {
			r.snaps[id] = s.status
		}
	}
	v.status = r.status
	for id, s := range v.snapshots {
		s.status = r.snaps[id]
		v.snapshots[id] = s
	}
	return v, nil
}

func (r *volumeReconciler) reconcile(ctx context.Context, lead ports.Leadership) (result, error) {
	v, err := r.load(ctx)
	if err != nil {
		return r.retry(), err
	}
	if v.volume == nil && v.operation == nil && v.status == nil && len(v.snapshots) == 0 {
		return result{finished: true}, nil // gone: nothing to lead
	}
	if v.operation == nil {
		return result{requeue: r.e.cfg.PollInterval}, nil // nothing asked yet
	}
	op, err := core.DecodeVolumeOperation(v.operation)
	if err != nil {
		return r.badInput(ctx, lead, "decode_operation", fmt.Errorf("%s: %w", core.VolumeOperationKey(r.ref), err))
	}
	if op == core.OpDestroy {
		return r.destroy(ctx, lead, v)
	}
	if v.volume == nil {
		return r.badInput(ctx, lead, "get_volume", fmt.Errorf("operation %s names volume %s, which does not exist: %w", op, r.key, ports.ErrNotFound))
	}
	mv, err := core.DecodeMirrorVolume(r.ref, v.volume)
	if err != nil {
		return r.badInput(ctx, lead, "decode_volume", err)
	}
	envData, ok := r.e.cache.get(core.EnvironmentKey(r.ref.Env))
	if !ok {
		return r.badInput(ctx, lead, "get_environment", fmt.Errorf("environment %s of this volume does not exist: %w", core.EnvironmentKey(r.ref.Env), ports.ErrNotFound))
	}
	if _, err := core.DecodeEnvironment(r.ref.Env, envData); err != nil {
		return r.badInput(ctx, lead, "get_environment", err)
	}
	env, backend, err := r.e.resolve(ctx, r.ref.Env, mv.Source, mv.Target)
	if err != nil {
		return r.badInput(ctx, lead, stepOf(err, "create_storage"), err)
	}
	vol := core.BackendVolume(env, mv)

	in := core.VolumeInput{Operation: op, Status: v.status, EnvState: r.e.environmentState(r.ref.Env)}
	if core.NeedsObservation(in) {
		octx, cancel := context.WithTimeout(ctx, r.e.cfg.ActionTimeout)
		obs, err := backend.VolumeStatus(octx, vol)
		cancel()
		if err != nil {
			in.ObserveErr = err
		} else {
			in.Observed = &obs
		}
	}
	plan := core.PlanVolume(in)
	out, failed, err := r.carryOut(ctx, lead, step{
		write: plan.Write, action: string(plan.Action), onSuccess: plan.OnSuccess,
		run:       func(ctx context.Context) error { return r.act(ctx, backend, vol, plan.Action) },
		onFailure: func(err error) core.Outcome { return in.Failed(plan, err) },
	})
	if err != nil {
		return r.retry(), err
	}
	if plan.Action == core.ActNone {
		out.Finish = plan.Finish
	}
	if out.Finish {
		return r.finish(ctx, lead, op, nil)
	}
	r.reconcileSnapshots(ctx, lead, backend, vol, v)

	if failed || (r.status != nil && r.status.StateCode == core.StateError) || in.ObserveErr != nil {
		return r.retry(), nil
	}
	return r.settled(), nil
}

// act runs one backend action, bounded by the action timeout.
func (r *volumeReconciler) act(ctx context.Context, b ports.StorageBackend, vol ports.Volume, a core.VolumeAction) error {
	ctx, cancel := context.WithTimeout(ctx, r.e.cfg.ActionTimeout)
	defer cancel()
	switch a {
	case core.ActStart:
		return b.StartVolume(ctx, vol)
	case core.ActResume:
		return b.ResumeVolume(ctx, vol)
	case core.ActPause:
		return b.PauseVolume(ctx, vol)
	case core.ActStop:
		return b.StopVolume(ctx, vol)
	case core.ActDeleteTarget:
		return b.DeleteTarget(ctx, vol)
	}
	return fmt.Errorf("action %q is not a volume action", a)
}

// destroy is the forced teardown: best effort on the backend, bounded in
// time, and the keys are removed whatever happened (SPEC §4 Decision).
func (r *volumeReconciler) destroy(ctx context.Context, lead ports.Leadership, v volumeView) (result, error) {
	var leftovers []string
	if v.volume == nil {
		leftovers = append(leftovers, "the backend was not called: the mirror volume record does not exist")
	} else if mv, err := core.DecodeMirrorVolume(r.ref, v.volume); err != nil {
		leftovers = append(leftovers, "the backend was not called: "+err.Error())
	} else if env, backend, err := r.e.resolve(ctx, r.ref.Env, mv.Source, mv.Target); err != nil {
		leftovers = append(leftovers, "the backend was not called: "+err.Error())
	} else {
		dctx, cancel := context.WithTimeout(ctx, r.e.cfg.DestroyTimeout)
		rep, err := backend.DestroyVolume(dctx, core.BackendVolume(env, mv))
		cancel()
		if ctx.Err() != nil {
			return result{}, ctx.Err()
		}
		leftovers = append(leftovers, rep.Leftovers...)
		if err != nil {
			leftovers = append(leftovers, "destroy failed: "+err.Error())
		}
	}
	return r.finish(ctx, lead, core.OpDestroy, leftovers)
}

// finish deletes the volume's keys (its record, operation, status and
// snapshot records), the end of stop, stop_and_delete and destroy.
func (r *volumeReconciler) finish(ctx context.Context, lead ports.Leadership, op core.Operation, leftovers []string) (result, error) {
	if err := lead.Delete(ctx, []string{r.key}, []string{core.VolumeChildrenPrefix(r.ref)}); err != nil {
		return r.retry(), fmt.Errorf("delete volume keys: %w", err)
	}
	if len(leftovers) > 0 {
		msg := fmt.Sprintf("volume %s destroyed; left behind: %s", r.key, strings.Join(leftovers, "; "))
		r.log.Warn("volume destroyed with leftovers", "leftovers", leftovers)
		r.e.report(ctx, ports.LevelWarn, core.Code("volume", "destroy", "leftovers", "found"), r.key, "%s", msg)
	} else {
		r.log.Info("volume finished; keys deleted", "operation", op)
		r.e.report(ctx, ports.LevelInfo, core.CodePrefix+"volume.finished-"+string(op), r.key, "volume %s: %s done, keys deleted", r.key, op)
	}
	return result{finished: true}, nil
}

// environmentState reads an environment's state from the cache.
func (e *Engine) environmentState(id core.EnvironmentID) core.State {
	data, ok := e.cache.get(core.EnvironmentStatusKey(id))
	if !ok {
		return core.StateNone
	}
	st, err := core.DecodeStatus(data)
	if err != nil {
		return core.StateNone
	}
	return st.StateCode
}

// pollFor is how long a settled resource waits before looking again.
func (e *Engine) pollFor(st *core.Status) time.Duration {
	if st == nil {
		return e.cfg.FastPollInterval
	}
	switch st.StateCode {
	case core.StateInitializing, core.StateStopping, core.StateDeleting:
		return e.cfg.FastPollInterval
	}
	return e.cfg.PollInterval
}
