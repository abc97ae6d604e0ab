package app_test

import (
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"

	"github.com/cdmdr/mirror/app/harness"
	"github.com/cdmdr/mirror/core"
	"github.com/cdmdr/mirror/ports"
)

// memberPrefix is where daemons announce themselves (app/membership.go).
const memberPrefix = core.DefaultLeaderPrefix + "daemons/"

// leaderKeys returns the leader keys in the store, with who holds them.
func leaderKeys(h *harness.Harness) map[string]string {
	out := map[string]string{}
	for k, v := range h.Shared.KV.Dump() {
		if strings.HasPrefix(k, core.DefaultLeaderPrefix) && !strings.HasPrefix(k, memberPrefix) {
			out[k] = v
		}
	}
	return out
}

func leaderOf(h *harness.Harness, resource string) string {
	return h.Get(core.LeaderKey(core.DefaultLeaderPrefix, resource))
}

// wantFenced replays the store's whole history and checks that every
// status (of an environment, volume or snapshot) was written by the daemon
// holding the resource's leader key at that moment: two daemons never
// drove one resource at once.
func wantFenced(t *testing.T, h *harness.Harness) {
	t.Helper()
	leaders := map[string]string{}
	for _, ev := range history(t, h, "") {
		if res, ok := strings.CutPrefix(ev.KV.Key, core.DefaultLeaderPrefix); ok {
			if ev.Type == ports.EventPut {
				leaders[res] = string(ev.KV.Value)
			} else {
				delete(leaders, res)
			}
			continue
		}
		if ev.Type != ports.EventPut {
			continue
		}
		pk, err := core.ParseKey(ev.KV.Key)
		if err != nil {
			continue
		}
		var resource string
		switch pk.Kind {
		case core.KindEnvironmentStatus:
			resource = core.EnvironmentKey(pk.Env)
		case core.KindVolumeStatus, core.KindSnapshotStatus:
			resource = core.VolumeKey(pk.Volume)
		default:
			continue
		}
		st, err := core.DecodeStatus(ev.KV.Value)
		if err != nil {
			t.Fatalf("%s at revision %d: %v", ev.KV.Key, ev.KV.ModRevision, err)
		}
		if st.Owner == "" || st.Owner != leaders[resource] {
			t.Fatalf("%s written at revision %d by %q while the leader was %q", ev.KV.Key, ev.KV.ModRevision, st.Owner, leaders[resource])
		}
	}
}

// ownersSince returns who wrote the statuses under prefix after revision rev.
func ownersSince(t *testing.T, h *harness.Harness, prefix string, rev int64) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, ev := range history(t, h, prefix) {
		if ev.KV.ModRevision <= rev || ev.Type != ports.EventPut || !strings.HasSuffix(ev.KV.Key, "/status") {
			continue
		}
		st, err := core.DecodeStatus(ev.KV.Value)
		if err != nil {
			t.Fatal(err)
		}
		out[st.Owner]++
	}
	return out
}

func TestCrashMidStopHandsTheVolumeOver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, d1 := mirroringEnv(t)
		bringUp(h, vol7, seedUUID)
		h.Start("d2")
		if got := leaderOf(h, core.VolumeKey(vol7)); got != "d1" {
			t.Fatalf("volume led by %q, want d1", got)
		}

		release := h.Shared.Backend.Block("StopVolume")
		defer release()
		setOp(h, vol7, "stop")
		h.WaitFor("d1's StopVolume to be under way", func() bool { return h.Shared.Backend.Blocked("StopVolume") == 1 })
		st := wantStatus(t, h, volStatus7, core.StateStopping, "")
		if st.Owner != "d1" {
			t.Fatalf("stopping written by %q, want d1", st.Owner)
		}

		rev := h.Shared.KV.Revision()
		d1.Crash()
		release()

		waitVolumeGone(h, vol7)
		// d2 finishes the stop; the status it took over says stopping
		// already, so it may write none before deleting the keys.
		if owners := ownersSince(t, h, core.VolumePrefix, rev); owners["d1"] != 0 {
			t.Fatalf("status writes after d1 crashed, by owner: %v; want d2's only", owners)
		}
		if owners := ownersSince(t, h, core.EnvironmentPrefix, rev); owners["d1"] != 0 {
			t.Fatalf("environment status written by d1 after it crashed: %v", owners)
		}
		wantPassedThrough(t, h, volStatus7, core.StateMirroring, core.StateStopping)
		wantNoError(t, h, volStatus7)
		if n := callsFor(h, "StopVolume", seedUUID); n != 2 {
			t.Fatalf("StopVolume called %d times, want 2 (d1's, cut short; d2's)", n)
		}
		wantReplication(t, h, seedUUID, ports.ReplicationAbsent, true)
		h.WaitFor("d2 to lead the environment", func() bool { return leaderOf(h, envKey) == "d2" })
		wantFenced(t, h)
	})
}

