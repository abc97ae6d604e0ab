package etcd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/cdmdr/mirror/ports"
)

var (
	_ ports.Election   = (*Election)(nil)
	_ ports.Leadership = (*Leadership)(nil)
)

// errClosed is returned by TryCampaign after Close.
var errClosed = errors.New("election closed")

// Election is one daemon's ports.Election on etcd.
//
// All its leaderships share one concurrency.Session, that is one lease:
// leader keys are written with it, so when the daemon dies (or cannot reach
// etcd for longer than the TTL) they all vanish together. A new session is
// made by the next TryCampaign after one ends.
//
// A leadership is fenced on the revision its leader key was created at,
// as in etcd's concurrency package: writes through it apply only while the
// key still exists untouched since then. Lost is driven by one watch on the
// whole leader prefix, however many keys are held.
type Election struct {
	c      *clientv3.Client
	id     string
	prefix string
	ttl    int // seconds
	log    *slog.Logger

	ctx    context.Context // ended by Close: stops the watch and keep-alives
	cancel context.CancelFunc
	wg     sync.WaitGroup

	sessMu sync.Mutex // serialises making sessions

	mu     sync.Mutex
	sess   *concurrency.Session // nil before the first campaign and after it ended
	held   map[string]*Leadership
	seen   int64 // the leader watch has handled every event up to this revision
	closed bool
}

// NewElection returns the election of daemon identity among the daemons
// whose leader keys live under leaderPrefix (every key campaigned for must
// be under it). ttl is the session's lease TTL (0: 10s, rounded up to whole
// seconds). Close ends it.
func NewElection(c *clientv3.Client, identity string, leaderPrefix string, ttl time.Duration, log *slog.Logger) (*Election, error) {
	if identity == "" {
		return nil, errors.New("etcd election: empty identity")
	}
	if ttl <= 0 {
		ttl = DefaultSessionTTL
	}
	secs := int((ttl + time.Second - 1) / time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	e := &Election{
		c:      c,
		id:     identity,
		prefix: leaderPrefix,
		ttl:    secs,
		log:    log.With("identity", identity, "leader_prefix", leaderPrefix),
		ctx:    ctx,
		cancel: cancel,
		held:   map[string]*Leadership{},
	}
	e.wg.Add(1)
	go e.watchLoop()
	return e, nil
}

// Identity implements ports.Election.
func (e *Election) Identity() string { return e.id }

// Lease returns the lease of the current session, or clientv3.NoLease when
// there is none. For tests, which revoke it to simulate an expiry.
func (e *Election) Lease() clientv3.LeaseID {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.sess == nil {
		return clientv3.NoLease
	}
	return e.sess.Lease()
}

// TryCampaign implements ports.Election. A leader key written with this
// Election's current lease is this daemon's; a key of an earlier session
// or process of the same identity is another daemon's until it expires.
func (e *Election) TryCampaign(ctx context.Context, key string) (ports.Leadership, error) {
	if !strings.HasPrefix(key, e.prefix) {
		// The leader watch would not see it deleted.
		return nil, fmt.Errorf("etcd campaign %q: not under the leader prefix %q", key, e.prefix)
	}
	for attempt := 0; ; attempt++ {
		s, err := e.session(ctx)
		if err != nil {
			return nil, fmt.Errorf("etcd campaign %q: %w", key, err)
		}
		lease := s.Lease()
		resp, err := e.c.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, e.id, clientv3.WithLease(lease))).
			Else(clientv3.OpGet(key)).
			Commit()
		if errors.Is(err, rpctypes.ErrLeaseNotFound) && attempt == 0 {
			// The lease is gone but its keep-alive has not noticed yet.
			e.dropSession(s)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("etcd campaign %q: %w", key, err)
		}
		rev := resp.Header.Revision
		if !resp.Succeeded {
			kvs := resp.Responses[0].GetResponseRange().GetKvs()
			if len(kvs) == 0 { // cannot be: the key existed within the txn
				return nil, fmt.Errorf("etcd campaign %q: key vanished within a transaction", key)
			}
			cur := kvs[0]
			if clientv3.LeaseID(cur.Lease) != lease || cur.ModRevision != cur.CreateRevision {
				return nil, fmt.Errorf("etcd campaign %q: held by %q (lease %x): %w",
					key, cur.Value, cur.Lease, ports.ErrLeaderElsewhere)
			}
			rev = cur.CreateRevision
		}
		l, err := e.register(ctx, key, rev, lease, resp.Header.Revision)
		if err != nil {
			return nil, err // not a nil *Leadership in a non-nil interface
		}
		return l, nil
	}
}

