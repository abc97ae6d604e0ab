package app

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cdmdr/mirror/core"
	"github.com/cdmdr/mirror/ports"
)

// volumeKeys is a volume's keys at one moment.
type volumeKeys struct {
	record, operation []byte
	// operationRev is the operation key's ModRevision: the volume's keys
	// are deleted only while it is still the one carried out.
	operationRev int64
	status       *core.Status
	snapshots    map[uint64]snapshotKeys
}

type snapshotKeys struct {
	record []byte
	status *core.Status
}

func (v volumeKeys) empty() bool {
	return v.record == nil && v.operation == nil && v.status == nil && len(v.snapshots) == 0
}

// decodeVolumeKeys sorts a volume's keys.
func decodeVolumeKeys(ref core.VolumeRef, kvs []ports.KeyValue) volumeKeys {
	v := volumeKeys{snapshots: map[uint64]snapshotKeys{}}
	for _, kv := range kvs {
		pk, err := core.ParseKey(kv.Key)
		if err != nil || pk.Volume != ref {
			continue
		}
		switch pk.Kind {
		case core.KindVolume:
			v.record = kv.Value
		case core.KindVolumeOperation:
			v.operation, v.operationRev = kv.Value, kv.ModRevision
		case core.KindVolumeStatus:
			// A status that is not one of ours (garbage, an unknown state)
			// counts as none: the operation starts over from what the
			// backend reports, as the "[*]" entries of docs/contract.md §4.1 allow.
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
	return v
}

// reconcileVolume drives one mirror volume while this daemon leads it: a
// function of its keys and the backend's report. fresh asks for the keys
// from the store (the first reconcile after winning the lead).
func (e *Engine) reconcileVolume(ctx context.Context, lead ports.Leadership, ref core.VolumeRef, fresh bool) (result, error) {
	res := core.VolumeResource(ref)
	kvs, err := e.load(ctx, res, fresh)
	if err != nil {
		return result{failed: true}, err
	}
	v := decodeVolumeKeys(ref, kvs)
	if v.empty() {
		return result{finished: true}, nil // gone: nothing to lead
	}
	if v.operation == nil {
		return result{requeue: e.cfg.PollInterval}, nil // nothing asked yet
	}
	to := &statusTarget{key: res.StatusKey(), subject: core.SubjectVolume, event: res.Key(), current: v.status}
	op, err := core.DecodeVolumeOperation(v.operation)
	if err != nil {
		return e.badInput(ctx, lead, to, "decode_operation", fmt.Errorf("%s: %w", res.OperationKey(), err))
	}
	if op == core.OpDestroy {
		return e.finishVolume(ctx, lead, ref, op, v.operationRev, e.destroyOnBackend(ctx, ref, v))
	}
	if v.record == nil {
		return e.badInput(ctx, lead, to, "get_volume", fmt.Errorf("operation %s names volume %s, which does not exist: %w", op, res, ports.ErrNotFound))
	}
	mv, err := core.DecodeMirrorVolume(ref, v.record)
	if err != nil {
		return e.badInput(ctx, lead, to, "decode_volume", err)
	}
	envData, ok := e.cache.get(core.EnvironmentKey(ref.Env))
	if !ok {
		return e.badInput(ctx, lead, to, "get_environment", fmt.Errorf("environment %s of this volume does not exist: %w", core.EnvironmentKey(ref.Env), ports.ErrNotFound))
	}
	if _, err := core.DecodeEnvironment(ref.Env, envData); err != nil {
		return e.badInput(ctx, lead, to, "get_environment", err)
	}
	env, backend, err := e.resolve(ctx, ref.Env, mv.Source, mv.Target)
	if err != nil {
		if op == core.OpStop || op == core.OpStopAndDelete {
			err = fmt.Errorf("%w; destroy ends the volume without the plugin, leaving both copies as they are", err)
		}
		return e.badInput(ctx, lead, to, stepOf(err, "create_storage"), err)
	}
	vol := core.BackendVolume(env, mv)

	in := core.VolumeInput{Operation: op, Status: v.status, EnvState: e.environmentState(ref.Env)}
	plan := core.PlanVolume(in)
	if plan.Observe {
		if obs, ok := e.monitor.takeReport(ref); ok {
			in.Observed = &obs // the bulk poll's, which queued this reconcile
		} else {
			in.Observed, in.ObserveErr = observe(ctx, e.cfg.ActionTimeout, func(ctx context.Context) (ports.VolumeReplication, error) {
				return backend.VolumeStatus(ctx, vol)
			})
		}
		plan = core.PlanVolume(in)
	}
	var report ports.CleanupReport // what a stop could not do
	out, failed, err := e.execute(ctx, lead, to, plan, func(ctx context.Context) error {
		var err error
		report, err = volumeAction(ctx, backend, vol, plan.Action)
		return err
	})
	if err != nil {
		return result{failed: true}, err
	}
	if out.Finish {
		return e.finishVolume(ctx, lead, ref, op, v.operationRev, report.Leftovers)
	}
	snaps := e.reconcileSnapshots(ctx, lead, backend, vol, ref, v.snapshots, to.current)

	if failed || (to.current != nil && to.current.StateCode == core.StateError) || in.ObserveErr != nil {
		return result{failed: true}, nil
	}
	switch {
	case snaps == snapshotsPending:
		return result{requeue: e.snapshotPace(to.current)}, nil
	case snaps == snapshotsFailed || !settledState(to.current):
		return result{requeue: e.pollFor(to.current)}, nil
	}
	// Nothing under way: the bulk poll of the environment looks at it.
	return result{settled: &settledVolume{mv: mv, op: op, status: *to.current}}, nil
}

// snapshotPace is how soon a volume whose snapshot is on its way is
// looked at again. While the volume copies, the snapshot may arrive on the
// target at any moment and the DR manager waits on its record: the
// snapshot pace. Otherwise (paused, or not replicating) it cannot arrive
// before the volume's state changes: the fast poll.
func (e *Engine) snapshotPace(st *core.Status) time.Duration {
	if st != nil && (st.StateCode == core.StateMirroring || st.StateCode == core.StateInitializing) {
		return e.cfg.SnapshotPollInterval
	}
	return e.cfg.FastPollInterval
}

// settledState says a volume in st waits for nothing: the bulk poll
// watches it.
func settledState(st *core.Status) bool {
	return st != nil && st.ErrorReason == nil && (st.StateCode == core.StateMirroring || st.StateCode == core.StatePaused)
}

// volumeAction runs one volume action on the backend, with what it could
// not do (a stop's report).
func volumeAction(ctx context.Context, b ports.StorageBackend, vol ports.Volume, a core.Action) (ports.CleanupReport, error) {
	switch a {
	case core.ActStart:
		return ports.CleanupReport{}, b.StartVolume(ctx, vol)
	case core.ActResume:
		return ports.CleanupReport{}, b.ResumeVolume(ctx, vol)
	case core.ActPause:
		return ports.CleanupReport{}, b.PauseVolume(ctx, vol)
	case core.ActStop:
		return b.StopVolume(ctx, vol)
	case core.ActDeleteTarget:
		return ports.CleanupReport{}, b.DeleteTarget(ctx, vol)
	}
	return ports.CleanupReport{}, fmt.Errorf("action %q is not a volume action", a)
}

// A destroy's backend call failing as retryable is made destroyTries
// times at most, destroyRetryDelay apart (doubling), within DestroyTimeout.
const (
	destroyTries      = 3
	destroyRetryDelay = time.Second
)

// destroyOnBackend is the forced teardown (docs/contract.md §4.3): best effort
// on the backend, bounded in time; it returns what was left behind.
func (e *Engine) destroyOnBackend(ctx context.Context, ref core.VolumeRef, v volumeKeys) []string {
	if v.record == nil {
		return []string{"the backend was not called: the mirror volume record does not exist"}
	}
	mv, err := core.DecodeMirrorVolume(ref, v.record)
	if err != nil {
		return []string{"the backend was not called: " + err.Error()}
	}
	env, backend, err := e.resolve(ctx, ref.Env, mv.Source, mv.Target)
	if err != nil {
		return []string{"the backend was not called: " + err.Error()}
	}
	dctx, cancel := context.WithTimeout(ctx, e.cfg.DestroyTimeout)
	defer cancel()
	rep, err := backend.DestroyVolume(dctx, core.BackendVolume(env, mv))
	// A retryable failure (the plugin's process restarting, a storage
	// blip) is asked again a few times within the bound: given up at
	// once, it would leave the replication on the storage for an
	// operator to clean (docs/reliability/plugins.md).
	for try := 1; try < destroyTries && errors.Is(err, ports.ErrRetryable) && dctx.Err() == nil; try++ {
		if !e.sleep(dctx, destroyRetryDelay<<(try-1)) {
			break
		}
		rep, err = backend.DestroyVolume(dctx, core.BackendVolume(env, mv))
	}
	leftovers := rep.Leftovers
	if err != nil {
		leftovers = append(leftovers, "destroy failed: "+err.Error())
	}
	return leftovers
}

// finishVolume deletes the volume's keys (its record, operation, status
// and snapshot records): the end of stop, stop_and_delete and destroy.
// opRev is the ModRevision of the operation carried out: an operation
// written since (a stop_and_delete while a stop ran) keeps the keys, and
// the volume is reconciled again at once under it (docs/contract.md §4.3).
// leftovers is what the backend could not do (a destroy's, or a stop's
// with the source unreachable): the ending event lists it.
func (e *Engine) finishVolume(ctx context.Context, lead ports.Leadership, ref core.VolumeRef, op core.Operation, opRev int64, leftovers []string) (result, error) {
	if ctx.Err() != nil {
		return result{}, ctx.Err() // a destroy cut short by a lost lead or a stop: the next leader does it again
	}
	res := core.VolumeResource(ref)
	key := res.Key()
	guard := ports.Guard{Key: res.OperationKey(), ModRevision: opRev}
	err := e.deleteKeys(ctx, lead, []string{key}, []string{core.VolumeChildrenPrefix(ref)}, guard)
	if errors.Is(err, ports.ErrConflict) {
		return e.operationChanged(ctx, res, op)
	}
	if err != nil {
		return result{failed: true}, fmt.Errorf("delete volume keys: %w", err)
	}
	if len(leftovers) > 0 {
		msg := fmt.Sprintf("volume %s: %s; keys deleted; left behind: %s", key, endedWith(op), strings.Join(leftovers, "; "))
		e.log.Warn("volume finished with leftovers", "volume", key, "operation", op, "leftovers", leftovers)
		e.report(ctx, ports.LevelWarn, core.LeftoversCode(core.SubjectVolume, op), key, "%s", msg)
	} else {
		e.log.Info("volume finished; keys deleted", "volume", key, "operation", op)
		e.report(ctx, ports.LevelInfo, core.FinishedCode(core.SubjectVolume, op), key, "volume %s: %s done, keys deleted", key, op)
	}
	return result{finished: true}, nil
}

// endedWith says how a volume operation that left something ended.
func endedWith(op core.Operation) string {
	switch op {
	case core.OpStop:
		return "stopped, the target copy kept as a standalone volume"
	case core.OpDestroy:
		return "destroyed"
	}
	return string(op) + " done"
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