// A session that expires while a write is on its way: the write is
// refused, and whoever leads next finishes the operation.
func TestSessionExpiresDuringAWrite(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, d1 := mirroringEnv(t)
		bringUp(h, vol7, seedUUID)
		h.Start("d2")

		var once sync.Once
		expired := make(chan int64, 1)
		d1.Election.BeforeFencedWrite(func() {
			once.Do(func() {
				rev := h.Shared.KV.Revision()
				d1.Election.Expire()
				expired <- rev
			})
		})
		setOp(h, vol7, "pause")
		rev := <-expired
		// The pause reached the backend before d1's status write was refused.
		st := h.TickState(volStatus7, core.StatePaused, fastPoll)
		if h.Shared.Backend.Calls("PauseVolume") < 1 {
			t.Fatal("PauseVolume never called")
		}
		// Every paused was written after the session expired (the first
		// attempt is what expired it), so under a lead won after that: d1 may
		// win again, but its write under the expired lead must not land.
		leader := core.LeaderKey(core.DefaultLeaderPrefix, core.VolumeKey(vol7))
		var leadRev int64
		for _, ev := range history(t, h, "") {
			if ev.KV.Key == leader && ev.Type == ports.EventPut {
				leadRev = ev.KV.ModRevision
			}
			if ev.KV.Key != volStatus7 || ev.Type != ports.EventPut {
				continue
			}
			if s, _ := core.DecodeStatus(ev.KV.Value); s.StateCode == core.StatePaused && leadRev <= rev {
				t.Fatalf("paused written under the lead won at revision %d, which expired after revision %d: %+v", leadRev, rev, s)
			}
		}
		if st.Owner != leaderOf(h, core.VolumeKey(vol7)) {
			t.Fatalf("paused written by %q, leader is %q", st.Owner, leaderOf(h, core.VolumeKey(vol7)))
		}
		wantReplication(t, h, seedUUID, ports.ReplicationPaused, true)
		wantFenced(t, h)
	})
}

func TestVolumesSpreadAndMoveWhenADaemonCrashes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := harness.New(t)
		seedStorages(h)
		seedEnvironment(h, "start")
		daemons := map[string]*harness.Daemon{}
		for _, id := range []string{"d1", "d2", "d3"} {
			daemons[id] = h.Start(id)
		}
		h.TickState(envStatus, core.StateMirroring, fastPoll)
		vols := map[core.VolumeRef]string{vol7: seedUUID, vol8: uuid8, vol9: uuid9}
		for ref, uuid := range vols {
			h.Shared.Backend.Sync(uuid)
			seedVolume(h, ref, uuid, "start")
		}
		for ref := range vols {
			h.TickState(core.VolumeStatusKey(ref), core.StateMirroring, fastPoll)
		}
		check := func(dead string) {
			t.Helper()
			h.WaitTicking("every volume led by a live daemon and written by its leader", poll, func() bool {
				keys := leaderKeys(h)
				if len(keys) != 4 { // the environment and three volumes
					return false
				}
				for _, holder := range keys {
					if holder == dead || daemons[holder] == nil {
						return false
					}
				}
				for ref := range vols {
					st, ok := h.Status(core.VolumeStatusKey(ref))
					// A taken over mirroring status is not written again:
					// its owner stays the daemon that wrote it.
					if !ok || st.StateCode != core.StateMirroring {
						return false
					}
				}
				return true
			})
		}
		check("")
		victim := leaderOf(h, core.VolumeKey(vol7))
		var victimVolumes []string
		for ref := range vols {
			if leaderOf(h, core.VolumeKey(ref)) == victim {
				victimVolumes = append(victimVolumes, core.VolumeKey(ref))
			}
		}
		daemons[victim].Crash()
		delete(daemons, victim)
		check(victim)
		for _, v := range victimVolumes {
			if l := leaderOf(h, v); l == victim || l == "" {
				t.Fatalf("%s still led by %q", v, l)
			}
		}
		for ref := range vols {
			wantNoError(t, h, core.VolumeStatusKey(ref))
		}
		if n := h.Shared.Backend.Calls("StartVolume"); n != 3 {
			t.Fatalf("StartVolume called %d times, want 3: taking over a mirroring volume starts nothing", n)
		}
		wantFenced(t, h)
	})
}

