package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cdmdr/mirror/adapters/fake"
	"github.com/cdmdr/mirror/core"
	"github.com/cdmdr/mirror/ports"
)

// Several daemons under faults (issue 15, "Several daemons"). Three
// daemons share one scripted storage and an embedded etcd, each through a
// TCP proxy of its own, while a churn of pause / resume / stop_and_delete /
// start runs on the volumes. Again and again one daemon, picked at random
// (seeded), is killed (its proxy severed, its backend calls refused from
// that instant, its lease left to expire: what kill -9 does, in process)
// or cut from etcd (its proxy paused, sometimes with its connections
// dropped), then restored (a new incarnation of the same identity, or the
// proxy let through). Checked:
//
//   - no double drive. A drive of volume V by daemon D is D's side-effecting
//     backend calls on V (start, pause, resume, stop, delete target,
//     destroy) while it leads V. From the backend's call log (every such
//     call with its daemon, incarnation, entry and exit time): (a) no call
//     on V by one incarnation overlaps in time a call on V by another; (b)
//     per volume, the daemons in the order they called (runs: A A B A → A B
//     A) are a subsequence of the holders of V's leader key in the order
//     the leaderships were created (etcd's history): a daemon calling
//     between another's calls without a leadership of its own in between
//     is a violation.
//   - no write after the lease: replaying etcd's whole history, every
//     status written names as owner the daemon holding the resource's
//     leader key at that revision; and for each cut, no write by the cut
//     daemon between the revision its lease expired at and its next
//     session's first key.
//   - takeover: from the fault to every resource the victim led being led
//     by a survivor (or gone), within the session TTL plus a margin.
//   - at the end every volume reaches the end state of its last operation.
//
// Short form in make test; MIRROR_FAULTS=long for the long one (make
// faults); MIRROR_FAULTS_SEED=n repeats a run's choices.
func TestDaemonsUnderFaults(t *testing.T) {
	if testing.Short() {
		t.Skip("three daemons on a real etcd")
	}
	seed := faultsSeed(t)
	rng := rand.New(rand.NewPCG(seed, 1))
	nVolumes, phase := 24, 22*time.Second
	if os.Getenv("MIRROR_FAULTS") == "long" {
		nVolumes, phase = 60, 3*time.Minute
	}
	const ttl = 2 * time.Second
	// The survivors campaign at the deletion event (or after the placement
	// grace, 2 fast polls); the margin covers that, the first reconcile and
	// a loaded CI machine.
	const margin = 3 * time.Second

	c := newCluster(t)
	c.backend.AutoSync(true)
	calls := &driveLog{}
	ids := []string{"d1", "d2", "d3"}
	members := make([]*faultMember, len(ids))
	for i, id := range ids {
		members[i] = c.startFaultMember(id, 1, calls, seed)
	}
	c.waitMembers(ids)
	c.seedStorages()
	c.seedEnvironment("start")
	churn := newOpChurn(c, nVolumes, rand.New(rand.NewPCG(seed, 2)))
	for _, v := range churn.vols {
		c.seedVolume(v, uuidFor(v), "start")
	}
	churn.run()

	var faults []faultRecord
	var takeovers []time.Duration
	slow := 0
	end := time.Now().Add(phase)
	for time.Now().Before(end) {
		m := members[rng.IntN(len(members))]
		f := faultRecord{victim: m.id, kill: rng.IntN(2) == 0, drop: rng.IntN(2) == 0}
		f.lease, f.held = c.ledBy(m.id)
		f.at = time.Now()
		if f.kill {
			m.kill()
		} else {
			m.proxy.pause()
			if f.drop {
				m.proxy.disconnect()
			}
		}
		f.took, f.taken = c.waitTakeover(m.id, f.lease, f.held, 20*time.Second)
		if len(f.held) > 0 {
			takeovers = append(takeovers, f.took)
			if !f.taken || f.took > ttl+margin {
				slow++
				t.Errorf("fault %d (%s): takeover of %d resources took %s (done: %v), want within %s", len(faults)+1, f, len(f.held), f.took, f.taken, ttl+margin)
			}
		}
		if f.kill {
			*m = *c.startFaultMember(m.id, m.inc+1, calls, seed)
		} else {
			m.proxy.unpause()
		}
		faults = append(faults, f)
		if !c.backWithNewSession(m.id, f.lease, 20*time.Second) {
			l, _ := c.membershipLease(m.id)
			t.Errorf("fault %d (%s): %s not announced on a new session 20s after being restored (lease %x, was %x)", len(faults), f, m.id, int64(l), int64(f.lease))
			break
		}
		t.Logf("fault %d: %s; %d resources taken over in %s", len(faults), f, len(f.held), f.took.Round(time.Millisecond))
		time.Sleep(time.Duration(300+rng.IntN(900)) * time.Millisecond) // pace: let the restored daemon lead again
	}
	ops := churn.stop()

	converged := time.Now()
	for !churn.settled() && time.Since(converged) < 40*time.Second {
		time.Sleep(50 * time.Millisecond)
	}
	convergence := time.Since(converged)
	stuck := churn.unsettled()
	for _, m := range members {
		m.d.stop()
	}

	// The checks, from the call log and etcd's history.
	overlaps := calls.overlaps()
	for _, o := range overlaps[:min(5, len(overlaps))] {
		t.Errorf("double drive: %s", o)
	}
	h := c.fullHistory()
	unbacked := calls.unbackedRuns(h.terms)
	for _, u := range unbacked[:min(5, len(unbacked))] {
		t.Errorf("drive without a leadership: %s", u)
	}
	unfenced := h.writesWithoutLead()
	for _, u := range unfenced[:min(5, len(unfenced))] {
		t.Errorf("write without the lead: %s", u)
	}
	cuts, afterLease := 0, 0
	for _, f := range faults {
		if f.kill {
			continue
		}
		cuts++
		exp, next, late := h.writesAfterLease(f.victim, f.lease)
		if exp == 0 {
			t.Errorf("cut of %s: its lease %x never expired in etcd's history", f.victim, f.lease)
		}
		for _, w := range late {
			t.Errorf("cut of %s: write after its lease expired (revision %d, next session at %d): %s", f.victim, exp, next, w)
		}
		afterLease += len(late)
	}
	for _, v := range stuck {
		t.Errorf("volume %d not in the end state of its last operation (%s) %s after the faults; its history:\n%s",
			v, churn.last[v], convergence.Round(time.Millisecond), h.of(core.VolumeKey(core.VolumeRef{Env: seedEnv, VolumeID: v})))
	}
	slices.Sort(takeovers)
	t.Logf("%d volumes, %d operations, %d side-effecting backend calls; %d faults (%d kills, %d cuts) in %s; double drives %d, drives without a lead %d, writes without the lead %d, writes after the lease %d, slow takeovers %d, stuck volumes %d",
		nVolumes, ops, calls.len(), len(faults), len(faults)-cuts, cuts, phase, len(overlaps), len(unbacked), len(unfenced), afterLease, slow, len(stuck))
	if len(takeovers) > 0 {
		t.Logf("takeover (session TTL %s, bound %s): min %s, median %s, max %s over %d faults; all volumes at their last operation's end state %s after the faults",
			ttl, ttl+margin, takeovers[0].Round(time.Millisecond), takeovers[len(takeovers)/2].Round(time.Millisecond),
			takeovers[len(takeovers)-1].Round(time.Millisecond), len(takeovers), convergence.Round(time.Millisecond))
	}
	if len(faults) < 3 {
		t.Errorf("only %d faults injected; the run proves little", len(faults))
	}
}

