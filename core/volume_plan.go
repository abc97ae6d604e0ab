package core

import (
	"errors"
	"fmt"

	"github.com/cdmdr/mirror/ports"
)

// VolumeAction is the one backend call a plan asks for.
type VolumeAction string

// Volume actions.
const (
	ActNone         VolumeAction = ""
	ActStart        VolumeAction = "start"
	ActResume       VolumeAction = "resume"
	ActPause        VolumeAction = "pause"
	ActStop         VolumeAction = "stop"
	ActDeleteTarget VolumeAction = "delete_target"
	ActDestroy      VolumeAction = "destroy"
)

// VolumeInput is everything the volume rules look at. The caller observes
// the backend first (VolumeStatus) and passes what it saw, or the error.
type VolumeInput struct {
	Operation Operation
	// Status is the current status, nil when there is none yet.
	Status *Status
	// EnvState is the environment's state_code, StateNone when it has none.
	EnvState State
	// Observed is the backend's report; nil when ObserveErr is set or the
	// backend was not asked.
	Observed   *ports.VolumeReplication
	ObserveErr error
}

// Outcome is what follows an action: a status to write, or the end of the
// operation (delete the volume's keys), or nothing.
type Outcome struct {
	Write  *Status
	Finish bool
}

// VolumePlan is the decision for one reconcile of one volume: write Write
// (if set), then run Action (if any); on success apply OnSuccess, on
// failure the status from VolumeInput.Failed. With no action, Finish says
// whether to delete the keys right away.
type VolumePlan struct {
	Write     *Status
	Action    VolumeAction
	OnSuccess Outcome
	// OnFailure is the state to take when Action fails.
	OnFailure State
	Finish    bool
}

// current returns the volume's state and whether op is only now entering.
func (in VolumeInput) current() (State, bool) {
	if in.Status == nil {
		return StateNone, true
	}
	return in.Status.StateCode, in.Status.Operation != in.Operation
}

// PlanVolume decides what to do for one volume. It never plans a move the
// tables of SPEC §4 do not allow: an operation asked for in a state it
// cannot start from keeps the state and gets a refusal reason.
func PlanVolume(in VolumeInput) VolumePlan {
	cur, _ := in.current()
	if in.Operation == OpDestroy {
		return VolumePlan{Action: ActDestroy, OnSuccess: Outcome{Finish: true}}
	}
	if _, known := volumeTables[in.Operation]; !known && cur == StateNone {
		// Nothing to keep: the first status of a volume is never empty.
		return VolumePlan{Write: &Status{StateCode: StateError, ErrorReason: &Reason{
			Code:     Code("volume", "failure", "decode_operation", "unknown_operation"),
			Contents: fmt.Sprintf("operation %q is not one of start, resume, pause, stop, stop_and_delete, destroy", in.Operation),
		}}}
	}
	if !CanStartFrom(in.Operation, cur) {
		return VolumePlan{Write: in.refused(cur)}
	}
	switch in.Operation {
	case OpStart:
		return in.planStart(cur)
	case OpResume:
		return in.planResume(cur)
	case OpPause:
		return in.planPause(cur)
	case OpStop:
		return in.planStop(cur)
	case OpStopAndDelete:
		return in.planStopAndDelete(cur)
	}
	return VolumePlan{Write: in.refused(cur)}
}

func (in VolumeInput) planStart(cur State) VolumePlan {
	switch cur {
	case StateInitializing, StateMirroring:
		return in.follow(cur)
	}
	// no status, waiting or error: the start process runs once the
	// environment is ready.
	if in.EnvState != StateMirroring {
		return VolumePlan{Write: in.status(StateWaiting, in.waitingReason())}
	}
	obs, ok := in.observed()
	if !ok {
		return VolumePlan{Write: in.observeFailed()}
	}
	switch obs.State {
	case ports.ReplicationReplaying:
		if cur == StateWaiting { // waiting → mirroring is no arrow: pass through initializing
			return VolumePlan{Write: in.status(StateInitializing, nil)}
		}
		return VolumePlan{Write: in.status(StateMirroring, nil)}
	case ports.ReplicationSyncing:
		return VolumePlan{Write: in.status(StateInitializing, nil)}
	case ports.ReplicationFailed:
		return VolumePlan{Write: in.status(StateError, in.backendFailedReason(obs))}
	}
	return VolumePlan{Action: ActStart, OnSuccess: Outcome{Write: in.status(StateInitializing, nil)}, OnFailure: StateError}
}