func TestGracefulStopResigns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, d1 := mirroringEnv(t)
		bringUp(h, vol7, seedUUID)
		bringUp(h, vol8, uuid8)
		d2 := h.Start("d2")
		if n := len(leaderKeys(h)); n != 3 {
			t.Fatalf("leader keys = %v, want 3", leaderKeys(h))
		}
		if err := d1.Stop(); err != nil {
			t.Fatal(err)
		}
		// d2 takes over at once: the resigned keys are deleted, not expired.
		h.WaitFor("d2 to lead everything", func() bool {
			keys := leaderKeys(h)
			if len(keys) != 3 {
				return false
			}
			for _, v := range keys {
				if v != "d2" {
					return false
				}
			}
			return true
		})
		if err := d2.Stop(); err != nil {
			t.Fatal(err)
		}
		if keys := leaderKeys(h); len(keys) != 0 {
			t.Fatalf("leader keys left after every daemon stopped: %v", keys)
		}
		for k := range h.Shared.KV.Dump() {
			if strings.HasPrefix(k, core.DefaultLeaderPrefix) {
				t.Fatalf("leader key %s left", k)
			}
		}
		// Stopping resigned; it did not stop replicating.
		for _, uuid := range []string{seedUUID, uuid8} {
			wantReplication(t, h, uuid, ports.ReplicationReplaying, true)
		}
		if log := h.Shared.Backend.CallLog(); slices.ContainsFunc(log, func(c string) bool {
			return strings.HasPrefix(c, "StopVolume") || strings.HasPrefix(c, "TeardownEnvironment")
		}) {
			t.Fatalf("stopping a daemon stopped replication: %v", log)
		}
		wantFenced(t, h)
	})
}

// TestTakeoverReadsWhatTheWatchMissed: a new leader goes on from the
// previous leader's last write even when its own watch missed that write
// (the cache lags): d2 never saw d1's "deleting", yet does not ask the
// backend to delete the target a second time.
func TestTakeoverReadsWhatTheWatchMissed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, d1 := mirroringEnv(t)
		bringUp(h, vol7, seedUUID)
		h.Start("d2")
		if got := leaderOf(h, core.VolumeKey(vol7)); got != "d1" {
			t.Fatalf("volume led by %q, want d1", got)
		}
		release := h.Shared.Backend.Block("DeleteTarget")
		defer release()
		setOp(h, vol7, "stop_and_delete")
		h.WaitFor("d1's DeleteTarget under way", func() bool { return h.Shared.Backend.Blocked("DeleteTarget") == 1 })
		h.WaitIdle()
		h.Shared.KV.DropNextEvents(volStatus7, 1) // nobody's watch sees "deleting"
		release()
		h.WaitFor("deleting written by d1", func() bool {
			st, ok := h.Status(volStatus7)
			return ok && st.StateCode == core.StateDeleting
		})
		h.WaitIdle()
		d1.Crash()
		waitVolumeGone(h, vol7)
		if n := callsFor(h, "DeleteTarget", seedUUID); n != 1 {
			t.Fatalf("DeleteTarget called %d times, want 1: d2 went on from the stale stopping, not from d1's deleting", n)
		}
	})
}
