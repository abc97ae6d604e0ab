package etcd_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cdmdr/mirror/adapters/etcd"
	"github.com/cdmdr/mirror/adapters/etcd/etcdtest"
	"github.com/cdmdr/mirror/ports"
	"github.com/cdmdr/mirror/ports/porttest"
)

// harness runs each daemon as an Election on its own client.
type harness struct {
	s      *etcdtest.Server
	prefix string
}

func (h harness) NewDaemon(t *testing.T, id string) ports.Election {
	return newElection(t, h.s, id, h.prefix)
}

func (h harness) Expire(t *testing.T, e ports.Election) {
	expire(t, h.s, e.(*etcd.Election))
}

func (h harness) KV(t *testing.T) ports.KV { return etcd.NewKV(h.s.Client(t)) }

func newElection(t *testing.T, s *etcdtest.Server, id, prefix string) *etcd.Election {
	t.Helper()
	e, err := etcd.NewElection(s.Client(t), id, prefix, 0, quiet())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := e.Close(ctx); err != nil {
			t.Errorf("close election %s: %v", id, err)
		}
	})
	return e
}

// expire revokes e's lease, as etcd does when a daemon stops renewing it.
func expire(t *testing.T, s *etcdtest.Server, e *etcd.Election) {
	t.Helper()
	lease := e.Lease()
	if lease == clientv3.NoLease {
		t.Fatal("no session to expire")
	}
	if _, err := s.Client(t).Revoke(t.Context(), lease); err != nil {
		t.Fatalf("revoke lease %x: %v", lease, err)
	}
}

func TestElectionConformance(t *testing.T) {
	porttest.RunElection(t, harness{s: etcdtest.Start(t), prefix: "porttest/"})
}

func TestElectionOneLeasePerDaemon(t *testing.T) {
	s := etcdtest.Start(t)
	ctx := t.Context()
	const n = 1000
	d1 := newElection(t, s, "d1", "leader/")
	d2 := newElection(t, s, "d2", "leader/")
	kv := etcd.NewKV(s.Client(t))

	ls := make([]ports.Leadership, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	sem := make(chan struct{}, 32)
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			l, err := d1.TryCampaign(ctx, fmt.Sprintf("leader/vol-%04d", i))
			ls[i] = l
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}

	lease := d1.Lease()
	ttl, err := s.Client(t).TimeToLive(ctx, lease, clientv3.WithAttachedKeys())
	if err != nil {
		t.Fatal(err)
	}
	if len(ttl.Keys) != n {
		t.Fatalf("lease %x holds %d keys, want all %d leader keys", lease, len(ttl.Keys), n)
	}
	leases, err := s.Client(t).Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(leases.Leases) != 1 {
		t.Fatalf("%d leases granted, want 1 for %d leaderships", len(leases.Leases), n)
	}

	// The session expires: every leadership is lost at once.
	expire(t, s, d1)
	for i, l := range ls {
		select {
		case <-l.Lost():
		case <-time.After(10 * time.Second):
			t.Fatalf("leadership %d not lost after its session expired", i)
		}
	}
	if _, err := ls[7].Put(ctx, "data/x", []byte("stale")); !errors.Is(err, ports.ErrNotLeader) {
		t.Fatalf("Put after expiry = %v, want ErrNotLeader", err)
	}
	if _, err := ls[8].Delete(ctx, []string{"data/x"}, []string{"data/"}); !errors.Is(err, ports.ErrNotLeader) {
		t.Fatalf("Delete after expiry = %v, want ErrNotLeader", err)
	}
	kvs, _, err := kv.List(ctx, "leader/")
	if err != nil || len(kvs) != 0 {
		t.Fatalf("leader keys after expiry: %d, %v; want none", len(kvs), err)
	}

	// Another daemon takes over; the expired one gets a new session.
	l2, err := d2.TryCampaign(ctx, "leader/vol-0007")
	if err != nil {
		t.Fatalf("other daemon after expiry: %v", err)
	}
	if _, err := l2.Put(ctx, "data/x", []byte("new")); err != nil {
		t.Fatal(err)
	}
	if _, err := d1.TryCampaign(ctx, "leader/vol-0007"); !errors.Is(err, ports.ErrLeaderElsewhere) {
		t.Fatalf("expired daemon campaign on a taken key = %v, want ErrLeaderElsewhere", err)
	}
	l1, err := d1.TryCampaign(ctx, "leader/vol-0008")
	if err != nil {
		t.Fatalf("expired daemon campaign on a free key: %v", err)
	}
	if d1.Lease() == lease || d1.Lease() == clientv3.NoLease {
		t.Fatalf("campaign after expiry used lease %x, want a new one (old %x)", d1.Lease(), lease)
	}
	select {
	case <-l1.Lost():
		t.Fatal("leadership of the new session lost")
	default:
	}
}

