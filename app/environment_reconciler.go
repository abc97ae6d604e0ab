package app

import (
	"context"
	"fmt"

	"github.com/cdmdr/mirror/core"
	"github.com/cdmdr/mirror/ports"
)

// environmentReconciler drives one environment while this daemon leads it.
type environmentReconciler struct {
	key string
	id  core.EnvironmentID

	statusWriter
	loaded bool
	// storeRev is the revision of the last read from the store.
	storeRev int64
}

func newEnvironmentReconciler(e *Engine, key string) *environmentReconciler {
	pk, _ := core.ParseKey(key)
	return &environmentReconciler{key: key, id: pk.Env,
		statusWriter: statusWriter{e: e, resource: key, statusKey: core.EnvironmentStatusKey(pk.Env), subject: "environment", log: e.log.With("environment", key)}}
}

func (r *environmentReconciler) load(ctx context.Context) (env, op []byte, err error) {
	var kvs []ports.KeyValue
	if r.loaded && r.e.cache.revision(core.EnvironmentPrefix) < r.storeRev {
		r.loaded = false // the cache lags behind the store: read the store again
	}
	if !r.loaded {
		all, _, err := r.e.kv.List(ctx, r.key)
		if err != nil {
			return nil, nil, fmt.Errorf("read environment keys: %w", err)
		}
		// The floor is the newest revision among the environment's own
		// keys, which the prefix's watch reaches (see volumeReconciler).
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
	var status *core.Status
	for _, kv := range kvs {
		switch kv.Key {
		case r.key:
			env = kv.Value
		case core.EnvironmentOperationKey(r.id):
			op = kv.Value
		case core.EnvironmentStatusKey(r.id):
			if st, err := core.DecodeStatus(kv.Value); err == nil {
				status = &st
			}
		}
	}
	if r.loaded && env == nil {
		// The record is gone from the cache, which applies a multi-key
		// delete one key at a time: ask the store, which changes all at
		// once, and drop our copy of a status deleted with the record.
		r.loaded = false
		return r.load(ctx)
	}
	if !r.loaded {
		r.loaded, r.status = true, status
	}
	return env, op, nil
}

func (r *environmentReconciler) reconcile(ctx context.Context, lead ports.Leadership) (result, error) {
	envData, opData, err := r.load(ctx)
	if err != nil {
		return r.retry(), err
	}
	if envData == nil && opData == nil && r.status == nil {
		return result{finished: true}, nil
	}
	if opData == nil {
		return result{requeue: r.e.cfg.PollInterval}, nil
	}
	op, err := core.DecodeEnvironmentOperation(opData)
	if err != nil {
		return r.badInput(ctx, lead, "decode_operation", fmt.Errorf("%s: %w", core.EnvironmentOperationKey(r.id), err))
	}
	if envData == nil {
		return r.badInput(ctx, lead, "get_environment", fmt.Errorf("operation %s names environment %s, which does not exist: %w", op, r.key, ports.ErrNotFound))
	}
	spec, err := core.DecodeEnvironment(r.id, envData)
	if err != nil {
		return r.badInput(ctx, lead, "decode_environment", err)
	}
	env, backend, err := r.e.resolve(ctx, r.id, spec.Source, spec.Target)
	if err != nil {
		return r.badInput(ctx, lead, stepOf(err, "create_storage"), err)
	}

	in := core.EnvironmentInput{Operation: op, Status: r.status, Volumes: r.e.volumesIn(r.id)}
	if op == core.OpStart {
		octx, cancel := context.WithTimeout(ctx, r.e.cfg.ActionTimeout)
		h, err := backend.EnvironmentStatus(octx, env)
		cancel()
		if err != nil {
			in.ObserveErr = err
		} else {
			in.Observed = &h
		}
	}
	plan := core.PlanEnvironment(in)
	out, failed, err := r.carryOut(ctx, lead, step{
		write: plan.Write, action: string(plan.Action), onSuccess: plan.OnSuccess,
		run: func(ctx context.Context) error {
			ctx, cancel := context.WithTimeout(ctx, r.e.cfg.ActionTimeout)
			defer cancel()
			if plan.Action == core.EnvActPrepare {
				return backend.PrepareEnvironment(ctx, env)
			}
			return backend.TeardownEnvironment(ctx, env)
		},
		onFailure: func(err error) core.Outcome { return in.Failed(plan, err) },
	})
	if err != nil {
		return r.retry(), err
	}
	if out.Finish {
		if err := lead.Delete(ctx, []string{r.key}, []string{r.key + "/"}); err != nil {
			return r.retry(), fmt.Errorf("delete environment keys: %w", err)
		}
		r.log.Info("environment stopped; keys deleted")
		r.e.report(ctx, ports.LevelInfo, core.CodePrefix+"environment.finished-stop", r.key, "environment %s stopped, keys deleted", r.key)
		return result{finished: true}, nil
	}
	if failed || in.ObserveErr != nil {
		return r.retry(), nil
	}
	return r.settled(), nil
}

// volumesIn lists the mirror volumes present in an environment.
func (e *Engine) volumesIn(id core.EnvironmentID) []string {
	var out []string
	for _, kv := range e.cache.under(core.VolumePrefix + id.String()) {
		if pk, err := core.ParseKey(kv.Key); err == nil && pk.Kind == core.KindVolume {
			out = append(out, kv.Key)
		}
	}
	return out
}