// register records the leadership of key created at rev under lease, known
// intact at revision at, and returns it (or the one already held).
func (e *Election) register(ctx context.Context, key string, rev int64, lease clientv3.LeaseID, at int64) (*Leadership, error) {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil, fmt.Errorf("etcd campaign %q: %w", key, errClosed)
	}
	if e.sess == nil || e.sess.Lease() != lease {
		e.mu.Unlock()
		return nil, fmt.Errorf("etcd campaign %q: session ended meanwhile: %w", key, ports.ErrRetryable)
	}
	if l := e.held[key]; l != nil {
		if l.rev == rev {
			e.mu.Unlock()
			return l, nil
		}
		l.markLost() // its key is gone, the watch has not said so yet
	}
	l := &Leadership{e: e, key: key, rev: rev, leaseID: lease, verifiedAt: at, lost: make(chan struct{})}
	e.held[key] = l
	// Events between at and what the watch has handled went by before l
	// was held: look at the key itself.
	verify := e.seen > at
	e.mu.Unlock()

	if verify {
		resp, err := e.c.Get(ctx, key)
		if err != nil {
			e.lose(l, "cannot verify a new leadership")
			return nil, fmt.Errorf("etcd campaign %q: verify: %w", key, err)
		}
		if len(resp.Kvs) == 0 || !l.intact(resp.Kvs[0]) {
			e.lose(l, "leader key changed right after the campaign")
		}
	}
	return l, nil
}

// session returns the current session, making one if there is none.
func (e *Election) session(ctx context.Context) (*concurrency.Session, error) {
	e.sessMu.Lock()
	defer e.sessMu.Unlock()
	e.mu.Lock()
	s, closed := e.sess, e.closed
	e.mu.Unlock()
	if closed {
		return nil, errClosed
	}
	if s != nil {
		select {
		case <-s.Done(): // ended; its monitor drops it
		default:
			return s, nil
		}
	}
	// etcd counts the lease's TTL from when it receives the grant, at
	// the earliest from now.
	sent := time.Now()
	grant, err := e.c.Grant(ctx, int64(e.ttl))
	if err != nil {
		return nil, fmt.Errorf("grant lease: %w", err)
	}
	s, err = concurrency.NewSession(e.c,
		concurrency.WithLease(grant.ID), concurrency.WithTTL(e.ttl), concurrency.WithContext(e.ctx))
	if err != nil {
		e.revoke(ctx, grant.ID)
		return nil, fmt.Errorf("keep lease alive: %w", err)
	}
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		s.Orphan()
		e.revoke(ctx, grant.ID)
		return nil, errClosed
	}
	e.sess = s
	e.wg.Add(2)
	e.mu.Unlock()
	go e.monitor(s)
	go e.guard(s, sent.Add(e.leaseLife(grant.TTL)))
	e.log.Info("election session started", "lease", int64(s.Lease()), "ttl_seconds", e.ttl)
	return s, nil
}

