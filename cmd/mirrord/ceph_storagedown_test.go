package main

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cdmdr/mirror/app"
	"github.com/cdmdr/mirror/core"
)

// longFaults reports whether the long form of the fault suite runs
// (make faults, MIRROR_FAULTS=long); make test runs the short form.
func longFaults() bool { return os.Getenv("MIRROR_FAULTS") == "long" }

// cephOutage is how long TestCephStorageDown keeps a site frozen:
// MIRROR_CEPH_OUTAGE (a Go duration), else 60 s in the long form and 20 s
// in the short one.
func cephOutage(t *testing.T) time.Duration {
	t.Helper()
	s := os.Getenv("MIRROR_CEPH_OUTAGE")
	if s == "" {
		if longFaults() {
			return 60 * time.Second
		}
		return 20 * time.Second
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		t.Fatalf("MIRROR_CEPH_OUTAGE=%q: want a positive Go duration (%v)", s, err)
	}
	return d
}

// TestCephStorageDown is issue 15's "storage down" on the real clusters,
// through a real mirrord process with the Ceph plugin: four volumes
// mirror from site A to site B; one site's cluster is frozen (its mon and
// OSD stopped with SIGSTOP: unreachable, as a cluster whose mon is down)
// for cephOutage (60 s; 20 s in make test's short form); right after the freeze one volume is
// left mirroring, one is paused, one stopped, one destroyed. The destroy
// must end within mirrord's destroy deadline, cluster down or not. Once
// the site is back, each operation ends correctly, or in `error` with a
// reason that a retry clears; the storage is checked with the rbd CLI
// (mirror image status, primary or not, images present or gone, data),
// and the mirroring volume replicates new writes again.
//
// Source frozen first (the harder case: stop and destroy cannot read the
// source), then the target.
func TestCephStorageDown(t *testing.T) {
	l := needCephLab(t)
	outage := cephOutage(t)
	for _, site := range []string{"a", "b"} {
		name := map[string]string{"a": "source (site A) frozen", "b": "target (site B) frozen"}[site]
		t.Run(name, func(t *testing.T) { runCephStorageDown(t, l, site, false, outage) })
	}
	if longFaults() {
		t.Run("source (site A) mon alone frozen", func(t *testing.T) { runCephStorageDown(t, l, "a", true, outage) })
	}
}

// keepAloneBound is how long after the source's freeze the stop and the
// destroy must have ended, while it is still down (checked when the
// outage lasts that long): mirrord takes the stop once its observe gives
// up on the source (librados' 30 s OSD timeout), the plugin gives the
// source 10 s more (reachTimeout), then keeps the copy on the target
// alone, waiting at most 10 s for an rbd-mirror stuck on the frozen
// source before it fences it (measured: stop 41 s, destroy 26 s).
const keepAloneBound = 55 * time.Second

