package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"sync/atomic"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"

	"github.com/cdmdr/mirror/adapters/etcd"
	"github.com/cdmdr/mirror/adapters/etcd/etcdtest"
	"github.com/cdmdr/mirror/adapters/fake"
	"github.com/cdmdr/mirror/adapters/nats/natstest"
	"github.com/cdmdr/mirror/core"
	"github.com/cdmdr/mirror/ports"
)

// Servers down (issue 15): etcd, NATS, and a 3-member etcd cluster losing
// its leader then its quorum, under running daemons. Each test prints
// trials, faults, lost and the time to recover; docs/reliability.md
// quotes them.

// outage is how long a server stays down: a few seconds, more than the
// daemons' session TTL (2 s, so leaderships are lost), in make test; 30 s
// with MIRROR_FAULTS=long (make faults).
func outage() time.Duration {
	if os.Getenv("MIRROR_FAULTS") == "long" {
		return 30 * time.Second
	}
	return 3 * time.Second
}

// convergeWithin bounds every wait for convergence after a server is back.
const convergeWithin = 60 * time.Second

func volRef(i uint64) core.VolumeRef { return core.VolumeRef{Env: seedEnv, VolumeID: i} }

// waitConverged polls cond (which names what is not there yet) until it
// returns nothing, and returns how long that took from since. It logs what
// converged last, which is what the time measures.
func (c *cluster) waitConverged(since time.Time, cond func() []string) time.Duration {
	c.t.Helper()
	var last []string
	c.waitFor("convergence", convergeWithin, func() bool {
		missing := cond()
		if len(missing) > 0 {
			last = missing
		}
		return len(missing) == 0
	})
	took := time.Since(since)
	c.t.Logf("converged %s after the fault ended; last to converge: %v", took.Round(time.Millisecond), last)
	return took
}

// alive fails the test if a daemon exited.
func alive(t *testing.T, ds ...*daemon) {
	t.Helper()
	for _, d := range ds {
		select {
		case <-d.done:
			t.Fatalf("daemon %s exited: %v", d.id, d.err)
		default:
		}
	}
}

// etcd down for outage() under two daemons with volumes in every stage of
// an operation: pauses inside the backend's call, first copies running,
// and stop_and_delete asked just before. Once etcd is back every volume
// reaches the end state of its operation.
func TestEtcdOutageMidOperation(t *testing.T) {
	c := newCluster(t)
	c.backend.AutoSync(true)
	// No periodic re-listing: recovery must come from the daemons noticing
	// etcd is back, not from a timer that would hide a missed event.
	noResync := func(cfg *Config) { cfg.ResyncInterval = time.Hour }
	d1, d2 := c.start("d1", noResync), c.start("d2", noResync)
	c.seedStorages()
	c.seedEnvironment("start")
	const n = 12
	pausing, copying, deleting := []uint64{1, 2, 3, 4}, []uint64{5, 6, 7, 8}, []uint64{9, 10, 11, 12}
	var releaseCopies []func()
	for _, i := range copying {
		releaseCopies = append(releaseCopies, c.backend.HoldFirstCopy(uuidFor(i)))
	}
	for i := uint64(1); i <= n; i++ {
		c.seedVolume(i, uuidFor(i), "start")
	}
	for _, i := range append(pausing, deleting...) {
		c.waitState(core.VolumeStatusKey(volRef(i)), core.StateMirroring)
	}
	for _, i := range copying {
		c.waitState(core.VolumeStatusKey(volRef(i)), core.StateInitializing)
	}

	// Operations asked just before etcd goes: the pauses reach the
	// backend and stay inside it, the deletions are on their way.
	releasePause := c.backend.Block("PauseVolume")
	for _, i := range pausing {
		c.setOp(volRef(i), "pause")
	}
	c.waitFor("every pause inside the backend", 20*time.Second, func() bool {
		return c.backend.Blocked("PauseVolume") == len(pausing)
	})
	for _, i := range deleting {
		c.setOp(volRef(i), "stop_and_delete")
	}

	c.etcd.Stop()
	// While etcd is down the backend finishes what it was doing.
	releasePause()
	for _, release := range releaseCopies {
		release()
	}
	time.Sleep(outage()) // the fault itself
	c.etcd.Restart(t)
	back := time.Now()

	took := c.waitConverged(back, func() []string {
		var missing []string
		for _, i := range pausing {
			if st, _ := c.status(core.VolumeStatusKey(volRef(i))); st.StateCode != core.StatePaused ||
				c.backend.Replication(uuidFor(i)).State != "paused" {
				missing = append(missing, fmt.Sprintf("volume %d paused (%s)", i, st.StateCode))
			}
		}
		for _, i := range copying {
			if st, _ := c.status(core.VolumeStatusKey(volRef(i))); st.StateCode != core.StateMirroring {
				missing = append(missing, fmt.Sprintf("volume %d mirroring (%s)", i, st.StateCode))
			}
		}
		for _, i := range deleting {
			if len(c.keys(core.VolumeKey(volRef(i))+"/")) != 0 || c.get(core.VolumeKey(volRef(i))) != "" ||
				c.backend.Replication(uuidFor(i)).TargetExists {
				missing = append(missing, fmt.Sprintf("volume %d deleted", i))
			}
		}
		return missing
	})
	alive(t, d1, d2)
	t.Logf("etcd outage: trials 1, faults 1 (etcd down %s; %d volumes: %d pausing inside the backend, %d first copies, %d stop_and_delete asked), lost 0, converged %s after etcd was back",
		outage(), n, len(pausing), len(copying), len(deleting), took.Round(time.Millisecond))
}

