package core_test

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/cdmdr/mirror/core"
	"github.com/cdmdr/mirror/ports"
)

// What the plans of core can produce, found by trying every input that
// matters: docs/contract.md is checked against these sets.

// contractErrs holds one error of every cause core.Cause knows.
var contractErrs = []error{
	core.ErrMalformed, core.ErrContradiction, core.ErrUnknownOperation, ports.ErrNoBackend,
	ports.ErrNotFound, ports.ErrPrecondition, ports.ErrInProgress, context.DeadlineExceeded,
	ports.ErrRetryable, errors.New("something else"),
}

// ruleCodes collects the error_reason codes of the statuses core's plans
// write, with one input that produced each.
type ruleCodes map[string]string

func (c ruleCodes) add(w *core.Status, how string) {
	if w != nil && w.ErrorReason != nil {
		if _, ok := c[w.ErrorReason.Code]; !ok {
			c[w.ErrorReason.Code] = how
		}
	}
}

// reachableRuleCodes runs PlanVolume, PlanEnvironment and PlanSnapshot,
// and the Failed of each plan with every kind of error, over every
// operation, current status, environment state and backend report.
func reachableRuleCodes() ruleCodes {
	codes := ruleCodes{}
	volumeCodes(codes)
	environmentCodes(codes)
	snapshotCodes(codes)
	return codes
}

func volumeObservations() []func(*core.VolumeInput) {
	var out []func(*core.VolumeInput)
	for _, err := range contractErrs {
		out = append(out, func(in *core.VolumeInput) { in.ObserveErr = fmt.Errorf("observe: %w", err) })
	}
	out = append(out, func(in *core.VolumeInput) {}) // not asked
	for _, st := range []ports.ReplicationState{ports.ReplicationAbsent, ports.ReplicationSyncing,
		ports.ReplicationReplaying, ports.ReplicationPaused, ports.ReplicationFailed} {
		for _, target := range []bool{false, true} {
			out = append(out, func(in *core.VolumeInput) {
				in.Observed = &ports.VolumeReplication{State: st, TargetExists: target}
			})
		}
	}
	return out
}

func volumeCodes(codes ruleCodes) {
	statuses := []*core.Status{nil}
	for _, s := range core.VolumeStates {
		for _, op := range append([]core.Operation{""}, core.VolumeOperations...) {
			statuses = append(statuses, &core.Status{StateCode: s, Operation: op})
		}
	}
	envStates := []core.State{core.StateNone, core.StateInitializing, core.StateMirroring, core.StateStopping, core.StateError}
	for _, op := range core.VolumeOperations {
		for _, st := range statuses {
			for _, env := range envStates {
				for i, observe := range volumeObservations() {
					in := core.VolumeInput{Operation: op, Status: st, EnvState: env}
					observe(&in)
					how := fmt.Sprintf("volume %s, status %+v, environment %q, observation #%d", op, st, env, i)
					p := core.PlanVolume(in)
					codes.add(p.Write, how)
					if p.Action == core.ActNone {
						continue
					}
					codes.add(p.OnSuccess.Write, how+", "+string(p.Action)+" ok")
					for _, err := range contractErrs {
						codes.add(p.Failed(err).Write, fmt.Sprintf("%s, %s failed: %v", how, p.Action, err))
					}
				}
			}
		}
	}
	// An operation the rules do not know, on a volume with no status.
	codes.add(core.PlanVolume(core.VolumeInput{Operation: "restart"}).Write, "volume restart, no status")
}

func environmentStatuses() []*core.Status {
	out := []*core.Status{nil}
	for _, s := range []core.State{core.StateInitializing, core.StateMirroring, core.StateStopping, core.StateError} {
		out = append(out, &core.Status{StateCode: s})
	}
	return out
}

// environmentInputs is every input of PlanEnvironment that matters.
func environmentInputs(ops []core.Operation) []core.EnvironmentInput {
	var out []core.EnvironmentInput
	for _, op := range ops {
		for _, st := range environmentStatuses() {
			for _, volumes := range [][]string{nil, {"mirror_volume/storage.11.13/volume.7"}} {
				base := core.EnvironmentInput{Operation: op, Status: st, Volumes: volumes}
				for _, err := range contractErrs {
					in := base
					in.ObserveErr = fmt.Errorf("observe: %w", err)
					out = append(out, in)
				}
				for _, ready := range []bool{false, true} {
					in := base
					in.Observed = &ports.EnvironmentHealth{Ready: ready}
					out = append(out, in)
				}
			}
		}
	}
	return out
}