// faultRecord is one fault injected.
type faultRecord struct {
	victim     string
	kill, drop bool
	lease      clientv3.LeaseID // the victim's session when it was hit
	held       []string         // leader keys it held then
	at         time.Time
	took       time.Duration
	taken      bool
}

func (f faultRecord) String() string {
	switch {
	case f.kill:
		return "kill " + f.victim
	case f.drop:
		return "cut " + f.victim + " (connections dropped)"
	default:
		return "cut " + f.victim
	}
}

// faultMember is one incarnation of a daemon, with its own proxy to etcd
// and its own view of the shared storage.
type faultMember struct {
	id    string
	inc   int
	proxy *proxy
	d     *daemon
	dead  context.CancelFunc
}

func (c *cluster) startFaultMember(id string, inc int, log *driveLog, seed uint64) *faultMember {
	c.t.Helper()
	p := startProxy(c.t.(*testing.T), etcdHostPort(c))
	dead, kill := context.WithCancel(context.Background())
	c.t.Cleanup(kill)
	b := faultBackends{id: id, inc: inc, shared: c.backend, log: log, dead: dead,
		rng: rand.New(rand.NewPCG(seed, uint64(3+inc*8)+uint64(len(id)+int(id[len(id)-1]))))}
	return &faultMember{id: id, inc: inc, proxy: p, dead: kill, d: c.startOn(id, &b, viaProxy(p))}
}

