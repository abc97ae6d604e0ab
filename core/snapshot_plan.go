package core

import (
	"errors"

	"github.com/cdmdr/mirror/ports"
)

// SnapshotAction is the backend call a snapshot plan asks for.
type SnapshotAction string

// Snapshot actions.
const (
	SnapActNone   SnapshotAction = ""
	SnapActAdd    SnapshotAction = "add_snapshot"
	SnapActRemove SnapshotAction = "remove_snapshot"
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

// SnapshotPlan is the decision for one snapshot record.
type SnapshotPlan struct {
	Write     *Status
	Action    SnapshotAction
	OnSuccess Outcome
}

// SnapshotNeedsObservation reports whether PlanSnapshot will look at the
// backend, so callers skip the call when it will not.
func SnapshotNeedsObservation(in SnapshotInput) bool {
	return !in.Record.Deleted && replicating(in.VolumeState)
}

// PlanSnapshot decides what to do for one snapshot record (SPEC §5): an
// added snapshot becomes a recovery point on the target ("mirroring" until
// the target has it, then "mirrored"); a deleted one is removed from both
// sides ("deleting"), then its records are deleted.
func PlanSnapshot(in SnapshotInput) SnapshotPlan {
	if in.Record.Deleted {
		return SnapshotPlan{Write: status(SnapshotDeleting, nil), Action: SnapActRemove, OnSuccess: Outcome{Finish: true}}
	}
	if !replicating(in.VolumeState) {
		// Recorded; handled once the volume replicates.
		if in.Status == nil {
			return SnapshotPlan{Write: status(SnapshotMirroring, nil)}
		}
		return SnapshotPlan{}
	}
	if in.Observed == nil {
		err := in.ObserveErr
		if err == nil {
			err = errors.New("the backend was not asked")
		}
		return SnapshotPlan{Write: status(SnapshotError, FailureReason("snapshot", "observe", err))}
	}
	switch in.Observed.State {
	case ports.SnapshotReady:
		return SnapshotPlan{Write: status(SnapshotMirrored, nil)}
	case ports.SnapshotPending:
		return SnapshotPlan{Write: status(SnapshotMirroring, nil)}
	}
	return SnapshotPlan{Write: status(SnapshotMirroring, nil), Action: SnapActAdd, OnSuccess: Outcome{Write: status(SnapshotMirroring, nil)}}
}

// Failed is the outcome of a snapshot plan whose action failed with err.
func (in SnapshotInput) Failed(p SnapshotPlan, err error) Outcome {
	if errors.Is(err, ports.ErrInProgress) {
		return Outcome{}
	}
	return Outcome{Write: status(SnapshotError, FailureReason("snapshot", string(p.Action), err))}
}

func replicating(s State) bool {
	return s == StateInitializing || s == StateMirroring || s == StatePaused
}

func status(state State, reason *Reason) *Status {
	return &Status{StateCode: state, ErrorReason: reason}
}
