package core

import (
	"github.com/cdmdr/mirror/ports"
)

// SnapshotInput is everything the snapshot rules look at.
type SnapshotInput struct {
	Record SnapshotRecord
	Status *Status
	// VolumeState is the state of the snapshot's volume.
	VolumeState State
	// Observed is the backend's report, nil when ObserveErr is set or the
	// backend was not asked.
	Observed   *ports.SnapshotReplication
	ObserveErr error
}

// PlanSnapshot decides what to do for one snapshot record (docs/contract.md §5): an
// added snapshot becomes a recovery point on the target ("mirroring" until
// the target has it, then "mirrored"); a deleted one is removed from both
// sides ("deleting"), then its records are deleted.
func PlanSnapshot(in SnapshotInput) Plan {
	if in.Record.Deleted {
		p := snapshotAct(ActRemoveSnapshot, Outcome{Finish: true})
		p.Write = status(SnapshotDeleting, nil)
		return p
	}
	if !replicating(in.VolumeState) {
		// Recorded; handled once the volume replicates.
		if in.Status == nil {
			return Plan{subject: SubjectSnapshot, Write: status(SnapshotMirroring, nil)}
		}
		return Plan{}
	}
	if in.Observed == nil && in.ObserveErr == nil {
		return observeFirst
	}
	if in.Observed == nil {
		return Plan{subject: SubjectSnapshot, Write: status(SnapshotError, FailureReason(SubjectSnapshot, "observe", in.ObserveErr))}
	}
	switch in.Observed.State {
	case ports.SnapshotReady:
		return Plan{subject: SubjectSnapshot, Write: status(SnapshotMirrored, nil)}
	case ports.SnapshotPending:
		return Plan{subject: SubjectSnapshot, Write: status(SnapshotMirroring, nil)}
	}
	p := snapshotAct(ActAddSnapshot, Outcome{Write: status(SnapshotMirroring, nil)})
	p.Write = status(SnapshotMirroring, nil)
	return p
}

// snapshotAct runs a; a failure is an error status, and the backend saying
// the work is under way changes nothing.
func snapshotAct(a Action, success Outcome) Plan {
	return Plan{subject: SubjectSnapshot, Action: a, OnSuccess: success, OnFailure: status(SnapshotError, nil)}
}

func replicating(s State) bool {
	return s == StateInitializing || s == StateMirroring || s == StatePaused
}

func status(state State, reason *Reason) *Status {
	return &Status{StateCode: state, ErrorReason: reason}
}
