package app

import (
	"context"
	"fmt"
	"time"

	"github.com/cdmdr/mirror/core"
	"github.com/cdmdr/mirror/ports"
)

// result is what one reconcile asks of its worker.
type result struct {
	// requeue is when to reconcile again if nothing else happens; zero
	// means at the pace of the resource's state (pollFor).
	requeue time.Duration
	// failed: something went wrong; the worker backs off.
	failed bool
	// finished: the resource's keys are gone; resign and exit.
	finished bool
	// settled: a volume waiting for nothing, as read by this reconcile;
	// the bulk poll of its environment looks at it instead of a timer of
	// its own.
	settled *settledVolume
}

// statusTarget is where one plan's statuses go: a resource's status, or
// one of its snapshots'.
type statusTarget struct {
	key     string // the status key
	subject string // "environment", "volume", "snapshot": events and logs
	event   string // the key events name
	// current is the status the cache holds now; the executor keeps it
	// up to date with what it writes.
	current *core.Status
}

// execute carries a plan out (core.Plan's protocol, after observation):
// write its status, run its action, write what follows. It returns the
// outcome and whether the action failed. A refused write or an ended ctx
// stops it with an error.
func (e *Engine) execute(ctx context.Context, lead ports.Leadership, to *statusTarget, plan core.Plan, act func(context.Context) error) (core.Outcome, bool, error) {
	if plan.Write != nil {
		if err := e.writeStatus(ctx, lead, to, *plan.Write); err != nil {
			return core.Outcome{}, false, err
		}
	}
	out, failed := plan.OnSuccess, false
	if plan.Action != core.ActNone {
		actx, cancel := context.WithTimeout(ctx, e.cfg.ActionTimeout)
		err := act(actx)
		cancel()
		switch {
		case err != nil && ctx.Err() != nil:
			return core.Outcome{}, false, ctx.Err()
		case err != nil:
			e.log.Warn("backend call failed", "resource", to.event, "action", plan.Action, "err", err)
			out, failed = plan.Failed(err), !isInProgress(err)
		default:
			e.log.Info("backend call done", "resource", to.event, "action", plan.Action)
		}
	}
	if out.Write != nil {
		if err := e.writeStatus(ctx, lead, to, *out.Write); err != nil {
			return core.Outcome{}, false, err
		}
	}
	return out, failed, nil
}

// observe asks the backend for the report a plan needs (its Observe
// step), bounded by the action timeout: the report, or the error.
func observe[T any](ctx context.Context, timeout time.Duration, ask func(context.Context) (T, error)) (*T, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	v, err := ask(ctx)
	if err != nil {
		return nil, err
	}
	return &v, nil
}

// writeStatus puts st, fenced by lead, unless it says nothing new, and
// puts it in the cache at once; a new error_reason is logged and
// reported as an event. A status that differs only in its owner is not
// new: a daemon taking a settled resource over leaves its status alone
// (the owner names the daemon that wrote it).
func (e *Engine) writeStatus(ctx context.Context, lead ports.Leadership, to *statusTarget, st core.Status) error {
	if to.current != nil {
		st.Owner = to.current.Owner
		if to.current.Same(st) {
			return nil
		}
	}
	st.Owner = e.election.Identity()
	now := e.clock.Now().UTC()
	st.UpdatedAt = &now
	value := st.Encode()
	rev, err := lead.Put(ctx, to.key, value)
	if err != nil {
		return fmt.Errorf("write status: %w", err)
	}
	e.cache.wrote(to.key, value, rev)
	was := to.current
	prev := core.StateNone
	if was != nil {
		prev = was.StateCode
	}
	to.current = &st
	e.reportFindings(ctx, to, was, st)
	log := e.log.With(to.subject, to.event)
	if st.ErrorReason != nil {
		log.Warn(to.subject+" status", "from", prev, "to", st.StateCode, "code", st.ErrorReason.Code, "reason", st.ErrorReason.Contents)
		level := ports.LevelWarn
		if st.StateCode == core.StateError || st.StateCode == core.SnapshotError {
			level = ports.LevelError
		}
		e.report(ctx, level, st.ErrorReason.Code, to.event, "%s", st.ErrorReason.Contents)
	} else if prev != st.StateCode {
		log.Info(to.subject+" status", "from", prev, "to", st.StateCode, "operation", st.Operation)
	}
	return nil
}

// badInput records that the resource's data cannot be acted on: status
// error with a reason naming the bad record. Bad data does not heal by
// retrying; a change of the keys wakes the worker.
func (e *Engine) badInput(ctx context.Context, lead ports.Leadership, to *statusTarget, step string, err error) (result, error) {
	st := core.Status{StateCode: core.StateError, ErrorReason: core.FailureReason(to.subject, step, err)}
	if to.current != nil { // what the storage holds has not changed
		st.KeptRecoveryPoint = to.current.KeptRecoveryPoint
		st.UnintendedReplicas = to.current.UnintendedReplicas
	}
	if werr := e.writeStatus(ctx, lead, to, st); werr != nil {
		return result{failed: true}, werr
	}
	return result{requeue: e.cfg.PollInterval}, nil
}

// deleteKeys removes keys and everything under prefixes, fenced by lead
// and guards, and from the cache at once.
func (e *Engine) deleteKeys(ctx context.Context, lead ports.Leadership, keys, prefixes []string, guards ...ports.Guard) error {
	rev, err := lead.Delete(ctx, keys, prefixes, guards...)
	if err != nil {
		return err
	}
	e.cache.deleted(keys, prefixes, rev)
	return nil
}

// operationChanged is the end of an operation that finished on the
// backend while a new one was written: the resource's keys stay, the
// cache takes the new operation from the store (the watch may not have
// brought it yet), and the resource is reconciled again at once, the new
// operation going on from the status the finished one left
// (docs/contract.md §4.3).
func (e *Engine) operationChanged(ctx context.Context, res core.Resource, done core.Operation) (result, error) {
	e.log.Info("operation written while the previous one was finishing; keys kept, reconciling again",
		res.Subject(), res.Key(), "finished", done)
	if _, err := e.load(ctx, res, true); err != nil {
		return result{failed: true}, err
	}
	return result{}, nil
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