func (in VolumeInput) planResume(cur State) VolumePlan {
	switch cur {
	case StateInitializing, StateMirroring:
		return in.follow(cur)
	}
	// no status, paused or error
	if in.EnvState != StateMirroring {
		if cur == StateNone {
			return VolumePlan{} // resume has no waiting state; look again later
		}
		return VolumePlan{Write: in.status(cur, in.waitingReason())}
	}
	obs, ok := in.observed()
	if !ok {
		return VolumePlan{Write: in.observeFailed()}
	}
	switch obs.State {
	case ports.ReplicationReplaying:
		if cur == StateNone {
			return VolumePlan{Write: in.status(StateMirroring, nil)}
		}
		return VolumePlan{Write: in.status(StateInitializing, nil)}
	case ports.ReplicationSyncing:
		return VolumePlan{Write: in.status(StateInitializing, nil)}
	case ports.ReplicationFailed:
		if cur == StateError {
			// An explicit resume of a failed replication asks the backend
			// to restart replay (it may have to resync: the operator asked
			// for it). start never does this on its own: a split brain
			// waits for a person.
			return VolumePlan{Action: ActResume, OnSuccess: Outcome{Write: in.status(StateInitializing, nil)}, OnFailure: StateError}
		}
		return VolumePlan{Write: in.status(StateError, in.backendFailedReason(obs))}
	case ports.ReplicationAbsent:
		// Nothing left to resume: set replication up again.
		return VolumePlan{Action: ActStart, OnSuccess: Outcome{Write: in.status(StateInitializing, nil)}, OnFailure: StateError}
	}
	return VolumePlan{Action: ActResume, OnSuccess: Outcome{Write: in.status(StateInitializing, nil)}, OnFailure: StateError}
}

func (in VolumeInput) planPause(cur State) VolumePlan {
	obs, ok := in.observed()
	if !ok {
		return VolumePlan{Write: in.observeFailed()}
	}
	switch obs.State {
	case ports.ReplicationPaused:
		return VolumePlan{Write: in.status(StatePaused, nil)}
	case ports.ReplicationAbsent:
		return VolumePlan{Write: in.status(StateError, &Reason{
			Code:     Code("volume", "failure", "pause", "not_replicated"),
			Contents: "the volume is not replicated on the backend, so there is nothing to pause; start it first",
		})}
	case ports.ReplicationFailed:
		if cur == StatePaused {
			return VolumePlan{Write: in.status(StateError, in.backendFailedReason(obs))}
		}
	}
	// Replaying or syncing (a pause the backend forgot, for example after
	// a restart, is applied again), or failed while not yet paused.
	return VolumePlan{Action: ActPause, OnSuccess: Outcome{Write: in.status(StatePaused, nil)}, OnFailure: StateError}
}

func (in VolumeInput) planStop(cur State) VolumePlan {
	return VolumePlan{
		Write:     in.status(StateStopping, in.stillWaiting(ActStop)),
		Action:    ActStop,
		OnSuccess: Outcome{Finish: true},
		OnFailure: StateError,
	}
}

func (in VolumeInput) planStopAndDelete(cur State) VolumePlan {
	if cur != StateDeleting {
		return VolumePlan{
			Write:     in.status(StateStopping, nil),
			Action:    ActDeleteTarget,
			OnSuccess: Outcome{Write: in.statusUnder(StateDeleting, nil)},
			OnFailure: StateError,
		}
	}
	obs, ok := in.observed()
	if !ok {
		return VolumePlan{Write: in.observeFailed()}
	}
	if obs.State == ports.ReplicationAbsent && !obs.TargetExists {
		return VolumePlan{Finish: true}
	}
	// The target is still there: ask again (idempotent) and keep waiting.
	return VolumePlan{Action: ActDeleteTarget, OnSuccess: Outcome{Write: in.status(StateDeleting, nil)}, OnFailure: StateError}
}

// follow tracks a volume whose start or resume already ran.
func (in VolumeInput) follow(cur State) VolumePlan {
	obs, ok := in.observed()
	if !ok {
		return VolumePlan{Write: in.observeFailed()}
	}
	switch obs.State {
	case ports.ReplicationReplaying:
		return VolumePlan{Write: in.status(StateMirroring, nil)}
	case ports.ReplicationSyncing:
		// A resync after mirroring stays "mirroring" (there is no arrow
		// back to initializing); its progress shows in the status.
		return VolumePlan{Write: in.status(cur, nil)}
	case ports.ReplicationFailed:
		return VolumePlan{Write: in.status(StateError, in.backendFailedReason(obs))}
	case ports.ReplicationPaused:
		return VolumePlan{Action: ActResume, OnSuccess: Outcome{Write: in.status(cur, nil)}, OnFailure: StateError}
	}
	return VolumePlan{Write: in.status(StateError, &Reason{
		Code:     Code("volume", "failure", "replication", "lost"),
		Contents: "the backend no longer replicates this volume; it will be started again",
	})}
}