// monitor ends every leadership of s when s ends.
func (e *Election) monitor(s *concurrency.Session) {
	defer e.wg.Done()
	select {
	case <-s.Done():
	case <-e.ctx.Done():
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.sess == s {
		e.sess = nil
	}
	n := 0
	for _, l := range e.held {
		if l.leaseID == s.Lease() {
			l.markLost()
			n++
		}
	}
	if !e.closed {
		e.log.Warn("election session ended", "lease", int64(s.Lease()), "leaderships_lost", n)
	}
}

// leaseLife is how long after a grant or renewal was sent this daemon
// counts the lease as its own: the TTL etcd answered less a tenth of the
// session's TTL, so that a daemon cut off from etcd stops leading (and
// cancels its backend calls) before etcd can expire the lease and let
// another daemon lead (docs/contract.md §6). A larger margin would end
// sessions needlessly when etcd is merely slow.
func (e *Election) leaseLife(ttl int64) time.Duration {
	full := time.Duration(e.ttl) * time.Second
	return time.Duration(ttl)*time.Second - full/10
}

// guard renews s's lease every quarter of the TTL and ends s when its last
// renewal is older than leaseLife. The client's own keep-alive counts
// from when an answer arrives, that is after etcd renewed the lease, and
// notices a missed deadline only every half second: it ends a session
// after etcd expired the lease, when a successor may already lead.
func (e *Election) guard(s *concurrency.Session, deadline time.Time) {
	defer e.wg.Done()
	period := time.Duration(e.ttl) * time.Second / 4
	next := time.Now().Add(period)
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		t.Reset(time.Until(earliest(next, deadline)))
		select {
		case <-s.Done():
			return
		case <-e.ctx.Done():
			return
		case <-t.C:
		}
		if !time.Now().Before(deadline) {
			e.log.Warn("election session not renewed in time; ending it before etcd expires its lease", "lease", int64(s.Lease()))
			e.dropSession(s)
			return
		}
		sent := time.Now()
		ctx, cancel := context.WithDeadline(e.ctx, deadline)
		resp, err := e.c.KeepAliveOnce(ctx, s.Lease())
		cancel()
		switch {
		case errors.Is(err, rpctypes.ErrLeaseNotFound):
			e.dropSession(s)
			return
		case err != nil:
			next = time.Now().Add(period / 4) // try again soon, until the deadline
		default:
			deadline = sent.Add(e.leaseLife(resp.TTL))
			next = sent.Add(period)
		}
	}
}

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// dropSession stops keeping s alive, so that its monitor ends its
// leaderships, and makes the next campaign start a new session.
func (e *Election) dropSession(s *concurrency.Session) {
	s.Orphan()
	e.mu.Lock()
	if e.sess == s {
		e.sess = nil
	}
	e.mu.Unlock()
}

func (e *Election) revoke(ctx context.Context, lease clientv3.LeaseID) {
	if _, err := e.c.Revoke(ctx, lease); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		e.log.Warn("revoke election lease", "lease", int64(lease), "err", err)
	}
}

// Close stops the election: every leadership is lost, and its lease is
// revoked so the leader keys vanish at once and other daemons can take
// over without waiting for the TTL.
func (e *Election) Close(ctx context.Context) error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	s := e.sess
	e.sess = nil
	for _, l := range e.held {
		l.markLost()
	}
	e.mu.Unlock()

	e.cancel()
	e.wg.Wait()
	if s == nil {
		return nil
	}
	s.Orphan()
	if _, err := e.c.Revoke(ctx, s.Lease()); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("etcd election close: revoke lease %x: %w", int64(s.Lease()), err)
	}
	return nil
}

// lose ends l, logging why.
func (e *Election) lose(l *Leadership, why string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !l.done {
		e.log.Info("leadership lost", "key", l.key, "reason", why)
	}
	l.markLost()
}

// watchLoop follows the leader prefix until Close, ending a held
// leadership when its key is deleted or overwritten. A broken watch resumes
// after the last handled revision; a compacted one re-reads the prefix.
func (e *Election) watchLoop() {
	defer e.wg.Done()
	b := newBackoff()
	var next int64 // 0: read the prefix first
	for e.ctx.Err() == nil {
		if next == 0 {
			rev, err := e.recheck()
			if err != nil {
				if e.ctx.Err() == nil {
					e.log.Warn("read leader keys", "err", err)
				}
				if !sleep(e.ctx, b.next()) {
					return
				}
				continue
			}
			next = rev + 1
		}
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(e.ctx))
		err := e.follow(e.c.Watch(wctx, e.prefix, clientv3.WithPrefix(), clientv3.WithRev(next)), &next, b)
		cancel()
		switch {
		case e.ctx.Err() != nil:
			return
		case e.c.Ctx().Err() != nil:
			e.log.Warn("leader watch ended: client closed")
			return
		case errors.Is(err, ports.ErrCompacted):
			e.log.Info("leader watch compacted; re-reading leader keys", "from_revision", next)
			next = 0
		default:
			e.log.Warn("leader watch broke; resuming", "from_revision", next, "err", err)
		}
		if !sleep(e.ctx, b.next()) {
			return
		}
	}
}

