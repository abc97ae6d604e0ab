package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cdmdr/mirror/adapters/fake"
	"github.com/cdmdr/mirror/app"
	"github.com/cdmdr/mirror/core"
	"github.com/cdmdr/mirror/ports"
)

// Three daemons share 1,000 volumes of four environments: each leads
// about a third. A fourth joins: it draws about a quarter, settled
// volumes only; the backend's call log shows every volume driven by one
// daemon, then by another at most once (never back); no status is
// written while leadership moves.
func TestLeadershipBalancesAcrossDaemons(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000 volumes on a real etcd")
	}
	began := time.Now()
	c := newCluster(t)
	first := c.revision()
	c.backend.AutoSync(true)
	calls := &callerLog{byVolume: map[string][]string{}}
	slower := func(cfg *Config) { cfg.FastPoll = 500 * time.Millisecond }
	start := func(id string) *daemon {
		return c.startOn(id, callerBackends{id: id, shared: c.backend, log: calls}, slower)
	}
	three := []string{"d1", "d2", "d3"}
	for _, id := range three {
		start(id)
	}
	c.waitMembers(three)

	envs := []core.EnvironmentID{{Source: 11, Target: 13}, {Source: 12, Target: 13}, {Source: 14, Target: 13}, {Source: 15, Target: 13}}
	const perEnv = 250
	c.seedStorages()
	for _, env := range envs[1:] {
		c.put(fmt.Sprintf("clusters/5/storages/%d", env.Source), fmt.Sprintf(`{"cluster_id":5,"storage_id":%d,"type":"openstack.storage.type.ceph","backend_name":"ceph"}`, env.Source))
		c.put(fmt.Sprintf("clusters/5/storages/%d/metadata", env.Source), seedMetadata())
	}
	var vols []core.VolumeRef
	for _, env := range envs {
		c.put(core.EnvironmentKey(env), fmt.Sprintf(`{"source_cluster_storage":{"cluster_id":5,"storage_id":%d},"target_cluster_storage":{"cluster_id":6,"storage_id":13}}`, env.Source))
		c.put(core.EnvironmentOperationKey(env), `{"operation":"start"}`)
		vols = append(vols, c.seedVolumesOf(env, perEnv)...)
	}
	c.waitFor("1,000 volumes mirroring", 40*time.Second, func() bool { return c.countVolumes(core.StateMirroring) == len(vols) })
	converged := time.Since(began)
	// A preferred daemon slower than the grace leaves some of its share to
	// the others at first; hand-overs give it back.
	c.waitPreferred(three, len(vols))
	balanced := time.Since(began)

	before := c.volumeLeaders()
	table := distribution(before, three)
	t.Logf("three daemons, %d volumes: %v (environments: %v)", len(vols), table, distribution(c.environmentLeaders(), three))
	for _, id := range three {
		if n, want := table[id], len(vols)/3; n < want*8/10 || n > want*12/10 {
			t.Errorf("%s leads %d volumes, want %d ± 20 %%", id, n, want)
		}
	}

	// A fourth daemon joins.
	rev := c.revision()
	calls.mark()
	joined := time.Now()
	four := append(slices.Clone(three), "d4")
	start("d4")
	c.waitPreferred(four, len(vols))
	spread := time.Since(joined)
	after := c.volumeLeaders()
	moved := 0
	for key, l := range after {
		if before[key] != l {
			moved++
			if l != "d4" {
				t.Errorf("%s moved from %s to %s, not to the daemon joining", key, before[key], l)
			}
		}
	}
	table = distribution(after, four)
	t.Logf("four daemons: %v (environments: %v); %d volumes moved in %s", table, distribution(c.environmentLeaders(), four), moved, spread.Round(100*time.Millisecond))
	for _, id := range four {
		if n, want := table[id], len(vols)/4; n < want*8/10 || n > want*12/10 {
			t.Errorf("%s leads %d volumes, want %d ± 20 %%", id, n, want)
		}
	}

	// No status written while leadership moved: every volume was settled.
	if writes := c.volumeStatusWritesSince(rev); len(writes) != 0 {
		t.Errorf("%d volume statuses written during the rebalance, e.g. %v", len(writes), firstOf(writes))
	}
	// No double driver: per volume, each run of calls by one daemon
	// (A…A B…B A…A is three) had a leadership of its own (a preferred
	// daemon slow at the start may take a volume back after the grace
	// gave it to another), and at most one change since the join.
	if bad := calls.doubleDrivers(c.leaderTermsSince(first)); len(bad) > 0 {
		t.Errorf("%d volumes driven by two daemons in turn, e.g. %v", len(bad), bad[:min(3, len(bad))])
	}
	if n := calls.changedSinceMark(); n != moved {
		t.Errorf("the call log shows %d volumes changing driver since the join, %d leaders moved", n, moved)
	}
	t.Logf("all mirroring after %s, balanced after %s, spread to the fourth in %s, whole test %s", converged.Round(100*time.Millisecond),
		balanced.Round(100*time.Millisecond), spread.Round(100*time.Millisecond), time.Since(began).Round(100*time.Millisecond))
}

