package contract

import "errors"

// Errors the daemon acts on. Wrap them with context
// (fmt.Errorf("enable mirroring on %s: %w", image, contract.ErrPrecondition));
// the daemon tests with errors.Is after the gRPC round trip, and shows
// the message to operators, so make it say what to do.
var (
	// ErrNotFound: the thing asked for does not exist where it must (a
	// volume or snapshot on the source storage, a replication to pause).
	// Deleting or stopping something that does not exist is not an error
	// and does not return it.
	ErrNotFound = errors.New("not found")
	// ErrPrecondition: the storage is not in a state that allows the call,
	// and retrying unchanged will not help (a pool already peered with
	// another cluster, a snapshot with clones, teardown while volumes are
	// still replicated).
	ErrPrecondition = errors.New("precondition failed")
	// ErrInProgress: the work asked for cannot be done yet because other
	// work must finish first (a stop while the first copy runs); the
	// daemon looks again later without marking an error.
	ErrInProgress = errors.New("already in progress")
	// ErrRetryable: a transient failure (a cluster briefly unreachable, a
	// plugin restarting); the daemon retries with backoff. Any error that
	// wraps none of these is treated as retryable too.
	ErrRetryable = errors.New("retryable")
)