// follow handles the events of one watch, moving next on.
func (e *Election) follow(wch clientv3.WatchChan, next *int64, b *backoff) error {
	for resp := range wch {
		if resp.CompactRevision != 0 {
			return ports.ErrCompacted
		}
		if err := resp.Err(); err != nil {
			return err
		}
		if len(resp.Events) == 0 {
			continue
		}
		e.observe(resp.Events)
		*next = resp.Events[len(resp.Events)-1].Kv.ModRevision + 1
		b.reset()
	}
	return errors.New("watch channel closed")
}

// observe ends the leaderships whose key changed after it was last known
// intact: any event on a held key after that is a delete or an overwrite.
func (e *Election) observe(events []*clientv3.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ev := range events {
		rev := ev.Kv.ModRevision
		if l := e.held[string(ev.Kv.Key)]; l != nil && rev > l.verifiedAt {
			why := "leader key overwritten"
			if ev.Type == mvccpb.DELETE {
				why = "leader key deleted"
			}
			e.log.Info("leadership lost", "key", l.key, "reason", why, "revision", rev)
			l.markLost()
		}
		e.seen = max(e.seen, rev)
	}
}

// recheck reads every leader key and ends the held leaderships whose key
// is gone or changed, for when the watch cannot tell (it starts, or its
// history was compacted). It returns the revision read at.
func (e *Election) recheck() (int64, error) {
	resp, err := e.c.Get(e.ctx, e.prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return 0, fmt.Errorf("etcd list %q: %w", e.prefix, err)
	}
	at := resp.Header.Revision
	e.mu.Lock()
	defer e.mu.Unlock()
	present := make(map[string]*mvccpb.KeyValue, len(e.held))
	for _, kv := range resp.Kvs {
		if e.held[string(kv.Key)] != nil {
			present[string(kv.Key)] = kv
		}
	}
	for key, l := range e.held {
		if l.verifiedAt > at {
			continue // won after this read; the watch from at+1 covers it
		}
		if kv := present[key]; kv == nil || !l.intact(kv) {
			e.log.Info("leadership lost", "key", key, "reason", "leader key gone or changed", "revision", at)
			l.markLost()
			continue
		}
		l.verifiedAt = at
	}
	e.seen = max(e.seen, at)
	return at, nil
}

// Leadership is a lead of an etcd Election on one key.
type Leadership struct {
	e       *Election
	key     string
	rev     int64            // CreateRevision of the leader key: the fence
	leaseID clientv3.LeaseID // the session's lease the key was written with

	verifiedAt int64 // guarded by e.mu: the key was intact at this revision
	done       bool  // guarded by e.mu
	lost       chan struct{}
}

// Key implements ports.Leadership.
func (l *Leadership) Key() string { return l.key }

// Lost implements ports.Leadership.
func (l *Leadership) Lost() <-chan struct{} { return l.lost }

// Put implements ports.Leadership. Writing the leader key itself through
// it ends the leadership.
func (l *Leadership) Put(ctx context.Context, key string, value []byte) (int64, error) {
	return l.fenced(ctx, "put "+key, clientv3.OpPut(key, string(value)))
}

