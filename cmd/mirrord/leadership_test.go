package main

import (
	"strings"
	"testing"
	"time"

	"github.com/cdmdr/mirror/core"
)

// viaProxy points a daemon's etcd client at a proxy, so the test can cut
// it off from etcd.
func viaProxy(p *proxy) func(*Config) {
	return func(c *Config) { c.Etcd.Endpoints = []string{"http://" + p.addr()} }
}

func etcdHostPort(c *cluster) string {
	return strings.TrimPrefix(c.etcd.Endpoints()[0], "http://")
}

// Three daemons share 30 volumes: every volume has exactly one leader,
// the leader is the one that writes its status, and when a daemon is cut
// off its volumes move to the survivors within the session TTL.
func TestVolumesMoveToSurvivors(t *testing.T) {
	c := newCluster(t)
	c.backend.AutoSync(true)
	p := startProxy(t, etcdHostPort(c))
	d1 := c.start("d1", viaProxy(p))
	c.start("d2")
	c.start("d3")
	c.seedStorages()
	c.seedEnvironment("start")
	const n = 30
	for i := uint64(1); i <= n; i++ {
		c.seedVolume(i, uuidFor(i), "start")
	}
	statusOf := func(i uint64) string { return core.VolumeStatusKey(core.VolumeRef{Env: seedEnv, VolumeID: i}) }
	leaderOf := func(i uint64) string {
		return "mirror_leader/" + core.VolumeKey(core.VolumeRef{Env: seedEnv, VolumeID: i})
	}
	for i := uint64(1); i <= n; i++ {
		c.waitState(statusOf(i), core.StateMirroring)
	}
	c.waitFor("every status written by its leader", 10*time.Second, func() bool {
		for i := uint64(1); i <= n; i++ {
			st, _ := c.status(statusOf(i))
			if st.Owner == "" || st.Owner != c.get(leaderOf(i)) {
				return false
			}
		}
		return true
	})
	var fromD1 []uint64
	for i := uint64(1); i <= n; i++ {
		if c.get(leaderOf(i)) == "d1" {
			fromD1 = append(fromD1, i)
		}
	}
	if len(fromD1) == 0 {
		t.Fatal("d1 leads no volume; the test would prove nothing")
	}
	t.Logf("d1 leads %d of %d volumes", len(fromD1), n)

	// Partition d1 from etcd: its lease is no longer kept alive.
	cut := time.Now()
	p.pause()
	c.waitFor("d1's volumes led by survivors", 10*time.Second, func() bool {
		for _, i := range fromD1 {
			// A survivor taking a mirroring volume over leaves its status
			// (and owner) alone: only the leader key moves.
			if l := c.get(leaderOf(i)); l != "d2" && l != "d3" {
				return false
			}
		}
		return true
	})
	took := time.Since(cut)
	t.Logf("takeover of %d volumes took %s (session TTL 2s)", len(fromD1), took)
	if took > 2*time.Second+3*time.Second {
		t.Errorf("takeover took %s, want within the TTL plus a poll", took)
	}
	for i := uint64(1); i <= n; i++ {
		if st, _ := c.status(statusOf(i)); st.StateCode != core.StateMirroring {
			t.Errorf("volume %d is %s after the takeover", i, st.StateCode)
		}
	}
	p.unpause()
	d1.stop()
}

// A daemon whose session expired in the middle of an operation makes no
// further write. Forced interleaving: d1 is inside PauseVolume and cut off
// from etcd; its lease is revoked (its session expires server-side while
// d1, partitioned, cannot know) and d2 takes the volume; then d1's call
// returns and d1 writes "paused" into the partition; the partition heals
// and the write reaches etcd after d2 leads — the fence refuses it.
func TestExpiredLeaderWritesNothing(t *testing.T) {
	c := newCluster(t)
	c.backend.AutoSync(true)
	p := startProxy(t, etcdHostPort(c))
	// A long TTL: d1 must not notice the expiry on its own before its
	// write is on the wire.
	d1 := c.start("d1", viaProxy(p), func(cfg *Config) { cfg.Etcd.SessionTTL = 30 * time.Second })
	c.seedStorages()
	c.seedEnvironment("start")
	c.seedVolume(7, seedUUID, "start")
	status := core.VolumeStatusKey(seedVol7)
	leaderKey := "mirror_leader/" + core.VolumeKey(seedVol7)
	c.waitState(status, core.StateMirroring)

	release := c.backend.Block("PauseVolume")
	c.setOp(seedVol7, "pause")
	c.waitFor("d1 inside PauseVolume", 10*time.Second, func() bool { return c.backend.Blocked("PauseVolume") == 1 })

	p.pause()
	cutRev := c.revision()
	c.revokeLeaseOf(leaderKey) // d1's session expires; d1 cannot hear of it
	d2 := c.start("d2")
	c.waitFor("d2 leads volume 7", 10*time.Second, func() bool { return c.get(leaderKey) == "d2" })
	c.waitFor("d2 inside PauseVolume", 10*time.Second, func() bool { return c.backend.Blocked("PauseVolume") == 2 })
	release()
	c.waitFor("d1 back from PauseVolume", 10*time.Second, func() bool {
		return strings.Contains(d1.logs.String(), "action=pause")
	})
	p.unpause() // d1's write, held by the partition, reaches etcd now
	c.waitFor("d1 told it lost the lead", 10*time.Second, func() bool {
		return strings.Contains(d1.logs.String(), "leadership lost; worker stopped")
	})
	st := c.waitState(status, core.StatePaused)
	if st.Owner != "d2" {
		t.Fatalf("paused by %q, want d2", st.Owner)
	}
	for _, w := range c.statusWritesSince(status, cutRev) {
		if w.Owner == "d1" {
			t.Fatalf("d1 wrote %+v after its session expired", w)
		}
	}
	// d1 did try: its write failed, refused by the fence (or abandoned
	// when d1 heard of the loss while the refusal was on its way).
	if logs := d1.logs.String(); !strings.Contains(logs, "err=\"write status:") {
		t.Fatalf("d1 never attempted its status write; logs:\n%s", logs)
	}
	d1.stop()
	d2.stop()
}

// statusWritesSince returns every value written to key after rev, from
// etcd's history.
func (c *cluster) statusWritesSince(key string, rev int64) []core.Status {
	c.t.Helper()
	var out []core.Status
	for _, v := range c.history(key, rev) {
		st, err := core.DecodeStatus([]byte(v))
		if err != nil {
			c.t.Fatalf("%s: %v", key, err)
		}
		out = append(out, st)
	}
	return out
}
