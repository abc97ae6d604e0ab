package fake

import (
	"context"
	"fmt"
	"sync"

	"github.com/cdmdr/mirror/ports"
)

var (
	_ ports.Election   = (*Election)(nil)
	_ ports.Leadership = (*Leadership)(nil)
)

// Election is one daemon's ports.Election on a shared fake KV. Its session
// is the identity: it lives until Expire. Fencing works as in etcd's
// concurrency package: a leadership's writes apply only while the leader
// key still exists with the CreateRevision it had when won.
type Election struct {
	kv *KV
	id string

	// held is guarded by kv.mu, not by mu: it changes only inside KV
	// transactions and commit hooks, so a deleted leader key and the lost
	// leadership are one atomic step.
	held map[string]*Leadership

	mu     sync.Mutex
	before func()
	dead   bool // Kill was called
}

// NewElection returns the election of the daemon identity on kv.
func NewElection(kv *KV, identity string) *Election {
	e := &Election{kv: kv, id: identity, held: map[string]*Leadership{}}
	kv.onCommit(e.observe)
	return e
}

// Identity implements ports.Election.
func (e *Election) Identity() string { return e.id }

// TryCampaign implements ports.Election. A leader key already holding this
// identity (left by an earlier Election of the same daemon) is taken over.
func (e *Election) TryCampaign(ctx context.Context, key string) (ports.Leadership, error) {
	e.mu.Lock()
	dead := e.dead
	e.mu.Unlock()
	if dead {
		return nil, fmt.Errorf("campaign %q: daemon %s was killed", key, e.id)
	}
	var won *Leadership
	err := e.kv.Txn(ctx, func(tx *Tx) error {
		cur, ok := tx.Get(key)
		if l := e.held[key]; l != nil && ok && cur.CreateRevision == l.createRev {
			won = l
			return nil
		}
		if ok && string(cur.Value) != e.id {
			return fmt.Errorf("campaign %q: held by %q: %w", key, cur.Value, ports.ErrLeaderElsewhere)
		}
		// The revision the key is created at is the one commit is about to
		// use; an existing key keeps its own.
		rev := tx.kv.rev + 1
		if ok {
			rev = cur.CreateRevision
		} else {
			tx.Put(key, []byte(e.id))
		}
		won = &Leadership{e: e, key: key, createRev: rev, lost: make(chan struct{})}
		e.held[key] = won
		return nil
	})
	if err != nil {
		return nil, err
	}
	return won, nil
}

// Expire simulates the end of this daemon's session: every leader key it
// holds vanishes in one step and every Lost channel closes. Campaigning
// again afterwards starts a fresh session.
func (e *Election) Expire() {
	_ = e.kv.txn(func(tx *Tx) error {
		for key, l := range e.held {
			if cur, ok := tx.Get(key); ok && cur.CreateRevision == l.createRev {
				tx.Delete(key)
			}
			l.markLost()
		}
		return nil
	})
}

// Kill is a crash: the session expires as with Expire, and this daemon
// never campaigns again (TryCampaign fails), as a dead process does not.
func (e *Election) Kill() {
	e.mu.Lock()
	e.dead = true
	e.mu.Unlock()
	e.Expire()
}

// BeforeFencedWrite installs fn to run at the start of every fenced Put and
// Delete, before the leadership check, so a test can force an interleaving
// (for example expire the session while a write is on its way). nil
// removes it.
func (e *Election) BeforeFencedWrite(fn func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.before = fn
}

// observe is the KV commit hook: a deleted leader key ends the leadership
// that created it. Runs under kv.mu.
func (e *Election) observe(events []ports.WatchEvent) {
	for _, ev := range events {
		if ev.Type != ports.EventDelete {
			continue
		}
		if l := e.held[ev.KV.Key]; l != nil && l.createRev < ev.KV.ModRevision {
			l.markLost()
		}
	}
}

// Leadership is one lead of a fake Election.
type Leadership struct {
	e         *Election
	key       string
	createRev int64
	lost      chan struct{}
	closed    bool // guarded by kv.mu
}

// Key implements ports.Leadership.
func (l *Leadership) Key() string { return l.key }

// Lost implements ports.Leadership.
func (l *Leadership) Lost() <-chan struct{} { return l.lost }

// Put implements ports.Leadership.
func (l *Leadership) Put(ctx context.Context, key string, value []byte) (int64, error) {
	return l.fenced(ctx, func(tx *Tx) error {
		tx.Put(key, value)
		return nil
	})
}

// Delete implements ports.Leadership.
func (l *Leadership) Delete(ctx context.Context, keys []string, prefixes []string, guards ...ports.Guard) (int64, error) {
	return l.fenced(ctx, func(tx *Tx) error {
		for _, g := range guards {
			if cur, ok := tx.Get(g.Key); !ok || cur.ModRevision != g.ModRevision {
				return fmt.Errorf("delete under %q: guarded key %q changed: %w", l.key, g.Key, ports.ErrConflict)
			}
		}
		for _, k := range keys {
			tx.Delete(k)
		}
		for _, p := range prefixes {
			tx.DeletePrefix(p)
		}
		return nil
	})
}

// Resign implements ports.Leadership.
func (l *Leadership) Resign(ctx context.Context) error {
	return l.e.kv.Txn(ctx, func(tx *Tx) error {
		if l.stillLeads(tx) {
			tx.Delete(l.key)
		}
		l.markLost()
		return nil
	})
}

func (l *Leadership) fenced(ctx context.Context, write func(tx *Tx) error) (int64, error) {
	l.e.mu.Lock()
	before := l.e.before
	l.e.mu.Unlock()
	if before != nil {
		before()
	}
	return l.e.kv.txnRev(ctx, func(tx *Tx) error {
		if !l.stillLeads(tx) {
			return fmt.Errorf("write under %q: %w", l.key, ports.ErrNotLeader)
		}
		return write(tx)
	})
}

// stillLeads is the fence: the leader key exists with the CreateRevision it
// had when won. Runs under kv.mu.
func (l *Leadership) stillLeads(tx *Tx) bool {
	if l.closed {
		return false
	}
	cur, ok := tx.Get(l.key)
	return ok && cur.CreateRevision == l.createRev
}

// markLost closes Lost once and forgets the leadership. Runs under kv.mu.
func (l *Leadership) markLost() {
	if l.closed {
		return
	}
	l.closed = true
	close(l.lost)
	if l.e.held[l.key] == l {
		delete(l.e.held, l.key)
	}
}
