package sdk

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// toStatus carries an error across gRPC: its message, and which of the
// SDK's errors it wraps as the status code.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	code := codes.Unknown
	switch {
	case errors.Is(err, ErrNotFound):
		code = codes.NotFound
	case errors.Is(err, ErrPrecondition):
		code = codes.FailedPrecondition
	case errors.Is(err, ErrInProgress):
		code = codes.Aborted
	case errors.Is(err, ErrRetryable):
		code = codes.Unavailable
	case errors.Is(err, context.Canceled):
		code = codes.Canceled
	case errors.Is(err, context.DeadlineExceeded):
		code = codes.DeadlineExceeded
	}
	return status.Error(code, err.Error())
}

// RemoteError is an error that came back from a plugin. Error is the
// plugin's message; Unwrap is the SDK error (or context error) its status
// code stands for, so errors.Is works across the process boundary.
type RemoteError struct {
	Message string
	Kind    error
}

func (e *RemoteError) Error() string { return e.Message }
func (e *RemoteError) Unwrap() error { return e.Kind }

// fromStatus turns a gRPC error back into an error the daemon can test.
// A plugin that cannot be reached (Unavailable: crashed, exiting) is
// ErrRetryable.
func fromStatus(err error) error {
	if err == nil {
		return nil
	}
	st, ok := status.FromError(err)
	if !ok {
		return err
	}
	var kind error
	switch st.Code() {
	case codes.NotFound:
		kind = ErrNotFound
	case codes.FailedPrecondition:
		kind = ErrPrecondition
	case codes.Aborted:
		kind = ErrInProgress
	case codes.Unavailable:
		kind = ErrRetryable
	case codes.Canceled:
		kind = context.Canceled
	case codes.DeadlineExceeded:
		kind = context.DeadlineExceeded
	}
	return &RemoteError{Message: st.Message(), Kind: kind}
}
