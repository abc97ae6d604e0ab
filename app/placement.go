package app

import (
	"context"
	"hash/fnv"
	"sync"
	"time"

	"github.com/cdmdr/mirror/core"
)

// Placement: which daemon should lead what.
//
// Every resource has a preferred daemon among the live members:
// rendezvous (highest random weight) hashing of the resource key over
// the member identities, so every daemon seeing the same members prefers
// the same one, each prefers about 1/n of the resources, and a member
// joining or leaving changes the preference of about 1/n of them only.
// A daemon campaigns at once for a leaderless resource it prefers, and
// for the others only after PlacementGrace. A daemon leading a resource
// another member prefers hands it over (resigns) once it is settled and
// the member set has been stable for MembershipSettle, at most
// HandoversPerSecond a second.
//
// A volume of a storage type whose backend declares
// VolumesFollowEnvironment is placed with its environment instead: only
// the daemon leading the environment campaigns for it, and a daemon
// leading it while another leads its environment hands it over once it
// is settled.

// capsTTL is how long a backend's capabilities are trusted before Info
// is asked again (a plugin may be replaced).
const capsTTL = 5 * time.Minute

// infoTimeout bounds one Info call.
const infoTimeout = 10 * time.Second

// placement is the monitor's placement state.
type placement struct {
	mu sync.Mutex
	// waiting are the leaderless resources this daemon leaves to their
	// preferred daemon, with when it first saw them so.
	waiting map[core.Resource]time.Time
	// caps caches VolumesFollowEnvironment per storage type.
	caps map[string]capsEntry
	// dirty: something changed that may call for hand-overs (members,
	// environment leaders); the scan runs while set.
	dirty bool
	// tokens and last pace the hand-overs.
	tokens float64
	last   time.Time
}

type capsEntry struct {
	follow bool
	at     time.Time
}

func newPlacement() placement {
	return placement{waiting: map[core.Resource]time.Time{}, caps: map[string]capsEntry{}}
}

// hrwWeight is the rendezvous weight of member for key: FNV-1a over both,
// finished with splitmix64's mixer so that similar keys spread evenly.
func hrwWeight(member, key string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(key))
	h.Write([]byte{0})
	h.Write([]byte(member))
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// PreferredDaemon returns which of members (daemon identities) is
// preferred to lead the resource whose key is key: the same answer on
// every daemon that sees the same members.
func PreferredDaemon(members []string, key string) string { return preferredOf(members, key) }

// preferredOf returns the member preferred for key.
func preferredOf(members []string, key string) string {
	var best string
	var bestW uint64
	for _, m := range members {
		if w := hrwWeight(m, key); best == "" || w > bestW || (w == bestW && m < best) {
			best, bestW = m, w
		}
	}
	return best
}

// preferred returns the live member preferred for r.
func (m *monitor) preferred(r core.Resource) string {
	members, _ := m.liveMembers()
	return preferredOf(members, r.Key())
}

// follows reports whether the volumes of environment id follow its
// leader (their backend's VolumesFollowEnvironment). An environment
// whose record or storages cannot be read does not: its volumes' reconcile
// reports what is wrong. An error means the backend could not be asked.
func (m *monitor) follows(ctx context.Context, id core.EnvironmentID) (bool, error) {
	e := m.e
	data, ok := e.cache.get(core.EnvironmentKey(id))
	if !ok {
		return false, nil
	}
	spec, err := core.DecodeEnvironment(id, data)
	if err != nil {
		return false, nil
	}
	s, _, err := e.storage(spec.Source)
	if err != nil {
		return false, nil
	}
	now := e.clock.Now()
	p := &m.place
	p.mu.Lock()
	c, ok := p.caps[s.Type]
	p.mu.Unlock()
	if ok && now.Sub(c.at) < capsTTL {
		return c.follow, nil
	}
	b, err := e.backends.For(ctx, s.Type)
	if err != nil {
		return false, nil
	}
	ictx, cancel := context.WithTimeout(ctx, infoTimeout)
	info, err := b.Info(ictx)
	cancel()
	if err != nil {
		return false, err
	}
	follow := info.Capabilities.VolumesFollowEnvironment
	p.mu.Lock()
	p.caps[s.Type] = capsEntry{follow: follow, at: now}
	p.mu.Unlock()
	return follow, nil
}