func firstOf(m map[string]int) string {
	for k, v := range m {
		return fmt.Sprintf("%s: %d", k, v)
	}
	return ""
}

// waitPreferred waits until each of n volumes is led by the daemon
// preferred for it among ids.
func (c *cluster) waitPreferred(ids []string, n int) {
	c.t.Helper()
	c.waitFor("every volume led by its preferred daemon among "+strings.Join(ids, ","), 40*time.Second, func() bool {
		leaders := c.volumeLeaders()
		for key, l := range leaders {
			if l != app.PreferredDaemon(ids, strings.TrimPrefix(key, "mirror_leader/")) {
				return false
			}
		}
		return len(leaders) == n
	})
}

// distribution counts the resources each daemon leads.
func distribution(leaders map[string]string, ids []string) map[string]int {
	out := map[string]int{}
	for _, id := range ids {
		out[id] = 0
	}
	for _, l := range leaders {
		out[l]++
	}
	return out
}

// waitMembers waits until every daemon of ids sees all of them.
func (c *cluster) waitMembers(ids []string) {
	c.t.Helper()
	c.waitFor("daemons "+strings.Join(ids, ",")+" announced", 10*time.Second, func() bool {
		keys := c.keys("mirror_leader/daemons/")
		for _, id := range ids {
			if keys["mirror_leader/daemons/"+id] != id {
				return false
			}
		}
		return true
	})
	time.Sleep(200 * time.Millisecond) // the watches deliver the last announcement
}

// seedVolumesOf writes n volumes of env with operation start, 50 per
// transaction.
func (c *cluster) seedVolumesOf(env core.EnvironmentID, n int) []core.VolumeRef {
	c.t.Helper()
	var refs []core.VolumeRef
	var ops []clientv3.Op
	flush := func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := c.cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			c.t.Fatalf("seed: %v", err)
		}
		ops = ops[:0]
	}
	for i := 1; i <= n; i++ {
		id := env.Source*10000 + uint64(i)
		c.backend.AddSourceVolume(uuidFor(id))
		ref := core.VolumeRef{Env: env, VolumeID: id}
		refs = append(refs, ref)
		ops = append(ops,
			clientv3.OpPut(core.VolumeKey(ref), fmt.Sprintf(`{"source_cluster_storage":{"cluster_id":5,"storage_id":%d},"target_cluster_storage":{"cluster_id":6,"storage_id":13},"source_volume":{"cluster_id":5,"volume_id":%d,"volume_uuid":"%s"},"source_agent":{"ip":"192.168.137.101","port":8080}}`, env.Source, id, uuidFor(id))),
			clientv3.OpPut(core.VolumeOperationKey(ref), `{"operation":"start"}`))
		if len(ops) >= 100 {
			flush()
		}
	}
	if len(ops) > 0 {
		flush()
	}
	return refs
}

// countVolumes counts the volume statuses in state s.
func (c *cluster) countVolumes(s core.State) int {
	n := 0
	want := `"state_code":"` + string(s) + `"`
	for k, v := range c.keys(core.VolumePrefix) {
		if strings.HasSuffix(k, "/status") && strings.Contains(v, want) {
			n++
		}
	}
	return n
}

// volumeLeaders maps each volume's leader key to its holder.
func (c *cluster) volumeLeaders() map[string]string {
	return c.keys("mirror_leader/" + core.VolumePrefix)
}

func (c *cluster) environmentLeaders() map[string]string {
	return c.keys("mirror_leader/" + core.EnvironmentPrefix)
}

// volumeStatusWritesSince counts the writes of each volume status after
// rev, read back from etcd's history.
func (c *cluster) volumeStatusWritesSince(rev int64) map[string]int {
	out := map[string]int{}
	c.eventsUnder(core.VolumePrefix, rev, func(ev *clientv3.Event) {
		if ev.Type == clientv3.EventTypePut && strings.HasSuffix(string(ev.Kv.Key), "/status") {
			out[string(ev.Kv.Key)]++
		}
	})
	return out
}

// leaderTermsSince counts, per volume UUID, the leaderships of the volume
// won after rev (leader keys created).
func (c *cluster) leaderTermsSince(rev int64) map[string]int {
	out := map[string]int{}
	c.eventsUnder(core.DefaultLeaderPrefix+core.VolumePrefix, rev, func(ev *clientv3.Event) {
		if ev.Type != clientv3.EventTypePut || ev.Kv.CreateRevision != ev.Kv.ModRevision {
			return
		}
		pk, err := core.ParseKey(strings.TrimPrefix(string(ev.Kv.Key), core.DefaultLeaderPrefix))
		if err == nil && pk.Kind == core.KindVolume {
			out[uuidFor(pk.Volume.VolumeID)]++
		}
	})
	return out
}