// snapshotMsg is a snapshot message of docs/contract.md §5.2 about volume i.
func snapshotMsg(i, snap uint64) map[string]any {
	return map[string]any{"cluster_id": 5, "volume_id": i, "volume_uuid": uuidFor(i),
		"snapshot_id": snap, "snapshot_uuid": snapUUIDFor(snap), "snapshot_name": fmt.Sprintf("snap-%d", snap)}
}

func snapUUIDFor(snap uint64) string { return fmt.Sprintf("5a000000-0000-4000-8000-%012d", snap) }

func snapRef(i, snap uint64) core.SnapshotRef {
	return core.SnapshotRef{Volume: volRef(i), SnapshotID: snap}
}

// retryingPublisher is the cluster manager as a careful one runs: one
// connection that reconnects for ever, and each message published until
// the JetStream stream acknowledges it (a request on the subject; the
// stream answers with its sequence). A message may then be stored twice;
// never not at all.
type retryingPublisher struct {
	nc      *natsgo.Conn
	retries atomic.Int64
}

func newRetryingPublisher(t *testing.T, url string) *retryingPublisher {
	t.Helper()
	// No reconnect buffer: while disconnected a publish fails at once and
	// is retried, rather than queued where a restart may drop it.
	nc, err := natsgo.Connect(url, natsgo.MaxReconnects(-1), natsgo.ReconnectWait(100*time.Millisecond),
		natsgo.ReconnectBufSize(-1), natsgo.RetryOnFailedConnect(true))
	if err != nil {
		t.Fatalf("publisher: connect to nats: %v", err)
	}
	t.Cleanup(nc.Close)
	return &retryingPublisher{nc: nc}
}

