package app_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cdmdr/mirror/adapters/fake"
	"github.com/cdmdr/mirror/app"
	"github.com/cdmdr/mirror/app/harness"
	"github.com/cdmdr/mirror/core"
	"github.com/cdmdr/mirror/ports"
)

// Placement settings of the harness's config (app.Config defaults from
// its FastPollInterval).
const (
	grace  = 2 * fastPoll
	settle = 5 * fastPoll
)

// manyVolumes seeds n volumes (ids 100…) of the seed's environment,
// started, and returns them.
func manyVolumes(h *harness.Harness, n int) []core.VolumeRef {
	var refs []core.VolumeRef
	for i := range n {
		ref := core.VolumeRef{Env: envID, VolumeID: uint64(100 + i)}
		seedVolume(h, ref, uuidOf(ref), "start")
		refs = append(refs, ref)
	}
	return refs
}

func uuidOf(ref core.VolumeRef) string {
	return fmt.Sprintf("00000000-0000-4000-8000-%012d", ref.VolumeID)
}

// waitMembers waits until every running daemon is announced.
func waitMembers(h *harness.Harness, ids ...string) {
	h.T.Helper()
	h.WaitFor("daemons "+strings.Join(ids, ",")+" announced", func() bool {
		for _, id := range ids {
			if h.Get(memberPrefix+id) != id {
				return false
			}
		}
		return true
	})
	h.WaitIdle() // and seen by every daemon
}

func allMirroring(h *harness.Harness, refs []core.VolumeRef) func() bool {
	return func() bool {
		for _, ref := range refs {
			if st, ok := h.Status(core.VolumeStatusKey(ref)); !ok || st.StateCode != core.StateMirroring {
				return false
			}
		}
		return true
	}
}

// statusWritesSince counts the status writes under mirror_volume/ after
// rev, by key.
func statusWritesSince(t *testing.T, h *harness.Harness, rev int64) map[string]int {
	t.Helper()
	out := map[string]int{}
	for _, ev := range history(t, h, core.VolumePrefix) {
		if ev.KV.ModRevision > rev && ev.Type == ports.EventPut && strings.HasSuffix(ev.KV.Key, "/status") {
			out[ev.KV.Key]++
		}
	}
	return out
}

// Daemons that see each other lead what rendezvous hashing prefers: the
// preferred daemon campaigns at once, the others only after the grace,
// which the test never lets pass.
func TestLeadershipFollowsPreference(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := harness.New(t)
		h.Shared.Backend.AutoSync(true)
		ids := []string{"d1", "d2", "d3"}
		for _, id := range ids {
			h.Start(id)
		}
		waitMembers(h, ids...)
		seedStorages(h)
		seedEnvironment(h, "start")
		refs := manyVolumes(h, 30)
		h.WaitTicking("every volume mirroring", fastPoll, allMirroring(h, refs))
		count := map[string]int{}
		for _, ref := range refs {
			key := core.VolumeKey(ref)
			want := app.PreferredDaemon(ids, key)
			if got := leaderOf(h, key); got != want {
				t.Errorf("%s led by %q, preferred %q", key, got, want)
			}
			count[leaderOf(h, key)]++
		}
		if got, want := leaderOf(h, envKey), app.PreferredDaemon(ids, envKey); got != want {
			t.Errorf("environment led by %q, preferred %q", got, want)
		}
		t.Logf("volumes per daemon: %v", count)
		wantFenced(t, h)
	})
}

// A member that is announced but never campaigns (slow, or seeing
// another member set) leaves its resources unled only for the grace.
func TestGraceForAnAbsentPreferredDaemon(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := harness.New(t)
		h.Shared.Backend.AutoSync(true)
		h.Put(memberPrefix+"ghost", "ghost") // announced, never campaigns
		h.Start("d1")
		waitMembers(h, "d1")
		seedStorages(h)
		seedEnvironment(h, "start")
		refs := manyVolumes(h, 12)
		var ghosts []string
		for _, ref := range refs {
			if key := core.VolumeKey(ref); app.PreferredDaemon([]string{"d1", "ghost"}, key) == "ghost" {
				ghosts = append(ghosts, key)
			}
		}
		if len(ghosts) == 0 || len(ghosts) == len(refs) {
			t.Fatalf("ghost preferred for %d of %d volumes: the test would prove nothing", len(ghosts), len(refs))
		}
		h.WaitIdle()
		for _, key := range ghosts {
			if l := leaderOf(h, key); l != "" {
				t.Fatalf("%s led by %q before the grace passed", key, l)
			}
		}
		h.Tick(grace)
		h.WaitTicking("every volume mirroring", fastPoll, allMirroring(h, refs))
		for _, ref := range refs {
			if l := leaderOf(h, core.VolumeKey(ref)); l != "d1" {
				t.Fatalf("%s led by %q, want d1", core.VolumeKey(ref), l)
			}
		}
	})
}

