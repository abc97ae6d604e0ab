package app

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cdmdr/mirror/ports"
)

// membersDir is where, under the leader prefix, each live daemon
// announces itself: {LeaderPrefix}daemons/{identity}, its identity as
// value. The key is won like a leader key (TryCampaign), so it lives on
// the daemon's session and vanishes with it. No resource key starts with
// "daemons/", so it never names a resource; dispatch reads it as a
// change of membership.
const membersDir = "daemons/"

// membership is the set of live daemons as this daemon's cache shows it,
// itself always included.
type membership struct {
	mu      sync.Mutex
	members []string  // sorted identities
	changed time.Time // on the engine's clock: when the set last changed
	// announced is this daemon's own member key, while held.
	announced ports.Leadership
}

// memberPrefix is where daemons announce themselves.
func (e *Engine) memberPrefix() string { return e.cfg.LeaderPrefix + membersDir }

// isMemberKey says key is a daemon's announcement.
func (e *Engine) isMemberKey(key string) bool { return strings.HasPrefix(key, e.memberPrefix()) }

// observeMembers reads the member set from the cache and reports whether
// it changed since last read.
func (m *monitor) observeMembers() bool {
	e := m.e
	self := e.election.Identity()
	set := []string{self}
	for _, kv := range e.cache.list(e.memberPrefix()) {
		if id := strings.TrimPrefix(kv.Key, e.memberPrefix()); id != "" && id != self {
			set = append(set, id)
		}
	}
	slices.Sort(set)
	ms := &m.members
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if slices.Equal(ms.members, set) {
		return false
	}
	e.log.Info("daemons", "members", set)
	ms.members = set
	ms.changed = e.clock.Now()
	return true
}

// liveMembers returns the member set and how long it has not changed.
func (m *monitor) liveMembers() ([]string, time.Duration) {
	ms := &m.members
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if ms.members == nil {
		return []string{m.e.election.Identity()}, 0
	}
	return ms.members, m.e.clock.Now().Sub(ms.changed)
}

// membersChanged is what follows a change of the member set: leaderless
// resources are looked at again (a preferred daemon may have gone), and
// the hand-over scan runs once the set is stable.
func (m *monitor) membersChanged() {
	if !m.observeMembers() {
		return
	}
	m.markDirty()
	m.ensureAll(m.e.cfg.LeaderPrefix)
}

// announce keeps this daemon's member key while the engine runs: won
// again whenever it is lost (a session that ended, the key deleted).
func (m *monitor) announce(ctx context.Context) {
	e := m.e
	key := e.memberPrefix() + e.election.Identity()
	for ctx.Err() == nil {
		l, err := e.election.TryCampaign(ctx, key)
		if err != nil {
			// ErrLeaderElsewhere: a key of this identity's earlier session,
			// until it expires; it names us meanwhile.
			if !errors.Is(err, ports.ErrLeaderElsewhere) && ctx.Err() == nil {
				e.log.Warn("announcing this daemon failed; retrying", "key", key, "err", err)
			}
			if !e.sleep(ctx, e.cfg.FastPollInterval) {
				return
			}
			continue
		}
		m.members.mu.Lock()
		m.members.announced = l
		m.members.mu.Unlock()
		select {
		case <-l.Lost():
		case <-ctx.Done():
			return
		}
	}
}

// withdraw removes this daemon's member key (at shutdown).
func (m *monitor) withdraw(ctx context.Context) {
	m.members.mu.Lock()
	l := m.members.announced
	m.members.announced = nil
	m.members.mu.Unlock()
	if l != nil {
		if err := l.Resign(ctx); err != nil {
			m.e.log.Warn("withdrawing this daemon's announcement failed; it expires with the session", "err", err)
		}
	}
}
