package core

import (
	"fmt"

	"github.com/cdmdr/mirror/ports"
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

// current returns the volume's state and whether op is only now entering.
func (in VolumeInput) current() (State, bool) {
	if in.Status == nil {
		return StateNone, true
	}
	return in.Status.StateCode, in.Status.Operation != in.Operation
}

// PlanVolume decides what to do for one volume. It never plans a move the
// tables of docs/contract.md §4 do not allow: an operation asked for in a state it
// cannot start from keeps the state and gets a refusal reason.
func PlanVolume(in VolumeInput) Plan {
	cur, _ := in.current()
	if in.Operation == OpDestroy {
		return Plan{subject: SubjectVolume, Action: ActDestroy, OnSuccess: Outcome{Finish: true}, Forced: true}
	}
	if _, known := volumeTables[in.Operation]; !known && cur == StateNone {
		// Nothing to keep: the first status of a volume is never empty.
		return in.write(&Status{StateCode: StateError, ErrorReason: &Reason{
			Code:     Code(SubjectVolume, "failure", "decode_operation", "unknown_operation"),
			Contents: fmt.Sprintf("operation %s is not one of start, resume, pause, stop, stop_and_delete, destroy", Quote(string(in.Operation))),
		}})
	}
	if !CanStartFrom(in.Operation, cur) {
		return in.write(in.refused(cur))
	}
	switch in.Operation {
	case OpStart:
		return in.planStart(cur)
	case OpResume:
		return in.planResume(cur)
	case OpPause:
		return in.planPause(cur)
	case OpStop:
		return in.planStop()
	case OpStopAndDelete:
		return in.planStopAndDelete(cur)
	}
	return in.write(in.refused(cur))
}

func (in VolumeInput) planStart(cur State) Plan {
	switch cur {
	case StateInitializing, StateMirroring:
		return in.follow(cur)
	}
	// no status, waiting or error: the start process runs once the
	// environment is ready.
	if in.EnvState != StateMirroring {
		return in.write(in.status(StateWaiting, in.waitingReason()))
	}
	obs, next := in.report()
	if next != nil {
		return *next
	}
	switch obs.State {
	case ports.ReplicationReplaying:
		if cur == StateWaiting { // waiting → mirroring is no arrow: pass through initializing
			return in.write(in.status(StateInitializing, nil))
		}
		return in.write(in.status(StateMirroring, nil))
	case ports.ReplicationSyncing:
		return in.write(in.status(StateInitializing, nil))
	case ports.ReplicationFailed:
		return in.write(in.status(StateError, in.backendFailedReason(obs)))
	}
	return in.act(ActStart, Outcome{Write: in.status(StateInitializing, nil)})
}

func (in VolumeInput) planResume(cur State) Plan {
	switch cur {
	case StateInitializing, StateMirroring:
		return in.follow(cur)
	}
	// no status, paused or error
	if in.EnvState != StateMirroring {
		if cur == StateNone {
			return Plan{} // resume has no waiting state; look again later
		}
		return in.write(in.status(cur, in.waitingReason()))
	}
	obs, next := in.report()
	if next != nil {
		return *next
	}
	switch obs.State {
	case ports.ReplicationReplaying:
		if cur == StateNone {
			return in.write(in.status(StateMirroring, nil))
		}
		return in.write(in.status(StateInitializing, nil))
	case ports.ReplicationSyncing:
		return in.write(in.status(StateInitializing, nil))
	case ports.ReplicationFailed:
		if cur == StateError {
			// An explicit resume of a failed replication asks the backend
			// to restart replay (it may have to resync: the operator asked
			// for it). start never does this on its own: a split brain
			// waits for a person.
			return in.act(ActResume, Outcome{Write: in.status(StateInitializing, nil)})
		}
		return in.write(in.status(StateError, in.backendFailedReason(obs)))
	case ports.ReplicationAbsent:
		// Nothing left to resume: set replication up again.
		return in.act(ActStart, Outcome{Write: in.status(StateInitializing, nil)})
	}
	return in.act(ActResume, Outcome{Write: in.status(StateInitializing, nil)})
}

func (in VolumeInput) planPause(cur State) Plan {
	obs, next := in.report()
	if next != nil {
		return *next
	}
	switch obs.State {
	case ports.ReplicationPaused:
		return in.write(in.status(StatePaused, nil))
	case ports.ReplicationAbsent:
		return in.pauseAbsent(cur)
	case ports.ReplicationFailed:
		if cur == StatePaused {
			return in.write(in.status(StateError, in.backendFailedReason(obs)))
		}
	}
	// Replaying or syncing (a pause the backend forgot, for example after
	// a restart, is applied again), or failed while not yet paused.
	return in.act(ActPause, Outcome{Write: in.status(StatePaused, nil)})
}

// pauseAbsent is pause when the backend has no replication. A volume that
// was replicated (a status other than the never-started error) and lost
// its replication (a restarted plugin, an operator's hand) is set up
// again, then paused (docs/contract.md §4.3), as start sets up a mirroring
// volume again: error with the lost reason first (paused → initializing is
// no arrow of pause, error is), then the start process from error, then
// the pause from what the backend reports. Only a volume that was never
// started keeps the clear error: there is nothing to pause.
func (in VolumeInput) pauseAbsent(cur State) Plan {
	if !in.everStarted() {
		return in.write(in.status(StateError, &Reason{
			Code:     notReplicatedCode,
			Contents: "the volume is not replicated on the backend, so there is nothing to pause; start it first",
		}))
	}
	if cur != StateError {
		return in.write(in.status(StateError, &Reason{
			Code:     Code(SubjectVolume, "failure", "replication", "lost"),
			Contents: "the backend no longer replicates this volume; it will be set up again, then paused",
		}))
	}
	// The state stays error until the pause lands on the next pass.
	return in.act(ActStart, Outcome{})
}

// notReplicatedCode is the reason of a pause of a volume never started.
var notReplicatedCode = Code(SubjectVolume, "failure", "pause", "not_replicated")

// everStarted reports whether the volume's status says replication was
// ever asked for: any status but none and the error a pause of a never
// started volume leaves (notReplicatedCode).
func (in VolumeInput) everStarted() bool {
	if in.Status == nil {
		return false
	}
	r := in.Status.ErrorReason
	return in.Status.StateCode != StateError || r == nil || r.Code != notReplicatedCode
}

// planStop stops, keeping the target. It looks at the backend first on
// every pass, even though the stop itself does not depend on the report:
// a stop that waits for the first copy keeps observing the copy (its
// progress shows in the status, and a backend may advance only when
// watched). A failed look does not hold the stop back.
func (in VolumeInput) planStop() Plan {
	if !in.asked() {
		return observeFirst
	}
	if in.deletedByStopAndDelete() {
		return in.write(in.refusedTargetGone())
	}
	p := in.act(ActStop, Outcome{Finish: true})
	p.Write = in.status(StateStopping, in.stillWaiting(ActStop))
	p.OnInProgress = p.Write // the stop waits for the first copy, saying so
	return p
}

func (in VolumeInput) planStopAndDelete(cur State) Plan {
	if cur == StateStopping {
		// In stopping the deletion may be done already (the daemon died
		// between it and writing deleting): look first, so that the target
		// is deleted once. A failed look does not hold the delete back.
		if !in.asked() {
			return observeFirst
		}
		if obs := in.Observed; obs != nil && obs.State == ports.ReplicationAbsent && !obs.TargetExists {
			return in.write(in.status(StateDeleting, nil))
		}
	}
	if cur != StateDeleting {
		p := in.act(ActDeleteTarget, Outcome{Write: in.statusUnder(StateDeleting, nil)})
		p.Write = in.status(StateStopping, nil)
		p.OnInProgress = p.Write
		return p
	}
	obs, next := in.report()
	if next != nil {
		return *next
	}
	if obs.State == ports.ReplicationAbsent && !obs.TargetExists {
		return Plan{OnSuccess: Outcome{Finish: true}}
	}
	// The target is still there: ask again (idempotent) and keep waiting.
	return in.act(ActDeleteTarget, Outcome{Write: in.status(StateDeleting, nil)})
}

// deletedByStopAndDelete reports whether a stop_and_delete under way
// (its status) has deleted the target already, as the backend reports:
// a daemon died between the deletion and writing deleting, or the stop
// was written meanwhile.
func (in VolumeInput) deletedByStopAndDelete() bool {
	obs := in.Observed
	return in.Status != nil && in.Status.Operation == OpStopAndDelete &&
		obs != nil && obs.State == ports.ReplicationAbsent && !obs.TargetExists
}

// refusedTargetGone refuses a stop whose target copy a stop_and_delete
// deleted: there is no copy left to keep, so it cannot end as a stop
// (docs/contract.md §4.3). The state is kept, as for any refusal.
func (in VolumeInput) refusedTargetGone() *Status {
	st := in.refused(in.Status.StateCode)
	st.ErrorReason.Contents = fmt.Sprintf("operation %s is not allowed: the %s under way already deleted the target copy a stop would keep; "+
		"write %s to end the volume", in.Operation, OpStopAndDelete, OpStopAndDelete)
	return st
}

// follow tracks a volume whose start or resume already ran.
func (in VolumeInput) follow(cur State) Plan {
	obs, next := in.report()
	if next != nil {
		return *next
	}
	switch obs.State {
	case ports.ReplicationReplaying:
		return in.write(in.status(StateMirroring, nil))
	case ports.ReplicationSyncing:
		// A resync after mirroring stays "mirroring" (there is no arrow
		// back to initializing); its progress shows in the status.
		return in.write(in.status(cur, nil))
	case ports.ReplicationFailed:
		return in.write(in.status(StateError, in.backendFailedReason(obs)))
	case ports.ReplicationPaused:
		return in.act(ActResume, Outcome{Write: in.status(cur, nil)})
	}
	return in.write(in.status(StateError, &Reason{
		Code:     Code(SubjectVolume, "failure", "replication", "lost"),
		Contents: "the backend no longer replicates this volume; it will be started again",
	}))
}

// write is the plan that only writes st.
func (in VolumeInput) write(st *Status) Plan {
	return Plan{subject: SubjectVolume, Write: st}
}

// act is the plan that runs a and then follows success; a failure is an
// error status, and the backend saying the work is under way changes
// nothing (unless the caller sets OnInProgress).
func (in VolumeInput) act(a Action, success Outcome) Plan {
	return Plan{subject: SubjectVolume, Action: a, OnSuccess: success, OnFailure: in.statusUnder(StateError, nil)}
}

// stillWaiting is the waiting reason a retried action keeps until it
// goes through, so each retry does not clear and rewrite it.
func (in VolumeInput) stillWaiting(a Action) *Reason {
	if in.Status == nil || in.Status.ErrorReason == nil {
		return nil
	}
	if in.Status.ErrorReason.Code != Code(SubjectVolume, "waiting", string(a), "in_progress") {
		return nil
	}
	return in.Status.ErrorReason
}

// asked reports whether the backend was asked for its report.
func (in VolumeInput) asked() bool { return in.Observed != nil || in.ObserveErr != nil }

// report returns the backend's report. When there is none yet, or the
// backend could not answer, it returns the plan to follow instead:
// observe first, or write the error.
func (in VolumeInput) report() (ports.VolumeReplication, *Plan) {
	if !in.asked() {
		return ports.VolumeReplication{}, &observeFirst
	}
	if in.Observed == nil {
		p := in.write(in.status(StateError, FailureReason(SubjectVolume, "observe", in.ObserveErr)))
		return ports.VolumeReplication{}, &p
	}
	return *in.Observed, nil
}

func (in VolumeInput) waitingReason() *Reason {
	state := string(in.EnvState)
	if in.EnvState == StateNone {
		state = "not yet started"
	}
	return &Reason{
		Code:     Code(SubjectVolume, "waiting", "environment", "not_ready"),
		Contents: fmt.Sprintf("waiting for the environment to be mirroring; it is %s", state),
	}
}

func (in VolumeInput) backendFailedReason(obs ports.VolumeReplication) *Reason {
	desc := obs.Description
	if desc == "" {
		desc = "no description given"
	}
	return &Reason{Code: Code(SubjectVolume, "failure", "replication", "backend_error"), Contents: "the backend reports a replication error: " + desc}
}

func (in VolumeInput) refused(cur State) *Status {
	st := Status{StateCode: cur, ErrorReason: &Reason{
		Code: Code(SubjectVolume, "refused", "operation", string(in.Operation)),
		Contents: fmt.Sprintf("operation %s is not allowed while the volume is %s (allowed from: %s)",
			in.Operation, cur, listStates(volumeTables[in.Operation].startFrom)),
	}}
	if in.Status != nil {
		st.Operation = in.Status.Operation // the state was not reached under this operation
	}
	st.KeptRecoveryPoint = in.kept()
	return &st
}

// status builds the status to write for state under the input's
// operation, with what the backend reported. If the tables do not allow
// the move from the current state, it returns nil: core never asks for a
// write outside docs/contract.md §4.
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
	st := &Status{StateCode: state, ErrorReason: reason, Operation: in.Operation, KeptRecoveryPoint: in.kept()}
	if obs := in.Observed; obs != nil {
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

// kept is the recovery point the backend kept for the volume, as its
// report says; without a report, the one the status records already, so
// a status written without looking (a refusal, a failed look) neither
// drops it nor announces it again.
func (in VolumeInput) kept() *KeptRecoveryPoint {
	if obs := in.Observed; obs != nil {
		return KeptPointOf(obs.Kept)
	}
	if in.Status != nil {
		return in.Status.KeptRecoveryPoint
	}
	return nil
}

// KeptPointOf is the status field for the backend's kept point; nil when
// none stands. Times are written in UTC.
func KeptPointOf(k ports.KeptPoint) *KeptRecoveryPoint {
	if k.Name == "" {
		return nil
	}
	kp := &KeptRecoveryPoint{Name: k.Name}
	if !k.Taken.IsZero() {
		t := k.Taken.UTC()
		kp.TakenAt = &t
	}
	return kp
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