// A daemon joining draws the settled resources it is preferred for once
// membership is stable; a volume in the middle of an operation stays
// with its leader until it is settled; nothing is written on a hand-over
// and nothing is started twice.
func TestJoinHandsOverSettledResourcesOnly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _ := mirroringEnv(t)
		h.Shared.Backend.AutoSync(true)
		refs := manyVolumes(h, 16)
		h.WaitTicking("every volume mirroring", fastPoll, allMirroring(h, refs))
		both := []string{"d1", "d2"}
		var toD2 []core.VolumeRef
		for _, ref := range refs {
			if app.PreferredDaemon(both, core.VolumeKey(ref)) == "d2" {
				toD2 = append(toD2, ref)
			}
		}
		if len(toD2) < 2 {
			t.Fatalf("d2 preferred for %d volumes: the test would prove nothing", len(toD2))
		}
		busy := toD2[0] // under way when d2 joins
		release := h.Shared.Backend.Block("PauseVolume")
		defer release()
		setOp(h, busy, "pause")
		h.WaitFor("d1 inside PauseVolume", func() bool { return h.Shared.Backend.Blocked("PauseVolume") == 1 })

		rev := h.Shared.KV.Revision()
		h.Start("d2")
		waitMembers(h, "d1", "d2")
		for _, ref := range refs {
			if l := leaderOf(h, core.VolumeKey(ref)); l != "d1" {
				t.Fatalf("%s led by %q before membership settled", core.VolumeKey(ref), l)
			}
		}
		h.WaitTicking("d2 leads the settled volumes it is preferred for", fastPoll, func() bool {
			for _, ref := range toD2[1:] {
				if leaderOf(h, core.VolumeKey(ref)) != "d2" {
					return false
				}
			}
			return true
		})
		if l := leaderOf(h, core.VolumeKey(busy)); l != "d1" {
			t.Fatalf("volume under way led by %q, want d1 until it is settled", l)
		}
		for _, ref := range refs {
			if want := app.PreferredDaemon(both, core.VolumeKey(ref)); ref != busy && leaderOf(h, core.VolumeKey(ref)) != want {
				t.Fatalf("%s led by %q, preferred %q", core.VolumeKey(ref), leaderOf(h, core.VolumeKey(ref)), want)
			}
		}
		if writes := statusWritesSince(t, h, rev); len(writes) != 0 {
			t.Fatalf("status writes since d2 joined: %v; want none", writes)
		}

		release()
		h.TickState(core.VolumeStatusKey(busy), core.StatePaused, fastPoll)
		h.WaitTicking("the paused volume handed over once settled", fastPoll, func() bool {
			return leaderOf(h, core.VolumeKey(busy)) == "d2"
		})
		if n := h.Shared.Backend.Calls("StartVolume"); n != len(refs) {
			t.Fatalf("StartVolume called %d times, want %d: a hand-over starts nothing", n, len(refs))
		}
		if n := h.Shared.Backend.Calls("PauseVolume"); n != 1 {
			t.Fatalf("PauseVolume called %d times, want 1", n)
		}
		wantFenced(t, h)
	})
}

// followBackend is the scripted backend declaring that its volumes
// follow their environment's leader.
type followBackend struct{ *fake.Backend }

func (b followBackend) Info(ctx context.Context) (ports.Info, error) {
	info, err := b.Backend.Info(ctx)
	info.Capabilities.VolumesFollowEnvironment = true
	return info, err
}

// withFollowingVolumes makes the harness's backend declare
// VolumesFollowEnvironment (before any daemon starts).
func withFollowingVolumes(h *harness.Harness) {
	h.Shared.Backends = fake.NewBackends(map[string]ports.StorageBackend{harness.CephType: followBackend{h.Shared.Backend}})
}

