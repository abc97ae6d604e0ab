package app

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/cdmdr/mirror/core"
	"github.com/cdmdr/mirror/ports"
)

// reconcileEnvironment drives one environment while this daemon leads it:
// a function of its keys and the backend's report. fresh asks for the
// keys from the store (the first reconcile after winning the lead).
func (e *Engine) reconcileEnvironment(ctx context.Context, lead ports.Leadership, id core.EnvironmentID, fresh bool) (result, error) {
	res := core.EnvironmentResource(id)
	kvs, err := e.load(ctx, res, fresh)
	if err != nil {
		return result{failed: true}, err
	}
	var envData, opData []byte
	var opRev int64 // the operation key's ModRevision: the keys go only while it is the one carried out
	var status *core.Status
	for _, kv := range kvs {
		switch kv.Key {
		case res.Key():
			envData = kv.Value
		case res.OperationKey():
			opData, opRev = kv.Value, kv.ModRevision
		case res.StatusKey():
			if st, err := core.DecodeStatus(kv.Value); err == nil {
				status = &st
			}
		}
	}
	if envData == nil && opData == nil && status == nil {
		return result{finished: true}, nil
	}
	if opData == nil {
		return result{requeue: e.cfg.PollInterval}, nil
	}
	to := &statusTarget{key: res.StatusKey(), subject: core.SubjectEnvironment, event: res.Key(), current: status}
	rec, err := core.DecodeEnvironmentOperation(opData)
	op := rec.Operation
	if err != nil {
		return e.badInput(ctx, lead, to, "decode_operation", fmt.Errorf("%s: %w", res.OperationKey(), err))
	}
	env, backend, step, unusable := e.resolveEnvironment(ctx, id, op, envData)
	if err := unusable; err != nil {
		if op != core.OpStop || !rec.Force {
			if op == core.OpStop {
				err = fmt.Errorf("%w; a forced stop ends the environment without the plugin, leaving on the storages what it set up there", err)
			}
			return e.badInput(ctx, lead, to, step, err)
		}
		// A forced stop ends even an environment no plugin can act on
		// (docs/contract.md §3.1): its keys go, and the event says the
		// storages were not touched. A stop never observes, so backend
		// is needed only by the teardown below.
	}

	in := core.EnvironmentInput{Operation: op, Status: status}
	if op == core.OpStop { // only a stop waits for the volumes: listing 100,000 costs
		for _, v := range e.volumesIn(id) {
			in.Volumes = append(in.Volumes, v.Key())
		}
	}
	plan := core.PlanEnvironment(in)
	if plan.Observe {
		in.Observed, in.ObserveErr = observe(ctx, e.cfg.ActionTimeout, func(ctx context.Context) (ports.EnvironmentHealth, error) {
			return backend.EnvironmentStatus(ctx, env)
		})
		plan = core.PlanEnvironment(in)
	}
	var report ports.CleanupReport // what the teardown could not do
	out, failed, err := e.execute(ctx, lead, to, plan, func(ctx context.Context) error {
		if plan.Action == core.ActPrepare {
			return backend.PrepareEnvironment(ctx, env)
		}
		if unusable != nil {
			report.Leftovers = []string{"the plugin was not called, whatever it set up on the storages is left there: " + unusable.Error()}
			return nil
		}
		var err error
		report, err = backend.TeardownEnvironment(ctx, env, rec.Force)
		return err
	})
	if err != nil {
		return result{failed: true}, err
	}
	if out.Finish {
		guard := ports.Guard{Key: res.OperationKey(), ModRevision: opRev}
		err := e.deleteKeys(ctx, lead, []string{res.Key()}, []string{res.Key() + "/"}, guard)
		if errors.Is(err, ports.ErrConflict) {
			return e.operationChanged(ctx, res, op)
		}
		if err != nil {
			return result{failed: true}, fmt.Errorf("delete environment keys: %w", err)
		}
		e.finishedEnvironment(ctx, res.Key(), op, rec.Force, report.Leftovers)
		return result{finished: true}, nil
	}
	if failed || in.ObserveErr != nil {
		return result{failed: true}, nil
	}
	return result{requeue: e.pollFor(to.current)}, nil
}

// resolveEnvironment decodes an environment's record and finds the backend
// serving its storages; a failure names its step.
func (e *Engine) resolveEnvironment(ctx context.Context, id core.EnvironmentID, op core.Operation, envData []byte) (ports.Environment, ports.StorageBackend, string, error) {
	if envData == nil {
		return ports.Environment{}, nil, "get_environment", fmt.Errorf("operation %s names environment %s, which does not exist: %w", op, core.EnvironmentResource(id), ports.ErrNotFound)
	}
	spec, err := core.DecodeEnvironment(id, envData)
	if err != nil {
		return ports.Environment{}, nil, "decode_environment", err
	}
	env, backend, err := e.resolve(ctx, id, spec.Source, spec.Target)
	if err != nil {
		return ports.Environment{}, nil, stepOf(err, "create_storage"), err
	}
	return env, backend, "", nil
}

// finishedEnvironment reports a stopped environment: one event, listing
// what the teardown left if it left anything.
func (e *Engine) finishedEnvironment(ctx context.Context, key string, op core.Operation, force bool, leftovers []string) {
	how := "stopped"
	if force {
		how = "stopped by force"
	}
	if len(leftovers) > 0 {
		e.log.Warn("environment stopped with leftovers; keys deleted", "environment", key, "force", force, "leftovers", leftovers)
		e.report(ctx, ports.LevelWarn, core.LeftoversCode(core.SubjectEnvironment, op), key,
			"environment %s %s, keys deleted; left behind: %s", key, how, strings.Join(leftovers, "; "))
		return
	}
	e.log.Info("environment stopped; keys deleted", "environment", key, "force", force)
	e.report(ctx, ports.LevelInfo, core.FinishedCode(core.SubjectEnvironment, op), key, "environment %s %s, keys deleted", key, how)
}

// volumesIn lists the mirror volumes present in an environment.
func (e *Engine) volumesIn(id core.EnvironmentID) []core.Resource {
	var out []core.Resource
	for _, kv := range e.cache.under(core.VolumePrefix + id.String()) {
		if pk, err := core.ParseKey(kv.Key); err == nil && pk.Kind == core.KindVolume {
			out = append(out, core.VolumeResource(pk.Volume))
		}
	}
	return out
}

// load reads a resource's keys (its record and everything below it). The
// cache answers, holding this daemon's own writes; the store answers when
// fresh is asked (the first reconcile after winning the lead: the cache
// may not have the previous leader's last writes yet) or when the cache
// shows keys below a missing record (a multi-key delete it is still
// applying one key at a time). What the store says goes into the cache.
func (e *Engine) load(ctx context.Context, res core.Resource, fresh bool) ([]ports.KeyValue, error) {
	key := res.Key()
	if !fresh {
		if kvs, whole := e.cache.resource(key); whole {
			return kvs, nil
		}
	}
	all, rev, err := e.kv.List(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("read %s keys: %w", res.Subject(), err)
	}
	e.cache.refresh(key, all, rev)
	kvs, _ := e.cache.resource(key)
	return kvs, nil
}
