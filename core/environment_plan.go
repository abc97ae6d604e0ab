package core

import (
	"fmt"
	"slices"
	"strings"

	"github.com/cdmdr/mirror/ports"
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

// PlanEnvironment decides what to do for one environment (docs/contract.md §3).
func PlanEnvironment(in EnvironmentInput) Plan {
	switch in.Operation {
	case OpStart:
		if in.Observed == nil && in.ObserveErr == nil {
			return observeFirst
		}
		if in.Observed == nil {
			return in.write(in.status(StateError, FailureReason(SubjectEnvironment, "observe", in.ObserveErr)))
		}
		if in.Observed.Ready {
			return in.write(in.status(StateMirroring, nil))
		}
		// Not ready: prepare (idempotent), showing initializing meanwhile,
		// with what the backend says is missing (written again only when
		// it changes). An environment in error stays in error while it
		// retries, so the failure's reason stays visible. A ready one stays
		// mirroring while it is prepared again: a new leader on another
		// host finds the work the old host ran for it gone, and a takeover
		// is no change of state (only a failed prepare is).
		if in.Status != nil && in.Status.StateCode == StateMirroring {
			return in.act(ActPrepare, Outcome{})
		}
		p := in.act(ActPrepare, Outcome{Write: in.status(StateMirroring, nil)})
		if in.Status == nil || in.Status.StateCode != StateError {
			p.Write = in.status(StateInitializing, notReadyReason(in.Observed.Description))
		}
		return p
	case OpStop:
		if n := len(in.Volumes); n > 0 {
			return in.write(in.status(StateStopping, &Reason{
				Code:     Code(SubjectEnvironment, "waiting", "stop", "volumes_remain"),
				Contents: fmt.Sprintf("%d volume(s) of this environment are still replicated: %s; stop them first", n, sample(in.Volumes, 5)),
			}))
		}
		p := in.act(ActTeardown, Outcome{Finish: true})
		p.Write = in.status(StateStopping, nil)
		return p
	}
	return in.write(in.status(StateError, &Reason{
		Code:     Code(SubjectEnvironment, "refused", "operation", "unknown_operation"),
		Contents: fmt.Sprintf("operation %s is not an environment operation (start, stop)", Quote(string(in.Operation))),
	}))
}

// notReadyReason is the waiting reason of an environment being prepared:
// the backend's own words on what is missing.
func notReadyReason(description string) *Reason {
	if strings.TrimSpace(description) == "" {
		description = "the backend gives no details"
	}
	return &Reason{
		Code:     Code(SubjectEnvironment, "waiting", "prepare", "not_ready"),
		Contents: "the environment is not ready yet, preparing it: " + description,
	}
}

func (in EnvironmentInput) write(st *Status) Plan {
	return Plan{subject: SubjectEnvironment, Write: st}
}

// act runs a; a failure is an error status, and the backend saying the
// work is under way changes nothing.
func (in EnvironmentInput) act(a Action, success Outcome) Plan {
	return Plan{subject: SubjectEnvironment, Action: a, OnSuccess: success, OnFailure: in.status(StateError, nil)}
}

func (in EnvironmentInput) status(state State, reason *Reason) *Status {
	return &Status{StateCode: state, ErrorReason: reason, Operation: in.Operation, UnintendedReplicas: in.unintended()}
}

// unintended is the list of replicas nobody asked for, as the backend's
// report says, sorted so that its order never rewrites the status;
// without a report, the list the status holds already.
func (in EnvironmentInput) unintended() []string {
	if in.Observed == nil {
		if in.Status != nil {
			return in.Status.UnintendedReplicas
		}
		return nil
	}
	if len(in.Observed.Unintended) == 0 {
		return nil
	}
	out := slices.Clone(in.Observed.Unintended)
	slices.Sort(out)
	return slices.Compact(out)
}

func sample(keys []string, n int) string {
	if len(keys) <= n {
		return strings.Join(keys, ", ")
	}
	return strings.Join(keys[:n], ", ") + fmt.Sprintf(" and %d more", len(keys)-n)
}