// kill does to this incarnation what kill -9 does to a process: from now
// on it calls no backend and reaches etcd no more (its lease is not
// revoked: it expires); then its goroutines are stopped, out of reach.
func (m *faultMember) kill() {
	m.dead()
	m.proxy.sever()
	m.d.once.Do(m.d.cancel)
}

// sever ends the proxy for good without letting a held byte through, as a
// killed process's sockets die with it.
func (p *proxy) sever() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
	p.ln.Close()
	p.disconnect()
	p.unpause() // held bytes find their connections closed
	p.wg.Wait()
}

// ledBy returns the session lease of daemon id and the leader keys it
// holds with it.
func (c *cluster) ledBy(id string) (clientv3.LeaseID, []string) {
	c.t.Helper()
	lease, _ := c.membershipLease(id)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.cli.Get(ctx, core.DefaultLeaderPrefix, clientv3.WithPrefix())
	if err != nil {
		c.t.Fatalf("list leaders: %v", err)
	}
	var held []string
	for _, kv := range resp.Kvs {
		k := string(kv.Key)
		if string(kv.Value) == id && clientv3.LeaseID(kv.Lease) == lease && !strings.HasPrefix(k, core.DefaultLeaderPrefix+"daemons/") {
			held = append(held, k)
		}
	}
	return lease, held
}

// membershipLease is the lease of daemon id's announcement.
func (c *cluster) membershipLease(id string) (clientv3.LeaseID, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.cli.Get(ctx, core.DefaultLeaderPrefix+"daemons/"+id)
	if err != nil || len(resp.Kvs) == 0 {
		return 0, false
	}
	return clientv3.LeaseID(resp.Kvs[0].Lease), true
}

// waitTakeover waits until the victim's session lease is gone and every
// leader key of held is another daemon's, or its resource is gone, and
// says how long that took.
func (c *cluster) waitTakeover(victim string, lease clientv3.LeaseID, held []string, within time.Duration) (time.Duration, bool) {
	began := time.Now()
	for {
		all := c.keys("")
		l, ok := c.membershipLease(victim)
		done := !ok || l != lease
		for _, k := range held {
			if !done {
				break
			}
			l := all[k]
			_, exists := all[strings.TrimPrefix(k, core.DefaultLeaderPrefix)]
			if l == victim || (l == "" && exists) {
				done = false
				break
			}
		}
		took := time.Since(began)
		if done || took > within {
			return took, done
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// backWithNewSession waits until daemon id announces itself on a session
// other than lease.
func (c *cluster) backWithNewSession(id string, lease clientv3.LeaseID, within time.Duration) bool {
	for began := time.Now(); time.Since(began) < within; time.Sleep(20 * time.Millisecond) {
		if l, ok := c.membershipLease(id); ok && l != lease {
			return true
		}
	}
	return false
}

// driveCall is one side-effecting backend call on a volume.
type driveCall struct {
	daemon      string
	inc         int
	method      string
	volume      string // UUID
	enter, exit time.Time
}

func (d driveCall) String() string {
	return fmt.Sprintf("%s#%d %s %s [%s, %s]", d.daemon, d.inc, d.method, d.volume,
		d.enter.Format("15:04:05.000"), d.exit.Format("15:04:05.000"))
}

// driveLog is the backend's call log, shared by every daemon.
type driveLog struct {
	mu    sync.Mutex
	calls []driveCall
}

func (l *driveLog) begin(c driveCall) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	c.enter = time.Now()
	l.calls = append(l.calls, c)
	return len(l.calls) - 1
}

func (l *driveLog) end(i int) {
	l.mu.Lock()
	l.calls[i].exit = time.Now()
	l.mu.Unlock()
}

func (l *driveLog) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.calls)
}