// Delete implements ports.Leadership. All the deletions are one etcd
// transaction, so they count against the server's --max-txn-ops (128 by
// default). The guards are compares of that transaction, next to the
// leader fence.
func (l *Leadership) Delete(ctx context.Context, keys []string, prefixes []string, guards ...ports.Guard) (int64, error) {
	ops := make([]clientv3.Op, 0, len(keys)+len(prefixes))
	for _, k := range keys {
		ops = append(ops, clientv3.OpDelete(k))
	}
	for _, p := range prefixes {
		ops = append(ops, clientv3.OpDelete(p, clientv3.WithPrefix()))
	}
	what := fmt.Sprintf("delete %d keys and %d prefixes", len(keys), len(prefixes))
	if len(guards) == 0 {
		return l.fenced(ctx, what, ops...)
	}
	if l.isLost() {
		return 0, fmt.Errorf("etcd %s under %q: %w", what, l.key, ports.ErrNotLeader)
	}
	cmps := l.fence()
	for _, g := range guards {
		cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(g.Key), "=", g.ModRevision))
	}
	// On a refusal, the leader key read in the same transaction tells a
	// failed guard (the lead intact) from a lost lead.
	resp, err := l.e.c.Txn(ctx).If(cmps...).Then(ops...).Else(clientv3.OpGet(l.key)).Commit()
	if err != nil {
		return 0, fmt.Errorf("etcd %s under %q: %w", what, l.key, err)
	}
	if resp.Succeeded {
		return resp.Header.Revision, nil
	}
	if kvs := resp.Responses[0].GetResponseRange().GetKvs(); len(kvs) == 1 && l.intact(kvs[0]) {
		return 0, fmt.Errorf("etcd %s under %q: a guarded key changed: %w", what, l.key, ports.ErrConflict)
	}
	l.e.lose(l, "fenced write refused")
	return 0, fmt.Errorf("etcd %s under %q: %w", what, l.key, ports.ErrNotLeader)
}

// Resign implements ports.Leadership: it deletes the leader key if this
// leadership still holds it, and ends the leadership in any case.
func (l *Leadership) Resign(ctx context.Context) error {
	wasLost := l.isLost()
	resp, err := l.e.c.Txn(ctx).If(l.fence()...).Then(clientv3.OpDelete(l.key)).Commit()
	l.e.mu.Lock()
	if !l.done && (err != nil || resp.Succeeded) {
		l.e.log.Info("leadership resigned", "key", l.key)
	}
	l.markLost()
	l.e.mu.Unlock()
	if err != nil && !wasLost {
		return fmt.Errorf("etcd resign %q: %w", l.key, err)
	}
	return nil
}

// fenced applies ops only while the leader key is the one this leadership
// created, untouched since, and returns the transaction's revision.
func (l *Leadership) fenced(ctx context.Context, what string, ops ...clientv3.Op) (int64, error) {
	if l.isLost() {
		return 0, fmt.Errorf("etcd %s under %q: %w", what, l.key, ports.ErrNotLeader)
	}
	resp, err := l.e.c.Txn(ctx).If(l.fence()...).Then(ops...).Commit()
	if err != nil {
		return 0, fmt.Errorf("etcd %s under %q: %w", what, l.key, err)
	}
	if !resp.Succeeded {
		l.e.lose(l, "fenced write refused")
		return 0, fmt.Errorf("etcd %s under %q: %w", what, l.key, ports.ErrNotLeader)
	}
	return resp.Header.Revision, nil
}

func (l *Leadership) fence() []clientv3.Cmp {
	return []clientv3.Cmp{
		clientv3.Compare(clientv3.CreateRevision(l.key), "=", l.rev),
		clientv3.Compare(clientv3.ModRevision(l.key), "=", l.rev),
	}
}

// intact says whether kv is this leadership's key as created.
func (l *Leadership) intact(kv *mvccpb.KeyValue) bool {
	return kv.CreateRevision == l.rev && kv.ModRevision == l.rev
}

func (l *Leadership) isLost() bool {
	select {
	case <-l.lost:
		return true
	default:
		return false
	}
}

// markLost closes Lost once and forgets the leadership. Runs under e.mu.
func (l *Leadership) markLost() {
	if l.done {
		return
	}
	l.done = true
	close(l.lost)
	if l.e.held[l.key] == l {
		delete(l.e.held, l.key)
	}
}