// alone says no other live daemon is known: this one leads everything,
// and the backend need not be asked how volumes are placed.
func (m *monitor) alone() bool {
	members, _ := m.liveMembers()
	return len(members) < 2
}

// leaderOf returns who leads r as the cache shows it ("" for nobody).
func (m *monitor) leaderOf(r core.Resource) string {
	v, _ := m.e.cache.get(core.LeaderKey(m.e.cfg.LeaderPrefix, r.Key()))
	return string(v)
}

// leadsHere says this daemon holds a live leadership of r.
func (m *monitor) leadsHere(r core.Resource) bool {
	l := m.leading(r)
	return l != nil && !isClosed(l.Lost())
}

// mayCampaign says whether this daemon campaigns now for r, which nobody
// leads; if not, after how long to look again (0: not before something
// changes).
func (m *monitor) mayCampaign(r core.Resource) (bool, time.Duration) {
	if m.alone() {
		return true, 0
	}
	if r.Kind == core.ResourceVolume {
		follow, err := m.follows(m.ctx, r.Volume.Env)
		if err != nil {
			m.e.log.Warn("cannot ask the backend whether volumes follow their environment", "environment", core.EnvironmentKey(r.Volume.Env), "err", err)
			return false, m.e.cfg.FastPollInterval
		}
		if follow {
			// The environment's leader takes it; winning the environment
			// queues its volumes.
			return m.leadsHere(core.EnvironmentResource(r.Volume.Env)), 0
		}
	}
	if m.preferred(r) == m.e.election.Identity() {
		m.stopWaiting(r)
		return true, 0
	}
	now := m.e.clock.Now()
	p := &m.place
	p.mu.Lock()
	since, ok := p.waiting[r]
	if !ok {
		since = now
		p.waiting[r] = now
	}
	p.mu.Unlock()
	if left := m.e.cfg.PlacementGrace - now.Sub(since); left > 0 {
		return false, left
	}
	m.stopWaiting(r)
	return true, 0
}

// stopWaiting forgets that r was left to another daemon.
func (m *monitor) stopWaiting(r core.Resource) {
	p := &m.place
	p.mu.Lock()
	delete(p.waiting, r)
	p.mu.Unlock()
}

// handOverDue says whether this daemon, leading r (settled), should give
// it up now: a volume following its environment led by another daemon,
// or (the member set being stable) a resource another member is
// preferred for, within the hand-over pace. It takes a token when it
// says yes for balance.
func (m *monitor) handOverDue(r core.Resource) bool {
	if m.alone() {
		return false
	}
	self := m.e.election.Identity()
	follow := false
	var err error
	switch r.Kind {
	case core.ResourceVolume:
		if follow, err = m.follows(m.ctx, r.Volume.Env); err != nil {
			return false
		}
		if follow {
			envLeader := m.leaderOf(core.EnvironmentResource(r.Volume.Env))
			return envLeader != "" && envLeader != self
		}
	case core.ResourceEnvironment:
		if follow, err = m.follows(m.ctx, r.Env); err != nil {
			return false
		}
	}
	members, stable := m.liveMembers()
	if preferredOf(members, r.Key()) == self {
		return false
	}
	if follow && !m.volumesSettledHere(r.Env) {
		// Its volumes here follow it once settled; one under way would be
		// left on a host no longer running the environment's work.
		m.markDirty()
		return false
	}
	if stable < m.e.cfg.MembershipSettle || !m.takeToken() {
		m.markDirty() // the scan queues it again later
		return false
	}
	return true
}

// followsElsewhere says r is a volume following its environment, which
// another daemon leads.
func (m *monitor) followsElsewhere(r core.Resource) bool {
	if r.Kind != core.ResourceVolume || m.alone() {
		return false
	}
	if follow, err := m.follows(m.ctx, r.Volume.Env); err != nil || !follow {
		return false
	}
	l := m.leaderOf(core.EnvironmentResource(r.Volume.Env))
	return l != "" && l != m.e.election.Identity()
}

// volumesSettledHere says every volume of environment id led here is
// settled.
func (m *monitor) volumesSettledHere(id core.EnvironmentID) bool {
	vols := m.e.volumesIn(id)
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, v := range vols {
		if _, led := m.held[v]; led {
			if _, ok := m.settled[id][v.Volume]; !ok {
				return false
			}
		}
	}
	return true
}