// byVolume returns the calls per volume, in the order they began.
func (l *driveLog) byVolume() map[string][]driveCall {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string][]driveCall{}
	for _, c := range l.calls {
		out[c.volume] = append(out[c.volume], c)
	}
	return out
}

// overlaps lists the pairs of calls on one volume, by two incarnations,
// whose [enter, exit] intervals meet.
func (l *driveLog) overlaps() []string {
	var bad []string
	for _, calls := range l.byVolume() {
		for i, a := range calls {
			for _, b := range calls[i+1:] {
				if (a.daemon != b.daemon || a.inc != b.inc) && b.enter.Before(a.exit) && a.enter.Before(b.exit) {
					bad = append(bad, a.String()+" and "+b.String())
				}
			}
		}
	}
	return bad
}

// unbackedRuns lists the volumes whose drivers, in order, are not a
// subsequence of their leaders in order (terms: per volume UUID, the
// holder of each leadership created).
func (l *driveLog) unbackedRuns(terms map[string][]string) []string {
	var bad []string
	for v, calls := range l.byVolume() {
		var drivers []string
		for _, c := range calls {
			drivers = append(drivers, c.daemon)
		}
		runs := runsOf(drivers)
		i := 0
		for _, r := range runs {
			for i < len(terms[v]) && terms[v][i] != r {
				i++
			}
			if i == len(terms[v]) {
				bad = append(bad, fmt.Sprintf("%s: drivers %v, leaders %v", v, runs, terms[v]))
				break
			}
			i++
		}
	}
	return bad
}

// faultBackends is one daemon incarnation's way to the shared storage: its
// volume calls are logged under its name, take the time a real storage
// takes, and once it is killed every call is refused.
type faultBackends struct {
	id     string
	inc    int
	shared *fake.Backend
	log    *driveLog
	dead   context.Context
	mu     sync.Mutex
	rng    *rand.Rand
}

func (b *faultBackends) For(ctx context.Context, storageType string) (ports.StorageBackend, error) {
	if err := b.alive(); err != nil {
		return nil, err
	}
	if storageType != cephType {
		return nil, fmt.Errorf("storage type %q: %w", storageType, ports.ErrNoBackend)
	}
	return faultBackend{Backend: b.shared, b: b}, nil
}

func (b *faultBackends) alive() error {
	if b.dead.Err() != nil {
		return fmt.Errorf("daemon %s#%d was killed: %w", b.id, b.inc, ports.ErrRetryable)
	}
	return nil
}

// latency is how long a call takes: mostly little, sometimes a second,
// now and then longer than the session TTL (a storage under load): a
// daemon that loses its lead in the middle of such a call must have
// ended it before a survivor calls.
func (b *faultBackends) latency() time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch n := b.rng.IntN(20); {
	case n == 0:
		return time.Duration(2500+b.rng.IntN(2000)) * time.Millisecond
	case n < 4:
		return time.Duration(300+b.rng.IntN(1200)) * time.Millisecond
	default:
		return time.Duration(b.rng.IntN(30)) * time.Millisecond
	}
}

// drive runs a side-effecting call on volume uuid: logged, slowed, cut
// short by ctx or by the incarnation's death (a killed process's plugin
// calls end with it).
func (b *faultBackends) drive(ctx context.Context, method, uuid string, call func(context.Context) error) error {
	if err := b.alive(); err != nil {
		return err
	}
	i := b.log.begin(driveCall{daemon: b.id, inc: b.inc, method: method, volume: uuid})
	defer b.log.end(i)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(b.dead, cancel)()
	select {
	case <-time.After(b.latency()):
	case <-ctx.Done():
		return fmt.Errorf("%s %s: %w", method, uuid, ctx.Err())
	}
	return call(ctx)
}

type faultBackend struct {
	*fake.Backend
	b *faultBackends
}