// eventsUnder hands every event under prefix after rev, up to now, to fn.
func (c *cluster) eventsUnder(prefix string, rev int64, fn func(*clientv3.Event)) {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	now := c.revision()
	if now <= rev {
		return
	}
	wch := c.cli.Watch(ctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1))
	// With no write to deliver the watch would say nothing: a progress
	// notice carries the revision it has reached.
	go func() {
		for ctx.Err() == nil {
			_ = c.cli.RequestProgress(ctx)
			time.Sleep(100 * time.Millisecond)
		}
	}()
	// A response's header carries the store's revision, not the events':
	// a long history comes in several responses. The end is an event at
	// now, or a progress notice (sent only once the watch caught up).
	var seen int64
	for resp := range wch {
		if err := resp.Err(); err != nil {
			c.t.Fatalf("history: %v", err)
		}
		for _, ev := range resp.Events {
			fn(ev)
			seen = max(seen, ev.Kv.ModRevision)
		}
		if seen >= now || (resp.IsProgressNotify() && resp.Header.Revision >= now) {
			return
		}
	}
	c.t.Fatalf("history of %s: the watch ended before revision %d", prefix, now)
}

// callerLog records, per volume, which daemon called the backend about
// it, in order.
type callerLog struct {
	mu       sync.Mutex
	byVolume map[string][]string
	marks    map[string]int // per volume, how many calls came before mark
}

func (l *callerLog) note(volumeUUID, daemon string) {
	l.mu.Lock()
	l.byVolume[volumeUUID] = append(l.byVolume[volumeUUID], daemon)
	l.mu.Unlock()
}

// mark remembers where every volume's calls stand.
func (l *callerLog) mark() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.marks = map[string]int{}
	for v, calls := range l.byVolume {
		l.marks[v] = len(calls)
	}
}

// doubleDrivers lists the volumes whose calls changed daemon more often
// than their leadership did: two daemons driving one volume in turn
// without a leadership between (A…B…A on two terms).
func (l *callerLog) doubleDrivers(terms map[string]int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var bad []string
	for v, calls := range l.byVolume {
		if runs := runsOf(calls); len(runs) > terms[v] {
			bad = append(bad, fmt.Sprintf("%s: %v on %d leaderships", v, runs, terms[v]))
		}
	}
	return bad
}

// changedSinceMark counts the volumes whose driver changed after mark
// (the last caller before it counts as the first driver), failing none:
// a change more than once shows up as A…B…A or A…B…C.
func (l *callerLog) changedSinceMark() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for v, calls := range l.byVolume {
		from := max(l.marks[v]-1, 0)
		if len(runsOf(calls[from:])) > 1 {
			n++
		}
	}
	return n
}

// runsOf collapses consecutive repeats: [A A B B] → [A B].
func runsOf(calls []string) []string {
	var runs []string
	for _, d := range calls {
		if len(runs) == 0 || runs[len(runs)-1] != d {
			runs = append(runs, d)
		}
	}
	return runs
}

// callerBackends gives one daemon the shared backend, with its volume
// calls recorded under its name.
type callerBackends struct {
	id     string
	shared *fake.Backend
	log    *callerLog
}

func (b callerBackends) For(ctx context.Context, storageType string) (ports.StorageBackend, error) {
	if storageType != cephType {
		return nil, fmt.Errorf("storage type %q: %w", storageType, ports.ErrNoBackend)
	}
	return callerBackend{Backend: b.shared, id: b.id, log: b.log}, nil
}

type callerBackend struct {
	*fake.Backend
	id  string
	log *callerLog
}

func (b callerBackend) StartVolume(ctx context.Context, v ports.Volume) error {
	b.log.note(v.VolumeUUID, b.id)
	return b.Backend.StartVolume(ctx, v)
}

func (b callerBackend) VolumeStatus(ctx context.Context, v ports.Volume) (ports.VolumeReplication, error) {
	b.log.note(v.VolumeUUID, b.id)
	return b.Backend.VolumeStatus(ctx, v)
}

func (b callerBackend) VolumeStatuses(ctx context.Context, env ports.Environment, vols []ports.Volume) ([]ports.VolumeReplication, error) {
	for _, v := range vols {
		b.log.note(v.VolumeUUID, b.id)
	}
	return b.Backend.VolumeStatuses(ctx, env, vols)
}

func (b callerBackend) PauseVolume(ctx context.Context, v ports.Volume) error {
	b.log.note(v.VolumeUUID, b.id)
	return b.Backend.PauseVolume(ctx, v)
}

func (b callerBackend) ResumeVolume(ctx context.Context, v ports.Volume) error {
	b.log.note(v.VolumeUUID, b.id)
	return b.Backend.ResumeVolume(ctx, v)
}

func (b callerBackend) StopVolume(ctx context.Context, v ports.Volume) (ports.CleanupReport, error) {
	b.log.note(v.VolumeUUID, b.id)
	return b.Backend.StopVolume(ctx, v)
}

func (b callerBackend) DeleteTarget(ctx context.Context, v ports.Volume) error {
	b.log.note(v.VolumeUUID, b.id)
	return b.Backend.DeleteTarget(ctx, v)
}

func (b callerBackend) DestroyVolume(ctx context.Context, v ports.Volume) (ports.CleanupReport, error) {
	b.log.note(v.VolumeUUID, b.id)
	return b.Backend.DestroyVolume(ctx, v)
}