// Failed is the outcome of a plan whose action failed with err: the
// failure state with a reason, or, when the backend says the work is
// still under way (a stop waiting for the first copy), the planned state
// with a waiting reason that says why (look again later).
func (in VolumeInput) Failed(p VolumePlan, err error) Outcome {
	if p.Action == ActDestroy {
		return Outcome{Finish: true}
	}
	if errors.Is(err, ports.ErrInProgress) {
		if p.Write == nil {
			return Outcome{}
		}
		return Outcome{Write: in.statusUnder(p.Write.StateCode, &Reason{
			Code:     Code("volume", "waiting", string(p.Action), "in_progress"),
			Contents: fmt.Sprintf("%s waits: %v", p.Action, err),
		})}
	}
	st := p.OnFailure
	if st == StateNone {
		st = StateError
	}
	return Outcome{Write: in.statusUnder(st, FailureReason("volume", string(p.Action), err))}
}

// stillWaiting is the waiting reason a retried action keeps until it
// goes through, so each retry does not clear and rewrite it.
func (in VolumeInput) stillWaiting(a VolumeAction) *Reason {
	if in.Status == nil || in.Status.ErrorReason == nil {
		return nil
	}
	if in.Status.ErrorReason.Code != Code("volume", "waiting", string(a), "in_progress") {
		return nil
	}
	return in.Status.ErrorReason
}

func (in VolumeInput) observed() (ports.VolumeReplication, bool) {
	if in.Observed == nil {
		return ports.VolumeReplication{}, false
	}
	return *in.Observed, true
}

func (in VolumeInput) observeFailed() *Status {
	err := in.ObserveErr
	if err == nil {
		err = errors.New("the backend was not asked")
	}
	return in.status(StateError, FailureReason("volume", "observe", err))
}

func (in VolumeInput) waitingReason() *Reason {
	state := string(in.EnvState)
	if in.EnvState == StateNone {
		state = "not yet started"
	}
	return &Reason{
		Code:     Code("volume", "waiting", "environment", "not_ready"),
		Contents: fmt.Sprintf("waiting for the environment to be mirroring; it is %s", state),
	}
}

func (in VolumeInput) backendFailedReason(obs ports.VolumeReplication) *Reason {
	desc := obs.Description
	if desc == "" {
		desc = "no description given"
	}
	return &Reason{Code: Code("volume", "failure", "replication", "backend_error"), Contents: "the backend reports a replication error: " + desc}
}

func (in VolumeInput) refused(cur State) *Status {
	st := Status{StateCode: cur, ErrorReason: &Reason{
		Code: Code("volume", "refused", "operation", string(in.Operation)),
		Contents: fmt.Sprintf("operation %s is not allowed while the volume is %s (allowed from: %s)",
			in.Operation, cur, listStates(volumeTables[in.Operation].startFrom)),
	}}
	if in.Status != nil {
		st.Operation = in.Status.Operation // the state was not reached under this operation
	}
	return &st
}

// status builds the status to write for state under the input's
// operation, with what the backend reported. If the tables do not allow
// the move from the current state, it returns nil: core never asks for a
// write outside SPEC §4.
func (in VolumeInput) status(state State, reason *Reason) *Status {
	cur, entering := in.current()
	if !Allowed(in.Operation, cur, state, entering) {
		return nil
	}
	return in.statusUnder(state, reason)
}

// statusUnder builds a status without checking it against the current
// state: used for the outcome of an action, which follows a Write.
func (in VolumeInput) statusUnder(state State, reason *Reason) *Status {
	st := &Status{StateCode: state, ErrorReason: reason, Operation: in.Operation}
	if obs, ok := in.observed(); ok {
		if obs.State == ports.ReplicationSyncing && (state == StateInitializing || state == StateMirroring) {
			p := obs.Progress
			st.Progress = &p
		}
		if !obs.LastSyncTime.IsZero() {
			t := obs.LastSyncTime
			st.LastSyncTime = &t
		}
		st.Lag = obs.Lag
	}
	return st
}

func listStates(states []State) string {
	s := ""
	for i, x := range states {
		if i > 0 {
			s += ", "
		}
		s += string(x)
	}
	return s
}

// NeedsObservation reports whether PlanVolume will look at the backend's
// report for this input, so the caller can skip asking when it will not.
func NeedsObservation(in VolumeInput) bool {
	cur, _ := in.current()
	switch in.Operation {
	case OpDestroy, OpStop:
		return false
	case OpStopAndDelete:
		return cur == StateDeleting
	case OpStart, OpResume:
		return CanStartFrom(in.Operation, cur) && (in.EnvState == StateMirroring || cur == StateInitializing || cur == StateMirroring)
	}
	return CanStartFrom(in.Operation, cur)
}