func TestElectionCloseHandsOver(t *testing.T) {
	s := etcdtest.Start(t)
	ctx := t.Context()
	d1, err := etcd.NewElection(s.Client(t), "d1", "leader/", 0, quiet())
	if err != nil {
		t.Fatal(err)
	}
	d2 := newElection(t, s, "d2", "leader/")
	l, err := d1.TryCampaign(ctx, "leader/a")
	if err != nil {
		t.Fatal(err)
	}
	if err := d1.Close(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.Lost():
	default:
		t.Fatal("Close did not end the leadership")
	}
	if _, err := d2.TryCampaign(ctx, "leader/a"); err != nil {
		t.Fatalf("campaign right after the leader closed: %v", err)
	}
	if _, err := d1.TryCampaign(ctx, "leader/b"); err == nil {
		t.Fatal("campaign on a closed election succeeded")
	}
}

func TestElectionSurvivesRestart(t *testing.T) {
	s := etcdtest.Start(t)
	ctx := t.Context()
	d := newElection(t, s, "d1", "leader/")
	l, err := d.TryCampaign(ctx, "leader/a")
	if err != nil {
		t.Fatal(err)
	}
	s.Restart(t)
	// The lease outlives a short outage; the leader watch resumes.
	kv := etcd.NewKV(s.Client(t))
	deadline := time.Now().Add(10 * time.Second)
	for {
		dctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := l.Put(dctx, "data/a", []byte("v"))
		cancel()
		if err == nil {
			break
		}
		if errors.Is(err, ports.ErrNotLeader) || time.Now().After(deadline) {
			t.Fatalf("fenced put after restart: %v", err)
		}
	}
	if err := kv.Delete(ctx, "leader/a"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.Lost():
	case <-time.After(10 * time.Second):
		t.Fatal("leader key deleted after a restart, leadership not lost")
	}
}

func TestElectionSessionEndsWhenEtcdIsGone(t *testing.T) {
	s := etcdtest.Start(t)
	ctx := t.Context()
	e, err := etcd.NewElection(s.Client(t), "d1", "leader/", 2*time.Second, quiet())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close(context.Background()) })
	l, err := e.TryCampaign(ctx, "leader/a")
	if err != nil {
		t.Fatal(err)
	}
	old := e.Lease()

	// Unreachable for longer than the TTL: the keep-alive gives up and
	// every leadership ends, though nothing could tell the daemon so.
	s.Stop()
	select {
	case <-l.Lost():
	case <-time.After(10 * time.Second):
		t.Fatal("leadership kept while etcd was unreachable beyond the session TTL")
	}
	if _, err := l.Put(ctx, "data/a", []byte("v")); !errors.Is(err, ports.ErrNotLeader) {
		t.Fatalf("Put after the session ended = %v, want ErrNotLeader", err)
	}

	s.Restart(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err = e.TryCampaign(cctx, "leader/b")
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("campaign after etcd came back: %v", err)
		}
	}
	if e.Lease() == old {
		t.Fatal("campaign after the session ended reused its lease")
	}
}

