package ports

import "errors"

// Sentinel errors shared by every port. Implementations wrap them with
// context (fmt.Errorf("...: %w", ports.ErrNotFound)); callers test with
// errors.Is.
var (
	// ErrNotFound means the thing asked for does not exist. Deleting
	// something that does not exist is not an error and does not return it.
	ErrNotFound = errors.New("not found")

	// ErrConflict means a compare-and-swap lost: the key's revision was not
	// the one expected.
	ErrConflict = errors.New("revision conflict")

	// ErrCompacted means a watch asked for a revision the store has already
	// compacted away. The watcher must re-list and watch again from the
	// revision of that listing.
	ErrCompacted = errors.New("revision compacted")

	// ErrNotLeader means this daemon does not (or no longer) lead the key a
	// fenced write was made under, so the write was not applied.
	ErrNotLeader = errors.New("not the leader")

	// ErrLeaderElsewhere means another daemon holds the leadership asked for.
	ErrLeaderElsewhere = errors.New("led by another daemon")

	// ErrNoBackend means no storage backend serves the requested storage type.
	ErrNoBackend = errors.New("no backend for storage type")

	// ErrPrecondition means the backend refused because the storage is not in
	// a state that allows the call (for example an environment teardown while
	// images are still mirrored, or a pool already peered elsewhere). Retrying
	// the same call unchanged will not help.
	ErrPrecondition = errors.New("precondition failed")

	// ErrInProgress means the same operation is already running on the
	// backend; the caller should look again later.
	ErrInProgress = errors.New("already in progress")

	// ErrRetryable marks a transient failure (a plugin restarting, a cluster
	// briefly unreachable). The caller retries with backoff.
	ErrRetryable = errors.New("retryable")
)