// takeToken takes one hand-over from the pace's budget, if any is left.
func (m *monitor) takeToken() bool {
	rate := float64(m.e.cfg.HandoversPerSecond)
	now := m.e.clock.Now()
	p := &m.place
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.last.IsZero() {
		p.tokens = rate // a second's worth to begin with
	} else {
		p.tokens += now.Sub(p.last).Seconds() * rate
	}
	p.last = now
	p.tokens = min(p.tokens, max(1, rate))
	if p.tokens < 1 {
		return false
	}
	p.tokens--
	return true
}

// markDirty asks the next scan to look for resources to hand over.
func (m *monitor) markDirty() {
	m.place.mu.Lock()
	m.place.dirty = true
	m.place.mu.Unlock()
}

// handOver gives up r, settled and led here, to whichever daemon takes
// it (its preferred one, or its environment's leader): nothing is in
// flight for it here (this worker is its only one, and a bulk poll
// holding it is waited for), and nothing is written.
func (m *monitor) handOver(r core.Resource, l *lead) {
	m.mu.Lock()
	delete(m.held, r) // no bulk status call asks about it from now on
	var polled chan struct{}
	if r.Kind == core.ResourceVolume {
		polled = m.polling[r.Volume]
	}
	m.mu.Unlock()
	if r.Kind == core.ResourceVolume {
		m.unsettle(r.Volume)
	}
	if polled != nil {
		<-polled // the one that does ends (bounded by ActionTimeout)
	}
	m.queue.forget(r)
	m.e.log.Info("handing over", "resource", r.Key(), "preferred", m.preferred(r))
	if r.Kind == core.ResourceEnvironment {
		m.release(r.Env, l) // before another daemon can lead it
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(m.ctx), resignTimeout)
	defer cancel()
	if err := l.Resign(ctx); err != nil {
		m.e.log.Warn("resign failed; the lead expires with the session", "resource", r.Key(), "err", err)
	}
	if r.Kind == core.ResourceEnvironment {
		m.markDirty() // its volumes may follow it
	}
}

// runPlacement looks, every FastPollInterval, for settled resources led
// here that should be handed over, and queues up to the pace's budget of
// them: their worker hands them over (process). It scans only after
// something changed, and again while it finds more than the budget.
func (m *monitor) runPlacement(ctx context.Context) {
	for m.e.sleep(ctx, m.e.cfg.FastPollInterval) {
		p := &m.place
		p.mu.Lock()
		dirty := p.dirty
		p.dirty = false
		p.mu.Unlock()
		if !dirty {
			continue
		}
		if more := m.queueHandOvers(ctx); more {
			m.markDirty()
		}
	}
}

// queueHandOvers queues the settled resources led here that another
// daemon should lead, at most a tick's budget of those moved for balance,
// and reports whether any were left for later.
func (m *monitor) queueHandOvers(ctx context.Context) bool {
	self := m.e.election.Identity()
	members, stable := m.liveMembers()
	if len(members) < 2 {
		return false
	}
	balance := stable >= m.e.cfg.MembershipSettle
	budget := max(1, int(float64(m.e.cfg.HandoversPerSecond)*m.e.cfg.FastPollInterval.Seconds()))
	m.mu.Lock()
	held := make([]core.Resource, 0, len(m.held))
	for r := range m.held {
		held = append(held, r)
	}
	m.mu.Unlock()
	follow := map[core.EnvironmentID]bool{}
	more := false
	for _, r := range held {
		if ctx.Err() != nil {
			return false
		}
		if r.Kind == core.ResourceVolume {
			f, seen := follow[r.Volume.Env]
			if !seen {
				var err error
				if f, err = m.follows(ctx, r.Volume.Env); err != nil {
					more = true
					continue
				}
				follow[r.Volume.Env] = f
			}
			if f {
				if l := m.leaderOf(core.EnvironmentResource(r.Volume.Env)); l != "" && l != self {
					m.queue.add(r) // not paced: it must go
				}
				continue
			}
		}
		if preferredOf(members, r.Key()) == self {
			continue
		}
		if !balance || budget == 0 {
			more = true
			continue
		}
		budget--
		m.queue.add(r)
	}
	return more
}