// With VolumesFollowEnvironment, every volume is led by the daemon
// leading its environment, whatever the preference of the volume: the
// environment moves to a daemon joining only once its volumes are
// settled, they follow it, the old leader releases the environment, and
// nothing is written but the pause that was under way.
func TestVolumesFollowTheirEnvironment(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := harness.New(t)
		withFollowingVolumes(h)
		h.Shared.Backend.AutoSync(true)
		// Name the daemons so that the environment prefers the one joining.
		first, second := "d1", "d2"
		if app.PreferredDaemon([]string{first, second}, envKey) == first {
			first, second = second, first
		}
		h.Start(first)
		seedStorages(h)
		seedEnvironment(h, "start")
		h.TickState(core.EnvironmentStatusKey(envID), core.StateMirroring, fastPoll)
		refs := manyVolumes(h, 8)
		h.WaitTicking("every volume mirroring", fastPoll, allMirroring(h, refs))
		busy := refs[0]
		release := h.Shared.Backend.Block("PauseVolume")
		defer release()
		setOp(h, busy, "pause")
		h.WaitFor("the pause under way", func() bool { return h.Shared.Backend.Blocked("PauseVolume") == 1 })

		rev := h.Shared.KV.Revision()
		h.Start(second)
		waitMembers(h, first, second)
		h.WaitIdle()
		releasedAtStart := callsFor(h, "ReleaseEnvironment", envID.String()) // second's, before it led anything
		// Volumes the joining daemon is preferred for stay with the
		// environment's leader, and the environment stays while one of its
		// volumes is under way.
		for range 2 * settle / fastPoll {
			h.Tick(fastPoll)
			h.WaitIdle()
		}
		if l := leaderOf(h, envKey); l != first {
			t.Fatalf("environment led by %q while a volume of it was under way on %s", l, first)
		}
		for _, ref := range refs {
			if l := leaderOf(h, core.VolumeKey(ref)); l != first {
				t.Fatalf("%s led by %q while %s leads the environment", core.VolumeKey(ref), l, first)
			}
		}
		release()
		h.TickState(core.VolumeStatusKey(busy), core.StatePaused, fastPoll)
		h.WaitTicking("the environment and its volumes led by "+second, fastPoll, func() bool {
			if leaderOf(h, envKey) != second {
				return false
			}
			for _, ref := range refs {
				if leaderOf(h, core.VolumeKey(ref)) != second {
					return false
				}
			}
			return true
		})
		if n := callsFor(h, "ReleaseEnvironment", envID.String()) - releasedAtStart; n != 1 {
			t.Fatalf("ReleaseEnvironment called %d times, want 1 (by %s, which led it)", n, first)
		}
		// The paused volume's status is written by the pause, and may be
		// again at its next look (a paused report carries no lag); the
		// others are not written at all.
		writes := statusWritesSince(t, h, rev)
		if n := writes[core.VolumeStatusKey(busy)]; n < 1 || n > 2 {
			t.Fatalf("the paused volume's status written %d times", n)
		}
		delete(writes, core.VolumeStatusKey(busy))
		if len(writes) != 0 {
			t.Fatalf("status writes during the move: %v", writes)
		}
		wantStates(t, h, core.VolumeStatusKey(busy), core.StateMirroring, core.StatePaused)
		if n := h.Shared.Backend.Calls("StartVolume"); n != len(refs) {
			t.Fatalf("StartVolume called %d times, want %d", n, len(refs))
		}
		wantFenced(t, h)
	})
}

// releaseProbe is the scripted backend calling onRelease at the start of
// each ReleaseEnvironment.
type releaseProbe struct {
	*fake.Backend
	onRelease func()
}

func (b releaseProbe) ReleaseEnvironment(ctx context.Context, env ports.Environment) error {
	b.onRelease()
	return b.Backend.ReleaseEnvironment(ctx, env)
}

