package app

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/cdmdr/mirror/core"
	"github.com/cdmdr/mirror/ports"
)

// statusWriter writes one resource's status while leading it, and keeps
// what it last wrote: only the leader writes a status, so its own copy is
// the truth, even before the write comes back through the watch.
type statusWriter struct {
	e         *Engine
	resource  string // the key events name
	statusKey string
	subject   string // "volume", "environment"
	log       *slog.Logger
	status    *core.Status
	attempt   int
}

// write puts st, fenced by lead, unless it says nothing new; a new
// error_reason is logged and reported as an event.
func (w *statusWriter) write(ctx context.Context, lead ports.Leadership, st core.Status) error {
	st.Owner = w.e.election.Identity()
	if w.status != nil && w.status.Same(st) {
		return nil
	}
	now := w.e.clock.Now().UTC()
	st.UpdatedAt = &now
	if err := lead.Put(ctx, w.statusKey, st.Encode()); err != nil {
		return fmt.Errorf("write status: %w", err)
	}
	prev := core.StateNone
	if w.status != nil {
		prev = w.status.StateCode
	}
	w.status = &st
	if st.ErrorReason != nil {
		w.log.Warn(w.subject+" status", "from", prev, "to", st.StateCode, "code", st.ErrorReason.Code, "reason", st.ErrorReason.Contents)
		level := ports.LevelWarn
		if st.StateCode == core.StateError {
			level = ports.LevelError
		}
		w.e.report(ctx, level, st.ErrorReason.Code, w.resource, "%s", st.ErrorReason.Contents)
	} else if prev != st.StateCode {
		w.log.Info(w.subject+" status", "from", prev, "to", st.StateCode, "operation", st.Operation)
	}
	return nil
}

// badInput records that the resource's data cannot be acted on: status
// error with a reason naming the bad record. Bad data does not heal by
// retrying; a change of the keys wakes the worker.
func (w *statusWriter) badInput(ctx context.Context, lead ports.Leadership, step string, err error) (result, error) {
	st := core.Status{StateCode: core.StateError, ErrorReason: core.FailureReason(w.subject, step, err)}
	if werr := w.write(ctx, lead, st); werr != nil {
		return w.retry(), werr
	}
	return result{requeue: w.e.cfg.PollInterval}, nil
}

// retry counts a failure and returns its backoff.
func (w *statusWriter) retry() result {
	w.attempt++
	return result{requeue: w.e.cfg.Backoff.Delay(w.attempt)}
}

// settled resets the backoff and polls at the pace of the current state.
func (w *statusWriter) settled() result {
	w.attempt = 0
	return result{requeue: w.e.pollFor(w.status)}
}

// step is one planned step: a status to write first, then an action with
// what follows its success or its failure.
type step struct {
	write     *core.Status
	action    string // empty: no action
	run       func(context.Context) error
	onSuccess core.Outcome
	onFailure func(error) core.Outcome
}

// carryOut writes the step's status, runs its action, and writes the
// status that follows. It returns what follows (for the caller to finish
// on) and whether the action failed. A write refused or a ctx ended stops
// it with an error.
func (w *statusWriter) carryOut(ctx context.Context, lead ports.Leadership, s step) (core.Outcome, bool, error) {
	if s.write != nil {
		if err := w.write(ctx, lead, *s.write); err != nil {
			return core.Outcome{}, false, err
		}
	}
	out, failed := s.onSuccess, false
	if s.action != "" {
		if err := s.run(ctx); err != nil {
			if ctx.Err() != nil {
				return core.Outcome{}, false, ctx.Err()
			}
			w.log.Warn("backend call failed", "action", s.action, "err", err)
			out, failed = s.onFailure(err), true
		} else {
			w.log.Info("backend call done", "action", s.action)
		}
	}
	if out.Write != nil {
		if err := w.write(ctx, lead, *out.Write); err != nil {
			return core.Outcome{}, false, err
		}
	}
	return out, failed, nil
}
