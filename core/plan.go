package core

import (
	"errors"
	"fmt"

	"github.com/cdmdr/mirror/ports"
)

// Action is the one backend call a plan asks for. Its name is the step in
// the reason code of its failure (failure-{action}-{cause}).
type Action string

// Actions.
const (
	ActNone Action = ""
	// Volume actions.
	ActStart        Action = "start"
	ActResume       Action = "resume"
	ActPause        Action = "pause"
	ActStop         Action = "stop"
	ActDeleteTarget Action = "delete_target"
	ActDestroy      Action = "destroy"
	// Environment actions.
	ActPrepare  Action = "prepare"
	ActTeardown Action = "teardown"
	// Snapshot actions.
	ActAddSnapshot    Action = "add_snapshot"
	ActRemoveSnapshot Action = "remove_snapshot"
)

// Plan is the decision of one reconcile, for environments, volumes and
// snapshots alike. Carrying it out is one protocol:
//
//  1. Observe: the rules need the backend's report. Ask the backend, put
//     the report (or the error) in the input, and plan again. The planners
//     ask exactly where they read the report, so no caller guesses it.
//  2. Write Write, if set.
//  3. Run Action, if any. On success, or with no action, OnSuccess
//     follows; on failure, Failed(err).
//  4. Write the outcome's status; if the outcome finishes the operation,
//     delete the resource's keys.
type Plan struct {
	Observe   bool
	Write     *Status
	Action    Action
	OnSuccess Outcome
	// OnFailure is the status written when Action fails, its reason made
	// from the error; nil writes nothing.
	OnFailure *Status
	// OnInProgress is the status written when the backend answers that the
	// action's work is still under way (ErrInProgress: look again later),
	// with a waiting reason that says why; nil writes nothing.
	OnInProgress *Status
	// Forced: the action ends the operation whether it succeeds or not
	// (destroy: never left in error, the keys are always removed).
	Forced bool
	// subject names the plan's kind in reason codes.
	subject string
}

// Outcome is what follows an action: a status to write, the end of the
// operation (delete the keys), or nothing.
type Outcome struct {
	Write *Status
	// Finish: the operation is over; the keys it concerns are deleted.
	Finish bool
}

// observeFirst is the plan that asks for the backend's report.
var observeFirst = Plan{Observe: true}

// Failed is the outcome of the plan's action failing with err.
func (p Plan) Failed(err error) Outcome {
	if p.Forced {
		return Outcome{Finish: true}
	}
	if errors.Is(err, ports.ErrInProgress) {
		if p.OnInProgress == nil {
			return Outcome{}
		}
		st := *p.OnInProgress
		st.ErrorReason = &Reason{
			Code:     Code(p.subject, "waiting", string(p.Action), "in_progress"),
			Contents: fmt.Sprintf("%s waits: %v", p.Action, err),
		}
		return Outcome{Write: &st}
	}
	if p.OnFailure == nil {
		return Outcome{}
	}
	st := *p.OnFailure
	st.ErrorReason = FailureReason(p.subject, string(p.Action), err)
	return Outcome{Write: &st}
}