func (f faultBackend) StartVolume(ctx context.Context, v ports.Volume) error {
	return f.b.drive(ctx, "StartVolume", v.VolumeUUID, func(ctx context.Context) error { return f.Backend.StartVolume(ctx, v) })
}

func (f faultBackend) PauseVolume(ctx context.Context, v ports.Volume) error {
	return f.b.drive(ctx, "PauseVolume", v.VolumeUUID, func(ctx context.Context) error { return f.Backend.PauseVolume(ctx, v) })
}

func (f faultBackend) ResumeVolume(ctx context.Context, v ports.Volume) error {
	return f.b.drive(ctx, "ResumeVolume", v.VolumeUUID, func(ctx context.Context) error { return f.Backend.ResumeVolume(ctx, v) })
}

func (f faultBackend) StopVolume(ctx context.Context, v ports.Volume) (ports.CleanupReport, error) {
	var r ports.CleanupReport
	err := f.b.drive(ctx, "StopVolume", v.VolumeUUID, func(ctx context.Context) (err error) { r, err = f.Backend.StopVolume(ctx, v); return err })
	return r, err
}

func (f faultBackend) DeleteTarget(ctx context.Context, v ports.Volume) error {
	return f.b.drive(ctx, "DeleteTarget", v.VolumeUUID, func(ctx context.Context) error { return f.Backend.DeleteTarget(ctx, v) })
}

func (f faultBackend) DestroyVolume(ctx context.Context, v ports.Volume) (ports.CleanupReport, error) {
	var r ports.CleanupReport
	err := f.b.drive(ctx, "DestroyVolume", v.VolumeUUID, func(ctx context.Context) (err error) { r, err = f.Backend.DestroyVolume(ctx, v); return err })
	return r, err
}

// The other calls only check that the incarnation lives.

func (f faultBackend) VolumeStatus(ctx context.Context, v ports.Volume) (ports.VolumeReplication, error) {
	if err := f.b.alive(); err != nil {
		return ports.VolumeReplication{}, err
	}
	return f.Backend.VolumeStatus(ctx, v)
}

func (f faultBackend) VolumeStatuses(ctx context.Context, env ports.Environment, vols []ports.Volume) ([]ports.VolumeReplication, error) {
	if err := f.b.alive(); err != nil {
		return nil, err
	}
	return f.Backend.VolumeStatuses(ctx, env, vols)
}

func (f faultBackend) PrepareEnvironment(ctx context.Context, env ports.Environment) error {
	if err := f.b.alive(); err != nil {
		return err
	}
	return f.Backend.PrepareEnvironment(ctx, env)
}

func (f faultBackend) ReleaseEnvironment(ctx context.Context, env ports.Environment) error {
	if err := f.b.alive(); err != nil {
		return err
	}
	return f.Backend.ReleaseEnvironment(ctx, env)
}

// opChurn plays the DR manager: on volumes settled in the end state of
// their last operation it asks the next one (pause, resume,
// stop_and_delete, then start again once the keys are gone).
type opChurn struct {
	c    *cluster
	rng  *rand.Rand
	vols []uint64

	mu   sync.Mutex
	last map[uint64]string
	ops  int
	errs []error

	quit chan struct{}
	done chan struct{}
}

func newOpChurn(c *cluster, n int, rng *rand.Rand) *opChurn {
	ch := &opChurn{c: c, rng: rng, last: map[uint64]string{}, quit: make(chan struct{}), done: make(chan struct{})}
	for i := 1; i <= n; i++ {
		ch.vols = append(ch.vols, uint64(i))
		ch.last[uint64(i)] = "start"
	}
	return ch
}

func (ch *opChurn) run() {
	go func() {
		defer close(ch.done)
		for {
			select {
			case <-ch.quit:
				return
			case <-time.After(time.Duration(20+ch.rng.IntN(60)) * time.Millisecond):
			}
			if err := ch.step(ch.vols[ch.rng.IntN(len(ch.vols))]); err != nil {
				ch.mu.Lock()
				ch.errs = append(ch.errs, err)
				ch.mu.Unlock()
			}
		}
	}()
}