// runCephStorageDown freezes site's mon and OSD, or its mon alone.
func runCephStorageDown(t *testing.T, l cephLab, site string, monOnly bool, outage time.Duration) {
	began := time.Now()
	r := startCephEnvironment(t, l, lostSitePool) // freezeSite's thaw checks this pool
	c := r.c
	run := uint64(time.Now().UnixNano() % 1e9)
	names := []string{"mirror", "pause", "stop", "destroy"}
	vols := map[string]hostVolume{}
	for i, n := range names {
		v := hostVolume{ref: core.VolumeRef{Env: seedEnv, VolumeID: uint64(20 + i)}, pool: lostSitePool, source: "A", target: "B", uuid: uuidFor(run*10 + uint64(i))}
		vols[n] = v
		if out, err := l.rbd(t, "A", "create", v.image(), "--size", "16M"); err != nil {
			t.Fatalf("create source image: %v %s", err, out)
		}
		c.put(core.VolumeKey(v.ref), fmt.Sprintf(`{"source_cluster_storage":{"cluster_id":5,"storage_id":11},"target_cluster_storage":{"cluster_id":6,"storage_id":13},"source_volume":{"cluster_id":5,"volume_id":%d,"volume_uuid":"%s"}}`, v.ref.VolumeID, v.uuid))
		c.setOp(v.ref, "start")
	}
	for _, n := range names {
		v := vols[n]
		c.waitStateWithin(core.VolumeStatusKey(v.ref), core.StateMirroring, 120*time.Second)
		l.write(t, v)
		l.waitSameData(t, v, 60*time.Second)
	}
	held := l.sum(t, "B", vols["pause"].image())
	stopSum := l.sum(t, "B", vols["stop"].image())
	t.Logf("site %s: 4 volumes mirroring after %s", strings.ToUpper(site), time.Since(began).Round(time.Second))

	// The outage, and the operations written right after it began.
	freeze := l.freezeSite
	if monOnly {
		freeze = l.freezeMon
	}
	thaw := freeze(t, site)
	frozen := time.Now()
	c.setOp(vols["pause"].ref, "pause")
	c.setOp(vols["stop"].ref, "stop")
	c.setOp(vols["destroy"].ref, "destroy")
	destroyWritten := time.Now()
	deadline := app.DefaultDestroyTimeout
	seen := map[string][]string{} // the statuses each volume went through
	note := func(n string) {
		key := core.VolumeStatusKey(vols[n].ref)
		s := "keys gone"
		if st, ok := c.status(key); ok {
			s = string(st.StateCode) + " under " + string(st.Operation)
			if st.ErrorReason != nil {
				s += " (" + st.ErrorReason.Code + ": " + st.ErrorReason.Contents + ")"
			}
		} else if c.get(core.VolumeKey(vols[n].ref)) != "" {
			s = "no status"
		}
		if h := seen[n]; len(h) == 0 || h[len(h)-1] != s {
			seen[n] = append(h, s)
		}
	}
	var destroyTook time.Duration
	// endedAt: when each volume was first seen at the end of its
	// operation, counted from the freeze (the operations were written
	// then).
	endedAt := map[string]time.Duration{}
	atEndNow := func(n string) bool {
		v := vols[n]
		switch n {
		case "mirror":
			st, ok := c.status(core.VolumeStatusKey(v.ref))
			return ok && st.StateCode == core.StateMirroring && st.ErrorReason == nil
		case "pause":
			st, ok := c.status(core.VolumeStatusKey(v.ref))
			return ok && st.StateCode == core.StatePaused && st.Operation == core.OpPause && st.ErrorReason == nil
		}
		return c.get(core.VolumeKey(v.ref)) == ""
	}
	var mirrorShowed time.Duration // when the mirroring volume's status first showed the outage
	for time.Since(frozen) < outage {
		mirrorShowed = outageShown(c, vols["mirror"].ref, mirrorShowed, frozen)
		for _, n := range names {
			note(n)
			if _, ok := endedAt[n]; !ok && atEndNow(n) {
				endedAt[n] = time.Since(frozen)
			}
		}
		if destroyTook == 0 && c.get(core.VolumeKey(vols["destroy"].ref)) == "" {
			destroyTook = time.Since(destroyWritten)
			t.Logf("destroy ended with site %s frozen, %s after it was written", strings.ToUpper(site), destroyTook.Round(100*time.Millisecond))
		}
		time.Sleep(500 * time.Millisecond)
	}
	thawing := time.Now()
	thaw()
	t.Logf("site %s frozen %s; healthy again %s after the thaw", strings.ToUpper(site), thawing.Sub(frozen).Round(100*time.Millisecond), time.Since(thawing).Round(100*time.Millisecond))

	// Each operation to its end: mirrord's own retries first (§4.3: a
	// failed call is retried with a growing delay), then, as a DR manager
	// would, the operation written again.
	ended := map[string]bool{}
	retried := map[string]bool{}
	recovered := map[string]time.Duration{}

	ops := map[string]string{"mirror": "start", "pause": "pause", "stop": "stop"}
	limit := time.Now().Add(6 * time.Minute)
	retryAfter := time.Now().Add(3 * time.Minute)
	for len(ended) < len(names) && time.Now().Before(limit) {
		for _, n := range names {
			if ended[n] {
				continue
			}
			note(n)
			if n == "destroy" && destroyTook == 0 && c.get(core.VolumeKey(vols[n].ref)) == "" {
				destroyTook = time.Since(destroyWritten)
			}
			if atEndNow(n) {
				ended[n] = true
				recovered[n] = time.Since(thawing)
				if _, ok := endedAt[n]; !ok {
					endedAt[n] = time.Since(frozen)
				} else {
					recovered[n] = 0 // ended while the site was down
				}
				continue
			}
			if st, ok := c.status(core.VolumeStatusKey(vols[n].ref)); ok && st.StateCode == core.StateError && time.Now().After(retryAfter) && !retried[n] && ops[n] != "" {
				if st.ErrorReason == nil || st.ErrorReason.Code == "" || st.ErrorReason.Contents == "" {
					t.Errorf("volume %s (%s) in error with no clear reason: %+v", n, core.VolumeKey(vols[n].ref), st)
				}
				t.Logf("volume %s still in error 3 min after the thaw (%s: %s): its operation written again", n, st.ErrorReason.Code, st.ErrorReason.Contents)
				retried[n] = true
				c.setOp(vols[n].ref, ops[n])
			}
		}
		time.Sleep(500 * time.Millisecond)
	}
	lost := 0
	for _, n := range names {
		t.Logf("volume %s (%s): %s", n, core.VolumeKey(vols[n].ref), strings.Join(seen[n], " → "))
		if !ended[n] {
			lost++
			t.Errorf("volume %s did not reach the end of its operation 6 min after the thaw", n)
		}
	}
	checkPauseWhileSourceDown(t, site, outage, endedAt["pause"], thawing.Sub(frozen))
	t.Logf("the mirroring volume's status showed the outage %s after the freeze (0: not while the site was down)", mirrorShowed.Round(100*time.Millisecond))
	// With the source frozen, stop and destroy end without waiting for
	// it (docs/contract.md §4.3).
	if site == "a" && outage >= keepAloneBound {
		for _, n := range []string{"stop", "destroy"} {
			if d, ok := endedAt[n]; !ok || d > keepAloneBound {
				t.Errorf("%s with the source frozen %s ended %s after the freeze (0: never), want within %s, while the site is still down",
					n, outage, d.Round(100*time.Millisecond), keepAloneBound)
			}
		}
	}
	if destroyTook == 0 || destroyTook > deadline+15*time.Second {
		t.Errorf("destroy took %s (0: never ended), over mirrord's destroy deadline %s (+15 s for the daemon to pick it up)", destroyTook, deadline)
	}

	// The storage, checked with the rbd CLI.
	// mirror: replays new writes again.
	mv := vols["mirror"]
	if out, err := l.rbd(t, "B", "info", mv.image()); err != nil || !strings.Contains(out, "mirroring primary: false") {
		t.Errorf("target of the mirroring volume: want a non-primary copy: %v %s", err, out)
	}
	l.write(t, mv)
	wrote := time.Now()
	l.waitSameData(t, mv, 120*time.Second)
	t.Logf("a write to the mirroring volume after the outage replicated in %s", time.Since(wrote).Round(100*time.Millisecond))
	recovered["mirror (new write replicated)"] = time.Since(thawing)

	// pause: the source is still mirrored, the copy non-primary and held.
	pv := vols["pause"]
	if out, err := l.rbd(t, "A", "info", pv.image()); err != nil || !strings.Contains(out, "mirroring primary: true") {
		t.Errorf("source of the paused volume: want a mirror-enabled primary: %v %s", err, out)
	}
	if out, err := l.rbd(t, "B", "info", pv.image()); err != nil || !strings.Contains(out, "mirroring primary: false") {
		t.Errorf("target of the paused volume: want a non-primary copy: %v %s", err, out)
	}
	status, _ := l.rbd(t, "B", "mirror", "image", "status", pv.image())
	t.Logf("paused volume, rbd mirror image status on site B:\n%s", status)
	l.write(t, pv)
	time.Sleep(10 * time.Second)
	if got := l.sum(t, "B", pv.image()); got != held {
		t.Errorf("the paused volume's target changed after a write to its source")
	}

	// stop: the target kept, standalone, with the data, writable.
	sv := vols["stop"]
	if out, err := l.rbd(t, "B", "mirror", "image", "status", sv.image()); err == nil {
		t.Errorf("the stopped volume's target is still mirrored: %s", out)
	}
	if out, err := l.rbd(t, "B", "info", sv.image()); err != nil || strings.Contains(out, "mirroring primary: false") {
		t.Errorf("the stopped volume's target: want a standalone image: %v %s", err, out)
	}
	if got := l.sum(t, "B", sv.image()); got != stopSum {
		t.Errorf("the stopped volume's kept target does not hold the last replicated data")
	}
	if out, err := l.rbd(t, "B", "bench", "--io-type", "write", "--io-total", "64K", sv.image()); err != nil {
		t.Errorf("the stopped volume's kept target is not writable: %v %s", err, out)
	}
	src, _ := l.rbd(t, "A", "info", sv.image())
	t.Logf("stopped volume's source after the outage: mirroring enabled %v (true: a leftover, the stop ran with the source unreachable)", strings.Contains(src, "mirroring state: enabled"))

	// destroy: the replication gone; the target deleted only if the
	// source was known intact (never the last copy).
	dv := vols["destroy"]
	_, tgtErr := l.rbd(t, "B", "info", dv.image())
	srcInfo, srcErr := l.rbd(t, "A", "info", dv.image())
	if srcErr != nil {
		t.Errorf("the destroyed volume's source is gone: %s", srcInfo)
	}
	if out, err := l.rbd(t, "B", "mirror", "image", "status", dv.image()); err == nil && tgtErr == nil && strings.Contains(out, "replaying") {
		t.Errorf("the destroyed volume's target still replays: %s", out)
	}
	t.Logf("destroyed volume: target copy kept %v, source still mirror-enabled %v (the destroy's leftovers when a side was unreachable)",
		tgtErr == nil, strings.Contains(srcInfo, "mirroring state: enabled"))

	// Cleanup of the leftovers (what an operator does from `mirrord
	// leftovers`), so the pool can go.
	for _, n := range []string{"stop", "destroy"} {
		_, _ = l.rbd(t, "A", "mirror", "image", "disable", "--force", vols[n].image())
	}
	var slowest time.Duration
	var rec, ends []string
	for _, n := range names {
		if d, ok := endedAt[n]; ok {
			when := "after the thaw"
			if d < thawing.Sub(frozen) {
				when = "site still down"
			}
			ends = append(ends, fmt.Sprintf("%s %s (%s)", n, d.Round(100*time.Millisecond), when))
		}
	}
	t.Logf("each volume at the end of its operation, from the freeze (operations written then): %s", strings.Join(ends, ", "))
	for _, n := range append(names, "mirror (new write replicated)") {
		if d, ok := recovered[n]; ok {
			slowest = max(slowest, d)
			rec = append(rec, fmt.Sprintf("%s %s", n, d.Round(100*time.Millisecond)))
		}
	}
	t.Logf("storage down, site %s frozen %s: trials 4 operations (mirror, pause, stop, destroy), faults 1 outage, lost %d, "+
		"retried by hand %d, destroy ended %s after it was written (deadline %s); recovered after the thaw: %s; slowest %s; run %s",
		strings.ToUpper(site), outage, lost, len(retried), destroyTook.Round(100*time.Millisecond), deadline,
		strings.Join(rec, ", "), slowest.Round(100*time.Millisecond), time.Since(began).Round(time.Second))
}

