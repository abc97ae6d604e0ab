package ports

import "context"

// KeyValue is one key as stored, with the store's revisions.
type KeyValue struct {
	Key   string
	Value []byte
	// CreateRevision is the store revision at which the key was created.
	CreateRevision int64
	// ModRevision is the store revision of the key's last change.
	ModRevision int64
}

// EventType says whether a watched key was written or deleted.
type EventType int

const (
	// EventPut is a create or an update of a key.
	EventPut EventType = iota + 1
	// EventDelete is the removal of a key; Value is empty.
	EventDelete
)

// WatchEvent is one change seen by a watch. When Err is set the watch has
// ended (ErrCompacted: re-list and watch again) and the other fields are zero.
type WatchEvent struct {
	Type EventType
	KV   KeyValue
	Err  error
}

// KV is a revisioned key-value store (etcd, or the in-memory fake).
// Keys are plain strings; a prefix matches by byte prefix, so callers that
// want "children of a/b" pass "a/b/" and not "a/b".
type KV interface {
	// Get returns the key, or ErrNotFound when it does not exist.
	Get(ctx context.Context, key string) (KeyValue, error)

	// List returns every key under prefix, sorted by key, and the store
	// revision the listing was read at (watch from revision+1 to miss
	// nothing). An empty result is not an error.
	List(ctx context.Context, prefix string) ([]KeyValue, int64, error)

	// Put writes value unconditionally and returns the new revision.
	Put(ctx context.Context, key string, value []byte) (int64, error)

	// CompareAndSwap writes value only if the key's ModRevision equals
	// expected; expected 0 means "only if the key does not exist". It returns
	// ErrConflict, with nothing written, when the condition fails.
	CompareAndSwap(ctx context.Context, key string, value []byte, expected int64) (int64, error)

	// Delete removes the key. Deleting a missing key succeeds.
	Delete(ctx context.Context, key string) error

	// DeletePrefix removes every key under prefix; none is not an error.
	DeletePrefix(ctx context.Context, prefix string) error

	// Watch streams every change under prefix from revision fromRevision
	// (inclusive; 0 means "from now") in revision order. The channel is
	// closed when ctx ends. If fromRevision was compacted the stream sends
	// one event with Err = ErrCompacted and closes. Transient disconnections
	// are the implementation's business: it resumes from the last delivered
	// revision and never skips or repeats an event silently.
	Watch(ctx context.Context, prefix string, fromRevision int64) <-chan WatchEvent
}
