package core

import (
	"context"
	"errors"
	"fmt"

	"github.com/cdmdr/mirror/ports"
)

// CodePrefix starts every error_reason code, in the original's style
// ("cdm-dr.mirror.volume_worker_run.failure-create_storage-unknown").
const CodePrefix = "cdm-dr.mirror."

// Code builds a stable dotted code: cdm-dr.mirror.{subject}.{kind}-{step}-{cause}.
// subject is volume, environment or snapshot; kind is failure, waiting or
// refused in statuses; step names what was being done; cause is one word.
// Events carry the same codes, and a few of their own: FinishedCode,
// LeftoversCode, KeptPointCode and UnintendedCode.
func Code(subject, kind, step, cause string) string {
	return CodePrefix + subject + "." + kind + "-" + step + "-" + cause
}

// BadKeyCode is the event reporting a key under mirror_environment/ or
// mirror_volume/ that is none of docs/contract.md §2.1's forms: it has no
// status to carry an error, so an event says it is ignored.
func BadKeyCode() string { return Code("key", "failure", "parse_key", "malformed") }

// Cause classifies an error into the one-word cause used in codes.
func Cause(err error) string {
	switch {
	case err == nil:
		return "none"
	case errors.Is(err, ErrMalformed):
		return "malformed"
	case errors.Is(err, ErrContradiction):
		return "contradiction"
	case errors.Is(err, ErrUnknownOperation):
		return "unknown_operation"
	case errors.Is(err, ports.ErrNoBackend):
		return "no_backend"
	case errors.Is(err, ports.ErrNotFound):
		return "not_found"
	case errors.Is(err, ports.ErrPrecondition):
		return "precondition"
	case errors.Is(err, ports.ErrInProgress):
		return "in_progress"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, ports.ErrRetryable):
		return "unavailable"
	}
	return "unknown"
}

// FailureReason is the error_reason for err met while doing step.
func FailureReason(subject, step string, err error) *Reason {
	return &Reason{Code: Code(subject, "failure", step, Cause(err)), Contents: fmt.Sprintf("%s failed: %v", step, err)}
}

// FinishedCode is the event code of an operation that ended with its
// resource's keys deleted: cdm-dr.mirror.{subject}.finished-{operation}.
func FinishedCode(subject string, op Operation) string {
	return CodePrefix + subject + ".finished-" + string(op)
}

// LeftoversCode is the event code of an operation that ended with its
// resource's keys deleted but left something on a storage, listed in the
// event: cdm-dr.mirror.{subject}.{operation}-leftovers-found (a volume's
// destroy or stop, an environment's stop).
func LeftoversCode(subject string, op Operation) string {
	return Code(subject, string(op), "leftovers", "found")
}

// KeptPointCode is the event code of a volume whose status newly records
// a kept recovery point (docs/contract.md §2.4):
// cdm-dr.mirror.volume.recovery-point-kept.
func KeptPointCode() string {
	return Code(SubjectVolume, "recovery", "point", "kept")
}

// UnintendedCode is the event code of an environment whose status newly
// lists replicas no volume asked for, or lists others:
// cdm-dr.mirror.environment.unintended-replicas-found.
func UnintendedCode() string {
	return Code(SubjectEnvironment, "unintended", "replicas", "found")
}
