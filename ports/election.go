package ports

import "context"

// Election elects one daemon per key among all daemons sharing a store.
// A daemon has one session (one lease in etcd) shared by all its
// leaderships; when the session expires every leadership of that daemon is
// lost at once and its leader keys vanish, so other daemons can take over.
type Election interface {
	// TryCampaign tries, without waiting, to make this daemon the leader of
	// key. It returns the leadership when this daemon now leads (or already
	// led) key, and ErrLeaderElsewhere when another live daemon does.
	// Callers watch the leader keys and campaign again when one is deleted.
	TryCampaign(ctx context.Context, key string) (Leadership, error)

	// Identity is the daemon id written into the leader keys it holds.
	Identity() string
}

// Leadership is this daemon's lead on one key. Every write made while
// leading goes through it, so a daemon that lost the lead (session expired,
// resigned) cannot overwrite what the new leader writes.
type Leadership interface {
	// Key is the leader key held.
	Key() string

	// Lost is closed once the leadership is gone: resigned, session
	// expired, or the leader key removed by someone else.
	Lost() <-chan struct{}

	// Put writes key=value only while still leading, atomically with the
	// check; otherwise it returns ErrNotLeader and writes nothing. It
	// returns the store revision of the write (the key's new ModRevision),
	// so a cache can hold the write before the watch brings it back.
	Put(ctx context.Context, key string, value []byte) (int64, error)

	// Delete removes the given keys, and every key under the given
	// prefixes, in one atomic step, only while still leading; otherwise it
	// returns ErrNotLeader and removes nothing. Missing keys are fine. It
	// returns a store revision at or after the removal.
	//
	// With guards, it removes them only if, in the same atomic step, each
	// guard's key still has the guard's ModRevision; otherwise it returns
	// ErrConflict, removes nothing and the lead stays (when the lead is
	// lost as well, ErrNotLeader). A reconcile ending a resource passes
	// the revision of the operation it carried out, so that an operation
	// written meanwhile is not deleted unread.
	Delete(ctx context.Context, keys []string, prefixes []string, guards ...Guard) (int64, error)

	// Resign gives the leadership up and removes the leader key. Resigning
	// a lost leadership succeeds.
	Resign(ctx context.Context) error
}

// Guard is a condition of a fenced Delete: Key's ModRevision is still
// ModRevision (a key deleted or written since fails it).
type Guard struct {
	Key         string
	ModRevision int64
}
