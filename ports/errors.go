package ports

import (
	"errors"

	"github.com/cdmdr/mirror/plugins/sdk/contract"
)

// Sentinel errors shared by every port. Implementations wrap them with
// context (fmt.Errorf("...: %w", ports.ErrNotFound)); callers test with
// errors.Is.
var (
	// ErrNotFound means the thing asked for does not exist: a key, or
	// what a storage backend was asked about. Deleting something that does
	// not exist is not an error and does not return it. It is the storage
	// contract's own value, so a backend's error needs no translation.
	ErrNotFound = contract.ErrNotFound

	// ErrConflict means a compare-and-swap lost, or a guard of a fenced
	// Delete failed: the key's revision was not the one expected.
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

	// ErrPrecondition, ErrInProgress and ErrRetryable are the storage
	// contract's (contract.ErrPrecondition, ...): a backend refusing a call
	// the storage's state does not allow, work that must wait for other
	// work (a stop during the first copy), a transient failure (a plugin
	// restarting, a cluster briefly unreachable; retried with backoff).
	ErrPrecondition = contract.ErrPrecondition
	ErrInProgress   = contract.ErrInProgress
	ErrRetryable    = contract.ErrRetryable
)