// publish sends v on subject until the stream stored it or ctx ends.
func (p *retryingPublisher) publish(ctx context.Context, subject string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	for {
		msg, err := p.nc.Request(subject, data, 2*time.Second)
		if err == nil {
			var ack struct {
				Stream string `json:"stream"`
				Error  *struct {
					Description string `json:"description"`
				} `json:"error"`
			}
			if err = json.Unmarshal(msg.Data, &ack); err == nil && (ack.Error != nil || ack.Stream == "") {
				err = fmt.Errorf("not stored: %s", msg.Data)
			}
			if err == nil {
				return nil
			}
		}
		p.retries.Add(1)
		select {
		case <-ctx.Done():
			return fmt.Errorf("publish to %s: %w (last: %v)", subject, ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// NATS down for outage() while the cluster manager announces new
// snapshots and deletes old ones: once NATS is back every snapshot record
// reaches its end state (mirrored, or gone), none lost.
func TestNATSOutageSnapshotEvents(t *testing.T) {
	c := newCluster(t)
	c.backend.AutoSync(true)
	d1, d2 := c.start("d1"), c.start("d2")
	c.seedStorages()
	c.seedEnvironment("start")
	vols := []uint64{1, 2, 3, 4}
	for _, i := range vols {
		c.seedVolume(i, uuidFor(i), "start")
	}
	for _, i := range vols {
		c.waitState(core.VolumeStatusKey(volRef(i)), core.StateMirroring)
	}
	pub := newRetryingPublisher(t, c.nats.URL())
	ctx, cancel := context.WithTimeout(context.Background(), outage()+convergeWithin)
	defer cancel()
	// Snapshots 100+i are mirrored before the outage and deleted during it.
	for _, i := range vols {
		c.backend.AddSourceSnapshot(uuidFor(i), snapUUIDFor(100+i))
		if err := pub.publish(ctx, "cdm.cluster.volume_snapshot.created", snapshotMsg(i, 100+i)); err != nil {
			t.Fatal(err)
		}
	}
	for _, i := range vols {
		c.waitState(core.SnapshotStatusKey(snapRef(i, 100+i)), core.SnapshotMirrored)
	}

	// During the outage: per volume one deletion and three new snapshots.
	type event struct {
		subject string
		vol     uint64
		snap    uint64
	}
	var events []event
	for _, i := range vols {
		events = append(events, event{"cdm.cluster.volume_snapshot.deleted", i, 100 + i})
		for k := uint64(1); k <= 3; k++ {
			snap := 200 + 10*i + k
			c.backend.AddSourceSnapshot(uuidFor(i), snapUUIDFor(snap))
			events = append(events, event{"cdm.cluster.volume_snapshot.created", i, snap})
		}
	}
	c.nats.Stop()
	down := time.Now()
	published := make(chan error, 1)
	go func() {
		for _, e := range events {
			if err := pub.publish(ctx, e.subject, snapshotMsg(e.vol, e.snap)); err != nil {
				published <- err
				return
			}
		}
		published <- nil
	}()
	time.Sleep(outage()) // the fault itself
	c.nats.Restart(t)
	back := time.Now()
	if err := <-published; err != nil {
		t.Fatal(err)
	}
	acked := time.Since(back)

	took := c.waitConverged(back, func() []string {
		var missing []string
		for _, e := range events {
			key := core.SnapshotKey(snapRef(e.vol, e.snap))
			if e.subject == "cdm.cluster.volume_snapshot.deleted" {
				if c.get(key) != "" || c.get(key+"/status") != "" {
					missing = append(missing, "snapshot "+key+" gone")
				}
				continue
			}
			if st, _ := c.status(core.SnapshotStatusKey(snapRef(e.vol, e.snap))); st.StateCode != core.SnapshotMirrored {
				missing = append(missing, fmt.Sprintf("snapshot %s mirrored (%s)", key, st.StateCode))
			}
		}
		return missing
	})
	alive(t, d1, d2)
	t.Logf("nats outage: trials 1, faults 1 (nats down %s), %d snapshot events published during it (%d publish retries, all stored %s after nats was back), lost 0, every record at its end state %s after nats was back (%s after it went down)",
		outage(), len(events), pub.retries.Load(), acked.Round(time.Millisecond), took.Round(time.Millisecond), time.Since(down).Round(time.Millisecond))
}

// A 3-member etcd cluster under two daemons pointed at all three: its
// leader killed, operations asked of the two left; then one more member
// killed (quorum lost) while snapshots are announced; then both back.
// Every operation and every snapshot reaches its end state.
func TestEtcdClusterLosesLeaderThenQuorum(t *testing.T) {
	ec := etcdtest.StartCluster(t, 3)
	b := fake.NewBackend(cephType)
	c := &cluster{t: t, nats: natstest.Start(t, true), backend: b,
		backends: fake.NewBackends(map[string]ports.StorageBackend{cephType: b}), endpoints: ec.Endpoints()}
	cli, closeCli, err := etcd.NewClient(etcd.Config{Endpoints: ec.Endpoints()}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeCli)
	c.cli = cli
	c.watchSecrets()
	c.backend.AutoSync(true)
	d1, d2 := c.start("d1"), c.start("d2")
	c.seedStorages()
	c.seedEnvironment("start")
	pausing, snapping := []uint64{1, 2, 3, 4}, []uint64{5, 6, 7, 8}
	for i := uint64(1); i <= 8; i++ {
		c.seedVolume(i, uuidFor(i), "start")
	}
	for i := uint64(1); i <= 8; i++ {
		c.waitState(core.VolumeStatusKey(volRef(i)), core.StateMirroring)
	}

	// The leader dies; once the two left elect one, the DR manager asks
	// for pauses and the cluster manager announces snapshots.
	first := ec.Leader()
	if first < 0 {
		t.Fatal("the cluster has no leader")
	}
	ec.Kill(first)
	killed := time.Now()
	c.waitFor("a new leader", 30*time.Second, func() bool { return ec.Leader() >= 0 })
	reelected := time.Since(killed)
	second := ec.Leader()
	for _, i := range pausing {
		c.putRetrying(core.VolumeOperationKey(volRef(i)), `{"operation":"pause"}`)
	}
	var snaps []core.SnapshotRef
	announce := func(snap uint64) {
		for _, i := range snapping {
			c.backend.AddSourceSnapshot(uuidFor(i), snapUUIDFor(snap+i))
			c.publish("cdm.cluster.volume_snapshot.created", snapshotMsg(i, snap+i))
			snaps = append(snaps, snapRef(i, snap+i))
		}
	}
	announce(300)

	// One more member dies: one of three left, no quorum.
	ec.Kill(second)
	announce(400)
	time.Sleep(outage()) // the fault itself
	ec.Restart(t, first)
	ec.Restart(t, second)
	back := time.Now()

	took := c.waitConverged(back, func() []string {
		var missing []string
		for _, i := range pausing {
			if st, _ := c.status(core.VolumeStatusKey(volRef(i))); st.StateCode != core.StatePaused {
				missing = append(missing, fmt.Sprintf("volume %d paused (%s)", i, st.StateCode))
			}
		}
		for _, i := range snapping {
			if st, _ := c.status(core.VolumeStatusKey(volRef(i))); st.StateCode != core.StateMirroring {
				missing = append(missing, fmt.Sprintf("volume %d mirroring (%s)", i, st.StateCode))
			}
		}
		for _, s := range snaps {
			if st, _ := c.status(core.SnapshotStatusKey(s)); st.StateCode != core.SnapshotMirrored {
				missing = append(missing, fmt.Sprintf("snapshot %s mirrored (%s)", core.SnapshotKey(s), st.StateCode))
			}
		}
		sort.Strings(missing)
		return missing
	})
	alive(t, d1, d2)
	t.Logf("etcd cluster: trials 1, faults 2 (leader killed, re-elected in %s; then a second member, quorum lost for %s), %d pauses and %d snapshot events asked meanwhile, lost 0, converged %s after quorum was back",
		reelected.Round(time.Millisecond), outage(), len(pausing), len(snaps), took.Round(time.Millisecond))
}

// putRetrying writes as the DR manager does against a cluster that just
// lost its leader: a write refused while a new one settles is retried.
func (c *cluster) putRetrying(key, value string) {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := c.cli.Put(ctx, key, value)
		cancel()
		if err == nil {
			return
		}
		if time.Now().After(deadline) || errors.Is(err, context.Canceled) {
			c.t.Fatalf("put %s: %v", key, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