// stop ends the churn and returns how many operations it asked.
func (ch *opChurn) stop() int {
	close(ch.quit)
	<-ch.done
	ch.mu.Lock()
	defer ch.mu.Unlock()
	for _, err := range ch.errs {
		ch.c.t.Errorf("churn: %v", err)
	}
	return ch.ops
}

// step asks volume v's next operation if v is settled.
func (ch *opChurn) step(v uint64) error {
	ch.mu.Lock()
	last := ch.last[v]
	ch.mu.Unlock()
	ok, err := ch.at(v, last)
	if err != nil || !ok {
		return err
	}
	ref := core.VolumeRef{Env: seedEnv, VolumeID: v}
	next := "pause"
	switch {
	case last == "pause":
		next = "resume"
	case last == "stop_and_delete":
		next = "start"
	case ch.rng.IntN(6) == 0:
		next = "stop_and_delete"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var ops []clientv3.Op
	if next == "start" {
		ops = append(ops, clientv3.OpPut(core.VolumeKey(ref), volumeRecord(v)))
	}
	ops = append(ops, clientv3.OpPut(core.VolumeOperationKey(ref), `{"operation":"`+next+`"}`))
	if _, err := ch.c.cli.Txn(ctx).Then(ops...).Commit(); err != nil {
		return fmt.Errorf("volume %d %s: %w", v, next, err)
	}
	ch.mu.Lock()
	ch.last[v] = next
	ch.ops++
	ch.mu.Unlock()
	return nil
}

// at reports whether volume v is in the end state of operation op.
func (ch *opChurn) at(v uint64, op string) (bool, error) {
	ref := core.VolumeRef{Env: seedEnv, VolumeID: v}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if op == "stop_and_delete" {
		// The record, and the keys under it (volume.2/ and not volume.20).
		rec, err := ch.c.cli.Get(ctx, core.VolumeKey(ref), clientv3.WithCountOnly())
		if err != nil {
			return false, fmt.Errorf("volume %d: %w", v, err)
		}
		under, err := ch.c.cli.Get(ctx, core.VolumeKey(ref)+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			return false, fmt.Errorf("volume %d: %w", v, err)
		}
		return rec.Count+under.Count == 0, nil
	}
	resp, err := ch.c.cli.Get(ctx, core.VolumeStatusKey(ref))
	if err != nil {
		return false, fmt.Errorf("volume %d: %w", v, err)
	}
	if len(resp.Kvs) == 0 {
		return false, nil
	}
	st, err := core.DecodeStatus(resp.Kvs[0].Value)
	if err != nil {
		return false, fmt.Errorf("volume %d status: %w", v, err)
	}
	want := core.StateMirroring
	if op == "pause" {
		want = core.StatePaused
	}
	return st.StateCode == want, nil
}

// settled reports whether every volume is in its last operation's end
// state.
func (ch *opChurn) settled() bool {
	for _, v := range ch.vols {
		if ok, err := ch.at(v, ch.last[v]); err != nil || !ok {
			return false
		}
	}
	return true
}

// unsettled lists the volumes not in their last operation's end state.
func (ch *opChurn) unsettled() []uint64 {
	var out []uint64
	for _, v := range ch.vols {
		if ok, err := ch.at(v, ch.last[v]); err != nil || !ok {
			out = append(out, v)
		}
	}
	return out
}

// volumeRecord is volume id's record, as seedVolume writes it.
func volumeRecord(id uint64) string {
	return fmt.Sprintf(`{"source_cluster_storage":{"cluster_id":5,"storage_id":11},"target_cluster_storage":{"cluster_id":6,"storage_id":13},"source_volume":{"cluster_id":5,"volume_id":%d,"volume_uuid":"%s"},"source_agent":{"ip":"192.168.137.101","port":8080}}`, id, uuidFor(id))
}

// etcdHistory is every write to etcd since it started, replayed.
type etcdHistory struct {
	events []historyEvent
	// terms: per volume UUID, the holder of each leadership created, in order.
	terms map[string][]string
}

type historyEvent struct {
	rev      int64
	put      bool
	key      string
	value    string
	lease    clientv3.LeaseID // the key's lease: its own on a put, its last on a delete
	leaderOf string           // the key's leader before this event
}

func (c *cluster) fullHistory() etcdHistory {
	c.t.Helper()
	h := etcdHistory{terms: map[string][]string{}}
	type kv struct {
		value string
		lease clientv3.LeaseID
	}
	state := map[string]kv{}
	c.eventsUnder("", 0, func(ev *clientv3.Event) {
		k := string(ev.Kv.Key)
		e := historyEvent{rev: ev.Kv.ModRevision, put: ev.Type == clientv3.EventTypePut, key: k}
		if res, ok := statusResource(k); ok {
			e.leaderOf = state[core.DefaultLeaderPrefix+res].value
		}
		if e.put {
			e.value, e.lease = string(ev.Kv.Value), clientv3.LeaseID(ev.Kv.Lease)
			state[k] = kv{e.value, e.lease}
			if ev.Kv.CreateRevision == ev.Kv.ModRevision {
				if pk, err := core.ParseKey(strings.TrimPrefix(k, core.DefaultLeaderPrefix)); err == nil && strings.HasPrefix(k, core.DefaultLeaderPrefix) && pk.Kind == core.KindVolume {
					h.terms[uuidFor(pk.Volume.VolumeID)] = append(h.terms[uuidFor(pk.Volume.VolumeID)], e.value)
				}
			}
		} else {
			e.lease = state[k].lease
			delete(state, k)
		}
		h.events = append(h.events, e)
	})
	return h
}

// statusResource returns the resource whose status key is k (a volume's
// or an environment's).
func statusResource(k string) (string, bool) {
	res, ok := strings.CutSuffix(k, "/status")
	if !ok {
		return "", false
	}
	switch {
	case strings.HasPrefix(res, core.VolumePrefix) && strings.Count(res, "/") == 2,
		strings.HasPrefix(res, core.EnvironmentPrefix) && strings.Count(res, "/") == 1:
		return res, true
	}
	return "", false
}

// writesWithoutLead lists the statuses written by a daemon that did not
// hold the resource's leader key at that revision.
func (h etcdHistory) writesWithoutLead() []string {
	var bad []string
	for _, e := range h.events {
		if _, ok := statusResource(e.key); !ok || !e.put {
			continue
		}
		st, err := core.DecodeStatus([]byte(e.value))
		if err != nil {
			bad = append(bad, fmt.Sprintf("revision %d %s: %v", e.rev, e.key, err))
			continue
		}
		if st.Owner != e.leaderOf {
			bad = append(bad, fmt.Sprintf("revision %d %s written by %q while %q led", e.rev, e.key, st.Owner, e.leaderOf))
		}
	}
	return bad
}

// writesAfterLease finds the revision lease expired at (daemon id's
// announcement deleted) and daemon id's next session (its first key
// with another lease), and lists id's writes between: statuses it owns,
// keys naming it.
func (h etcdHistory) writesAfterLease(id string, lease clientv3.LeaseID) (expired, next int64, late []string) {
	for _, e := range h.events {
		switch {
		case expired == 0:
			// The announcement goes only with the session (or on a
			// graceful stop, which a cut is not).
			if !e.put && e.lease == lease && e.key == core.DefaultLeaderPrefix+"daemons/"+id {
				expired = e.rev
			}
		case e.put && e.value == id && e.lease != 0 && e.lease != lease:
			return expired, e.rev, late
		case e.put && e.value == id:
			late = append(late, fmt.Sprintf("revision %d %s", e.rev, e.key))
		case e.put:
			if _, ok := statusResource(e.key); ok {
				if st, err := core.DecodeStatus([]byte(e.value)); err == nil && st.Owner == id {
					late = append(late, fmt.Sprintf("revision %d %s", e.rev, e.key))
				}
			}
		}
	}
	return expired, next, late
}

// of prints the events of resource key and its leader key.
func (h etcdHistory) of(key string) string {
	var b strings.Builder
	for _, e := range h.events {
		if e.key == key || strings.HasPrefix(e.key, key+"/") || e.key == core.DefaultLeaderPrefix+key {
			op := "delete"
			if e.put {
				op = "put"
			}
			fmt.Fprintf(&b, "  %d %s %s %s lease=%x\n", e.rev, op, e.key, e.value, int64(e.lease))
		}
	}
	return b.String()
}
