package sdk

import "errors"

// Errors the daemon acts on. Wrap them with context
// (fmt.Errorf("enable mirroring on %s: %w", image, sdk.ErrPrecondition));
// the daemon tests with errors.Is after the gRPC round trip, and shows
// the message to operators, so make it say what to do.
var (
	// ErrNotFound: the volume or snapshot does not exist where it must.
	ErrNotFound = errors.New("not found")
	// ErrPrecondition: the storage is not in a state that allows the call,
	// and retrying unchanged will not help (a pool already peered with
	// another cluster, a snapshot with clones, teardown while volumes are
	// still replicated).
	ErrPrecondition = errors.New("precondition failed")
	// ErrInProgress: the same work is already under way; the daemon looks
	// again later without marking an error.
	ErrInProgress = errors.New("already in progress")
	// ErrRetryable: a transient failure (a cluster briefly unreachable);
	// the daemon retries with backoff. Any error that wraps none of these
	// is treated as retryable too.
	ErrRetryable = errors.New("retryable")
)
