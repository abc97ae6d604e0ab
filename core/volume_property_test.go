package core_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"pgregory.net/rapid"

	"github.com/cdmdr/mirror/core"
	"github.com/cdmdr/mirror/ports"
)

var (
	genOp       = rapid.SampledFrom(core.VolumeOperations)
	genEnvState = rapid.SampledFrom([]core.State{none, initializing, mirroring, mirroring, stopping, errState})
	genObs      = rapid.SampledFrom([]obsKind{obsAbsent, obsAbsentTarget, obsSyncing, obsReplaying, obsPaused, obsFailed, obsError})
	genActErr   = rapid.SampledFrom([]error{
		ports.ErrNotFound, ports.ErrPrecondition, ports.ErrRetryable, ports.ErrInProgress,
		context.DeadlineExceeded, core.ErrMalformed, fmt.Errorf("boom"),
	})
)

// volumeSim drives one volume through the plans the way a worker does:
// plan, write, act, apply the outcome. It checks every status change
// against docs/contract.md §4's tables.
type volumeSim struct {
	t      *rapid.T
	status *core.Status
	obs    obsKind // what the backend reports at this step
	trace  []string
}

func (s *volumeSim) fail(format string, args ...any) {
	s.t.Fatalf("%s\ntrace:\n  %s", fmt.Sprintf(format, args...), strings.Join(s.trace, "\n  "))
}

func (s *volumeSim) current(op core.Operation) (core.State, bool) {
	if s.status == nil {
		return none, true
	}
	return s.status.StateCode, s.status.Operation != op
}

// write applies a status write under op, checking the move.
func (s *volumeSim) write(op core.Operation, w *core.Status, step string) {
	from, entering := s.current(op)
	to := w.StateCode
	s.trace = append(s.trace, fmt.Sprintf("%s: %s %q→%q (entering=%v) reason=%v", step, op, from, to, entering, w.ErrorReason))
	if to == none {
		s.fail("%s writes an empty state_code", step)
	}
	if !core.CanStartFrom(op, from) || s.targetGone(op) {
		// A refusal: the state and the operation it was reached under are
		// kept, with a reason. A stop is refused too when the
		// stop_and_delete under way deleted the target it would keep.
		if to != from || w.ErrorReason == nil || !strings.Contains(w.ErrorReason.Code, "refused") {
			s.fail("%s: %s cannot start from %q, yet writes %+v", step, op, from, *w)
		}
		if s.status != nil && w.Operation != s.status.Operation {
			s.fail("%s: refusal rewrites the operation %q as %q", step, s.status.Operation, w.Operation)
		}
	} else {
		if !core.Allowed(op, from, to, entering) {
			s.fail("%s: move %q→%q under %s (entering=%v) is not in docs/contract.md §4", step, from, to, op, entering)
		}
		if !specAllowed(op, from, to, entering) {
			s.fail("%s: move %q→%q under %s (entering=%v) is not in the literal table of docs/contract.md §4.2", step, from, to, op, entering)
		}
		if w.Operation != op {
			s.fail("%s: status written under %s records operation %q", step, op, w.Operation)
		}
		if to == errState && (w.ErrorReason == nil || !strings.HasPrefix(w.ErrorReason.Code, core.CodePrefix)) {
			s.fail("%s: error state without a reason code: %+v", step, w.ErrorReason)
		}
	}
	c := *w
	s.status = &c
}

// targetGone reports whether op is a stop that a stop_and_delete under
// way (the status's operation) left without a target: the backend
// reports neither replication nor target.
func (s *volumeSim) targetGone(op core.Operation) bool {
	return op == core.OpStop && s.status != nil && s.status.Operation == core.OpStopAndDelete && s.obs == obsAbsent
}

// finish deletes the volume's keys; it must be allowed from the state.
func (s *volumeSim) finish(op core.Operation, step string) {
	from, _ := s.current(op)
	s.trace = append(s.trace, fmt.Sprintf("%s: %s finishes from %q", step, op, from))
	if op != core.OpDestroy && !core.CanFinish(op, from) {
		s.fail("%s: %s finishes from %q; docs/contract.md §4.2 allows it only from its done states", step, op, from)
	}
	if !contains(specDone[op], from) {
		s.fail("%s: %s finishes from %q, not a done state of docs/contract.md §4.2", step, op, from)
	}
	s.status = nil
}

func (s *volumeSim) apply(op core.Operation, out core.Outcome, step string) (finished bool) {
	if out.Write != nil {
		s.write(op, out.Write, step)
	}
	if out.Finish {
		s.finish(op, step)
		return true
	}
	return false
}

func runVolumeSim(t *rapid.T, initial *core.Status) {
	sim := &volumeSim{t: t, status: initial}
	if initial != nil {
		sim.trace = append(sim.trace, fmt.Sprintf("initial %+v", *initial))
	}
	op := genOp.Draw(t, "op")
	steps := rapid.IntRange(1, 60).Draw(t, "steps")
	for i := range steps {
		if rapid.IntRange(0, 3).Draw(t, "change_op") == 0 {
			op = genOp.Draw(t, "op")
		}
		k := genObs.Draw(t, "obs")
		sim.obs = k
		obs, oerr := observe(k)
		in := core.VolumeInput{Operation: op, Status: sim.status, EnvState: genEnvState.Draw(t, "env"),
			Observed: obs, ObserveErr: oerr}
		p := core.PlanVolume(in)
		step := fmt.Sprintf("#%d env=%q obs=%s", i, in.EnvState, k)
		sim.trace = append(sim.trace, fmt.Sprintf("%s plan: write=%v action=%q finish=%v", step, p.Write != nil, p.Action, p.OnSuccess.Finish))

		if p.Observe {
			sim.fail("plan asks to observe although the input has the backend's report: %+v", p)
		}
		if p.Write != nil {
			sim.write(op, p.Write, step+" write")
		}
		if p.Action == core.ActNone {
			// Without an action, OnSuccess follows at once.
			sim.apply(op, p.OnSuccess, step)
			continue
		}
		if op == core.OpDestroy && p.Write != nil {
			sim.fail("destroy writes a state")
		}
		var out core.Outcome
		if rapid.Bool().Draw(t, "action_ok") {
			out = p.OnSuccess
			step += " " + string(p.Action) + " ok"
		} else {
			err := genActErr.Draw(t, "action_err")
			out = p.Failed(fmt.Errorf("%s: %w", p.Action, err))
			step += fmt.Sprintf(" %s failed (%v)", p.Action, err)
			if op == core.OpDestroy && !out.Finish {
				sim.fail("destroy failure does not finish")
			}
		}
		// A status written by the outcome follows the plan's Write: the
		// move is checked from the written state.
		sim.apply(op, out, step)
	}
}

// TestVolumePlanProperty: from no status, random operation changes,
// observations and action results never produce a move outside docs/contract.md §4,
// nor an end of the operation outside its done states.
func TestVolumePlanProperty(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) { runVolumeSim(t, nil) })
}

// TestVolumePlanPropertyFromLeftoverStatus starts from a status left by
// another operation, or by the original daemon (no "operation" field).
func TestVolumePlanPropertyFromLeftoverStatus(t *testing.T) {
	t.Parallel()
	rapid.Check(t, func(t *rapid.T) {
		st := &core.Status{
			StateCode: rapid.SampledFrom(core.VolumeStates).Draw(t, "initial_state"),
			Operation: rapid.SampledFrom(append([]core.Operation{""}, core.VolumeOperations...)).Draw(t, "initial_op"),
		}
		runVolumeSim(t, st)
	})
}