// checkPauseWhileSourceDown: a pause needs only the target (the Ceph
// plugin records it, holds the copy and stops its replayer there), so
// with the source frozen for a minute or more it must end while the
// source is still down, not only after the thaw. ended is when the pause
// was first seen at its end, from the freeze (0: never); frozenFor is
// how long the site was down.
func checkPauseWhileSourceDown(t *testing.T, site string, outage, ended, frozenFor time.Duration) {
	t.Helper()
	if site != "a" || outage < 60*time.Second {
		return
	}
	if ended == 0 || ended >= frozenFor {
		t.Errorf("the pause did not end while the source was down: ended %s after the freeze (0: never), the thaw at %s",
			ended.Round(100*time.Millisecond), frozenFor.Round(100*time.Millisecond))
		return
	}
	t.Logf("the pause ended with the source down, %s after the freeze (the thaw at %s)", ended.Round(100*time.Millisecond), frozenFor.Round(100*time.Millisecond))
}

// outageShown returns when, from frozen, the volume's status first was
// other than a plain mirroring (an error, waiting): was, once set.
func outageShown(c *cluster, ref core.VolumeRef, was time.Duration, frozen time.Time) time.Duration {
	if was != 0 {
		return was
	}
	if st, ok := c.status(core.VolumeStatusKey(ref)); ok && (st.StateCode != core.StateMirroring || st.ErrorReason != nil) {
		return time.Since(frozen)
	}
	return 0
}