func TestElectionRechecksAfterCompaction(t *testing.T) {
	s := etcdtest.Start(t)
	ctx := t.Context()
	d := newElection(t, s, "d1", "leader/")
	la, err := d.TryCampaign(ctx, "leader/a")
	if err != nil {
		t.Fatal(err)
	}
	lb, err := d.TryCampaign(ctx, "leader/b")
	if err != nil {
		t.Fatal(err)
	}

	// While the daemon is cut off, its key a is deleted and the history
	// compacted, so its watch cannot replay the deletion.
	s.Disconnect()
	admin := s.DirectClient(t)
	if _, err := admin.Delete(ctx, "leader/a"); err != nil {
		t.Fatal(err)
	}
	resp, err := admin.Put(ctx, "other", "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := admin.Compact(ctx, resp.Header.Revision); err != nil {
		t.Fatal(err)
	}
	s.Reconnect()

	select {
	case <-la.Lost():
	case <-time.After(10 * time.Second):
		t.Fatal("leader key deleted during a compacted gap, leadership not lost")
	}
	select {
	case <-lb.Lost():
		t.Fatal("leadership whose key is intact lost after the compaction")
	default:
	}
	if _, err := lb.Put(ctx, "data/b", []byte("v")); err != nil {
		t.Fatalf("fenced put under the intact key: %v", err)
	}
}

// A daemon cut off from etcd loses its leaderships before etcd expires
// its lease: once the lease is gone another daemon may lead and drive the
// resource, so the cut daemon's in-flight backend calls must have been
// cancelled by then. The leader key's deletion, seen by a client that is
// not cut off, must come well after Lost (a tenth of the TTL before etcd
// can expire it; etcd deletes an expired lease's keys within half a
// second). Three cuts: the client's own keep-alive alone ends its session
// around the expiry, so it would fail this most of the time.
func TestElectionLostBeforeLeaseExpires(t *testing.T) {
	s := etcdtest.Start(t)
	direct := s.DirectClient(t)
	e, err := etcd.NewElection(s.Client(t), "d1", "leader/", 2*time.Second, quiet())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = e.Close(ctx)
	})
	for i, key := range []string{"leader/a", "leader/b", "leader/c"} {
		ctx := t.Context()
		var l ports.Leadership
		for deadline := time.Now().Add(10 * time.Second); ; {
			cctx, cancel := context.WithTimeout(ctx, time.Second)
			l, err = e.TryCampaign(cctx, key)
			cancel()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("cut %d: campaign: %v", i+1, err)
			}
		}
		resp, err := direct.Get(ctx, key)
		if err != nil || len(resp.Kvs) == 0 {
			t.Fatalf("cut %d: leader key: %v", i+1, err)
		}
		wctx, stop := context.WithCancel(ctx)
		deleted := direct.Watch(wctx, key, clientv3.WithRev(resp.Header.Revision+1), clientv3.WithFilterPut())
		// Let a renewal or two go by, then cut.
		time.Sleep(time.Duration(700+250*i) * time.Millisecond)
		s.Disconnect()
		var lostAt, deletedAt time.Time
		select {
		case <-l.Lost():
			lostAt = time.Now()
		case <-deleted:
			t.Fatalf("cut %d: etcd deleted the leader key before the leadership was lost", i+1)
		case <-time.After(10 * time.Second):
			t.Fatalf("cut %d: leadership kept while cut off beyond the TTL", i+1)
		}
		select {
		case <-deleted:
			deletedAt = time.Now()
		case <-time.After(10 * time.Second):
			t.Fatalf("cut %d: etcd never expired the lease", i+1)
		}
		stop()
		ahead := deletedAt.Sub(lostAt)
		t.Logf("cut %d: leadership lost %s before etcd deleted the leader key", i+1, ahead.Round(time.Millisecond))
		if ahead < 100*time.Millisecond {
			t.Errorf("cut %d: leadership lost only %s before the leader key was deleted, want at least 100ms", i+1, ahead)
		}
		s.Reconnect()
	}
}
