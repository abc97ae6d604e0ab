package core

import (
	"errors"
	"fmt"
	"strings"

	"github.com/cdmdr/mirror/ports"
)

// EnvironmentAction is the backend call an environment plan asks for.
type EnvironmentAction string

// Environment actions.
const (
	EnvActNone     EnvironmentAction = ""
	EnvActPrepare  EnvironmentAction = "prepare"
	EnvActTeardown EnvironmentAction = "teardown"
)

// EnvironmentInput is everything the environment rules look at.
type EnvironmentInput struct {
	Operation Operation
	Status    *Status
	// Observed is the backend's report, nil when ObserveErr is set.
	Observed   *ports.EnvironmentHealth
	ObserveErr error
	// Volumes are the keys of the mirror volumes still present in the
	// environment.
	Volumes []string
}

// EnvironmentPlan is the decision for one reconcile of one environment:
// write Write, then run Action; on success apply OnSuccess.
type EnvironmentPlan struct {
	Write     *Status
	Action    EnvironmentAction
	OnSuccess Outcome
}

// PlanEnvironment decides what to do for one environment (SPEC §3).
func PlanEnvironment(in EnvironmentInput) EnvironmentPlan {
	switch in.Operation {
	case OpStart:
		if in.Observed == nil {
			return EnvironmentPlan{Write: in.status(StateError, FailureReason("environment", "observe", in.observeErr()))}
		}
		if in.Observed.Ready {
			return EnvironmentPlan{Write: in.status(StateMirroring, nil)}
		}
		// Not ready: prepare (idempotent), showing initializing meanwhile.
		// An environment in error stays in error while it retries, so the
		// reason stays visible.
		write := in.status(StateInitializing, nil)
		if in.Status != nil && in.Status.StateCode == StateError {
			write = nil
		}
		return EnvironmentPlan{Write: write, Action: EnvActPrepare, OnSuccess: Outcome{Write: in.status(StateMirroring, nil)}}
	case OpStop:
		if n := len(in.Volumes); n > 0 {
			return EnvironmentPlan{Write: in.status(StateStopping, &Reason{
				Code:     Code("environment", "waiting", "stop", "volumes_remain"),
				Contents: fmt.Sprintf("%d volume(s) of this environment are still replicated: %s; stop them first", n, sample(in.Volumes, 5)),
			})}
		}
		return EnvironmentPlan{Write: in.status(StateStopping, nil), Action: EnvActTeardown, OnSuccess: Outcome{Finish: true}}
	}
	return EnvironmentPlan{Write: in.status(StateError, &Reason{
		Code:     Code("environment", "refused", "operation", "unknown_operation"),
		Contents: fmt.Sprintf("operation %q is not an environment operation (start, stop)", in.Operation),
	})}
}

// Failed is the outcome of a plan whose action failed with err.
func (in EnvironmentInput) Failed(p EnvironmentPlan, err error) Outcome {
	if errors.Is(err, ports.ErrInProgress) {
		return Outcome{}
	}
	return Outcome{Write: in.status(StateError, FailureReason("environment", string(p.Action), err))}
}

func (in EnvironmentInput) observeErr() error {
	if in.ObserveErr != nil {
		return in.ObserveErr
	}
	return errors.New("the backend was not asked")
}

func (in EnvironmentInput) status(state State, reason *Reason) *Status {
	return &Status{StateCode: state, ErrorReason: reason, Operation: in.Operation}
}

func sample(keys []string, n int) string {
	if len(keys) <= n {
		return strings.Join(keys, ", ")
	}
	return strings.Join(keys[:n], ", ") + fmt.Sprintf(" and %d more", len(keys)-n)
}