func environmentCodes(codes ruleCodes) {
	for _, in := range environmentInputs(append([]core.Operation{"pause"}, core.EnvironmentOperations...)) {
		how := fmt.Sprintf("environment %+v", in)
		p := core.PlanEnvironment(in)
		codes.add(p.Write, how)
		if p.Action == core.ActNone {
			continue
		}
		codes.add(p.OnSuccess.Write, how)
		for _, err := range contractErrs {
			codes.add(p.Failed(err).Write, fmt.Sprintf("%s, %s failed: %v", how, p.Action, err))
		}
	}
}

var snapshotStates = []core.State{core.SnapshotMirroring, core.SnapshotMirrored, core.SnapshotDeleting, core.SnapshotError}

// snapshotInputs is every input of PlanSnapshot that matters.
func snapshotInputs(deleted bool) []core.SnapshotInput {
	var out []core.SnapshotInput
	statuses := []*core.Status{nil}
	for _, s := range snapshotStates {
		statuses = append(statuses, &core.Status{StateCode: s})
	}
	for _, st := range statuses {
		for _, vs := range append([]core.State{core.StateNone}, core.VolumeStates...) {
			base := core.SnapshotInput{Record: core.SnapshotRecord{SnapshotID: 21, Deleted: deleted}, Status: st, VolumeState: vs}
			out = append(out, base) // not asked
			for _, err := range contractErrs {
				in := base
				in.ObserveErr = fmt.Errorf("observe: %w", err)
				out = append(out, in)
			}
			for _, s := range []ports.SnapshotState{ports.SnapshotAbsent, ports.SnapshotPending, ports.SnapshotReady} {
				in := base
				in.Observed = &ports.SnapshotReplication{State: s}
				out = append(out, in)
			}
		}
	}
	return out
}

func snapshotCodes(codes ruleCodes) {
	for _, deleted := range []bool{false, true} {
		for _, in := range snapshotInputs(deleted) {
			how := fmt.Sprintf("snapshot %+v", in)
			p := core.PlanSnapshot(in)
			codes.add(p.Write, how)
			if p.Action == core.ActNone {
				continue
			}
			codes.add(p.OnSuccess.Write, how)
			for _, err := range contractErrs {
				codes.add(p.Failed(err).Write, fmt.Sprintf("%s, %s failed: %v", how, p.Action, err))
			}
		}
	}
}

// stateRules is what docs/contract.md's environment and snapshot tables
// say for one row: every change of state, and the states it ends from.
type stateRules struct {
	moves map[string]bool // "from → to"
	ends  map[core.State]bool
}

func newStateRules() stateRules {
	return stateRules{moves: map[string]bool{}, ends: map[core.State]bool{}}
}

// move records a status write from the state from; it returns the state
// after it.
func (r stateRules) move(from core.State, w *core.Status) core.State {
	if w == nil {
		return from
	}
	if w.StateCode != from {
		r.moves[moveName(from, w.StateCode)] = true
	}
	return w.StateCode
}

func moveName(from, to core.State) string { return stateName(from) + " → " + stateName(to) }

func stateName(s core.State) string {
	if s == core.StateNone {
		return "no status"
	}
	return string(s)
}

func stateOf(st *core.Status) core.State {
	if st == nil {
		return core.StateNone
	}
	return st.StateCode
}

// environmentRules plays every environment input through its plan, its
// action's success and each failure.
func environmentRules() map[string]stateRules {
	out := map[string]stateRules{}
	for _, op := range core.EnvironmentOperations {
		r := newStateRules()
		for _, in := range environmentInputs([]core.Operation{op}) {
			p := core.PlanEnvironment(in)
			mid := r.move(stateOf(in.Status), p.Write)
			if p.Action == core.ActNone {
				if p.OnSuccess.Finish {
					r.ends[mid] = true
				}
				continue
			}
			r.move(mid, p.OnSuccess.Write)
			if p.OnSuccess.Finish {
				r.ends[mid] = true
			}
			for _, err := range contractErrs {
				out := p.Failed(err)
				r.move(mid, out.Write)
				if out.Finish {
					r.ends[mid] = true
				}
			}
		}
		out[string(op)] = r
	}
	return out
}

// snapshotRules does the same for snapshot records, "created" and
// "deleted".
func snapshotRules() map[string]stateRules {
	out := map[string]stateRules{}
	for _, deleted := range []bool{false, true} {
		r := newStateRules()
		for _, in := range snapshotInputs(deleted) {
			p := core.PlanSnapshot(in)
			mid := r.move(stateOf(in.Status), p.Write)
			if p.Action == core.ActNone {
				if p.OnSuccess.Finish {
					r.ends[mid] = true
				}
				continue
			}
			r.move(mid, p.OnSuccess.Write)
			if p.OnSuccess.Finish {
				r.ends[mid] = true
			}
			for _, err := range contractErrs {
				out := p.Failed(err)
				r.move(mid, out.Write)
				if out.Finish {
					r.ends[mid] = true
				}
			}
		}
		name := "created"
		if deleted {
			name = "deleted"
		}
		out[name] = r
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