// A daemon that stops leading an environment releases it: on a graceful
// stop (while still leading it, so the next leader's host-bound work
// never overlaps), and when its session ends.
func TestEnvironmentReleasedWhenNoLongerLed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := harness.New(t)
		var leaderAtRelease []string
		h.Shared.Backends = fake.NewBackends(map[string]ports.StorageBackend{harness.CephType: releaseProbe{h.Shared.Backend, func() {
			leaderAtRelease = append(leaderAtRelease, leaderOf(h, envKey))
		}}})
		seedStorages(h)
		seedEnvironment(h, "start")
		d1 := h.Start("d1")
		h.TickState(core.EnvironmentStatusKey(envID), core.StateMirroring, fastPoll)
		if n := callsFor(h, "ReleaseEnvironment", envID.String()); n != 0 {
			t.Fatalf("ReleaseEnvironment called %d times while leading", n)
		}
		// The session ends for good (the engine runs on, cut off): every
		// lead is lost.
		d1.Election.Kill()
		h.WaitFor("the environment released after the session ended", func() bool {
			return callsFor(h, "ReleaseEnvironment", envID.String()) == 1
		})
		if err := d1.Stop(); err != nil {
			t.Fatal(err)
		}
		if n := callsFor(h, "ReleaseEnvironment", envID.String()); n != 1 {
			t.Fatalf("ReleaseEnvironment called %d times, want 1", n)
		}

		d2 := h.Start("d2")
		h.TickState(core.EnvironmentStatusKey(envID), core.StateMirroring, fastPoll)
		h.WaitFor("d2 leads the environment", func() bool { return leaderOf(h, envKey) == "d2" })
		if err := d2.Stop(); err != nil {
			t.Fatal(err)
		}
		if n := callsFor(h, "ReleaseEnvironment", envID.String()); n != 2 {
			t.Fatalf("ReleaseEnvironment called %d times, want 2 (lost session, graceful stop)", n)
		}
		if want := []string{"", "d2"}; !slices.Equal(leaderAtRelease, want) {
			t.Fatalf("leader of the environment at each release: %q, want %q", leaderAtRelease, want)
		}
	})
}

// A hand-over waits for a bulk status call that includes the volume:
// the daemon giving it up has nothing on its way about it when the next
// leader starts.
func TestHandOverWaitsForTheBulkPoll(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, _ := mirroringEnv(t)
		h.Shared.Backend.AutoSync(true)
		refs := manyVolumes(h, 6)
		h.WaitTicking("every volume mirroring", fastPoll, allMirroring(h, refs))
		var toD2 []core.VolumeRef
		for _, ref := range refs {
			if app.PreferredDaemon([]string{"d1", "d2"}, core.VolumeKey(ref)) == "d2" {
				toD2 = append(toD2, ref)
			}
		}
		if len(toD2) == 0 {
			t.Fatal("d2 preferred for no volume: the test would prove nothing")
		}
		release := h.Shared.Backend.Block("VolumeStatuses")
		defer release()
		h.WaitTicking("d1's bulk poll under way", time.Second, func() bool { return h.Shared.Backend.Blocked("VolumeStatuses") == 1 })
		h.Start("d2")
		waitMembers(h, "d1", "d2")
		h.Tick(settle)
		h.WaitIdle()
		h.Tick(fastPoll)
		h.WaitIdle()
		for _, ref := range toD2 {
			if l := leaderOf(h, core.VolumeKey(ref)); l != "d1" {
				t.Fatalf("%s handed over to %q while d1's bulk status call about it was on its way", core.VolumeKey(ref), l)
			}
		}
		release()
		h.WaitTicking("d2 leads its share", fastPoll, func() bool {
			for _, ref := range toD2 {
				if leaderOf(h, core.VolumeKey(ref)) != "d2" {
					return false
				}
			}
			return true
		})
		wantFenced(t, h)
	})
}

// A plugin that hangs in ReleaseEnvironment does not hang the stop.
func TestStopDoesNotWaitForAHungRelease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, d1 := mirroringEnv(t)
		release := h.Shared.Backend.Block("ReleaseEnvironment")
		defer release()
		start := time.Now()
		if err := d1.Stop(); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took > time.Minute {
			t.Fatalf("stop took %s with a hung release", took)
		}
		if log := h.Shared.Backend.CallLog(); !slices.Contains(log, "ReleaseEnvironment "+envID.String()) {
			t.Fatalf("no release tried: %v", log)
		}
	})
}

// A daemon starting releases every environment of a backend whose
// volumes follow their environment before it leads anything: what a
// killed earlier run of it left on this host (Ceph: an orphaned
// rbd-mirror) stops before the environment's leader, here or elsewhere,
// prepares it.
func TestStartReleasesWhatAnEarlierRunLeft(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := harness.New(t)
		withFollowingVolumes(h)
		seedStorages(h)
		seedEnvironment(h, "start")
		h.Start("d1")
		h.TickState(core.EnvironmentStatusKey(envID), core.StateMirroring, fastPoll)
		var order []string
		for _, c := range h.Shared.Backend.CallLog() {
			if strings.HasPrefix(c, "ReleaseEnvironment") || strings.HasPrefix(c, "PrepareEnvironment") {
				order = append(order, c)
			}
		}
		if len(order) < 2 || !strings.HasPrefix(order[0], "ReleaseEnvironment") || !strings.HasPrefix(order[1], "PrepareEnvironment") {
			t.Fatalf("calls = %v, want ReleaseEnvironment before the first PrepareEnvironment", order)
		}
	})
}
