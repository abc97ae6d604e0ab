package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cdmdr/mirror/core"
)

// cephCrashPool is TestCephCrashAnywhere's pool, on both sites.
const cephCrashPool = "crash"

// TestCephCrashAnywhere is issue 15's crash test once on the real Ceph
// clusters: one mirrord process with the Ceph plugin, 6 volumes, 30
// operations (4 and 12 in make test's short form) chosen at random among
// those the rules allow (the DR manager of crash_test.go: writeOperation,
// taken, atEnd), and SIGKILL of mirrord and its plugin's process group at
// random moments, mirrord then started again (the plugin's rbd-mirror
// outlives them, as on a host whose daemon crashed). At the end every
// volume is at the end state of its last operation, and the clusters say
// the same, read with the rbd CLI: the source image mirror-enabled and
// primary with a non-primary copy on the target (start, resume, pause),
// mirroring disabled with the target kept standalone (stop), or the target
// gone (stop_and_delete, destroy). A volume started again after a stop,
// stop_and_delete or destroy is checked the same way first; the copy a
// stop kept is the user's, removed by the test (as a DR manager would once
// it has taken it over) so the volume can be started again under its name.
//
// No side effect is done twice: the plugin logs each call that changes
// the storage before making it (--call-log), and crash_test.go's
// checkCalls counts duplicates from that log; each copy on the target
// keeps its image id from a start to the next stop (a copy made again is
// a first copy done twice). docs/reliability/ceph.md says what is counted.
//
// MIRROR_FAULTS_SEED repeats the operations and the kill schedule.
func TestCephCrashAnywhere(t *testing.T) {
	l := needCephLab(t)
	seed := faultsSeed(t)
	nOps, nVols := 12, 4 // make test's short form
	if longFaults() {
		nOps, nVols = 30, 6
	}
	rng := rand.New(rand.NewPCG(seed, 0))
	began := time.Now()

	pluginDir := t.TempDir()
	_ = os.Chmod(pluginDir, 0o755)
	buildCephPluginInto(t, pluginDir)
	l.createPool(t, cephCrashPool)
	state := cephStateDir(t)
	callLog := filepath.Join(t.TempDir(), "calls.log")
	c := newCluster(t)
	c.put("clusters/5/storages/11", `{"cluster_id":5,"storage_id":11,"type":"openstack.storage.type.ceph","backend_name":"ceph"}`)
	c.put("clusters/5/storages/11/metadata", l.poolMetadata(t, "A", cephCrashPool))
	c.put("clusters/6/storages/13", `{"cluster_id":6,"storage_id":13,"type":"openstack.storage.type.ceph","backend_name":"ceph"}`)
	c.put("clusters/6/storages/13/metadata", l.poolMetadata(t, "B", cephCrashPool))
	c.seedEnvironment("start")
	d := newCephCrashDaemon(t, c, "d1", pluginDir, state, callLog)
	d.start(t)
	c.waitStateWithin(core.EnvironmentStatusKey(seedEnv), core.StateMirroring, 120*time.Second)

	run := uint64(time.Now().UnixNano() % 1e8)
	vols := make([]*crashVolume, nVols)
	hv := map[core.VolumeRef]hostVolume{}
	for i := range vols {
		id := uint64(100 + i)
		vols[i] = &crashVolume{ref: core.VolumeRef{Env: seedEnv, VolumeID: id}, uuid: uuidFor(run*100 + id)}
		h := hostVolume{ref: vols[i].ref, pool: cephCrashPool, source: "A", target: "B", uuid: vols[i].uuid}
		hv[h.ref] = h
		if out, err := l.rbd(t, "A", "create", h.image(), "--size", "8M"); err != nil {
			t.Fatalf("create source image: %v %s", err, out)
		}
		l.write(t, h)
	}

	start := time.Now()
	opsDeadline := start.Add(time.Duration(nOps) * 30 * time.Second)
	kills, issued, refused, cleaned, checked := 0, 0, 0, 0, 0
	copies := newCopyIDs()
	var killAt, restartAt time.Time
	var badStorage []string
	for issued < nOps {
		if time.Now().After(opsDeadline) {
			t.Fatalf("only %d of %d operations could be written in %s: volumes never took their operation; %s",
				issued, nOps, time.Since(start).Round(time.Second), describeVolumes(c, vols))
		}
		switch {
		case !d.running() && time.Now().After(restartAt):
			d.start(t)
			t.Logf("%6.1fs mirrord started again", time.Since(start).Seconds())
		case d.running() && !killAt.IsZero() && time.Now().After(killAt):
			killCephCrashDaemon(t, d)
			kills++
			killAt = time.Time{}
			restartAt = time.Now().Add(time.Duration(rng.IntN(2000)) * time.Millisecond)
			t.Logf("%6.1fs kill %d: mirrord and its plugin's process group (SIGKILL)", time.Since(start).Seconds(), kills)
		}
		views := crashViews(t, c)
		ready := readyVolumes(vols, views)
		if len(ready) == 0 {
			time.Sleep(200 * time.Millisecond)
			continue
		}
		v := ready[rng.IntN(len(ready))]
		view := views[v.ref]
		copies.check(t, l, hv[v.ref])
		if !view.record && v.op != "" {
			// Its keys are gone: the clusters must say the same before
			// it is started again under its name.
			checked++
			if diff := waitCephEnd(t, l, hv[v.ref], v.op, 60*time.Second); diff != "" {
				badStorage = append(badStorage, fmt.Sprintf("volume %d after %s: %s", v.ref.VolumeID, v.op, diff))
				t.Errorf("volume %d: keys gone after %s, but %s", v.ref.VolumeID, v.op, diff)
			}
			if v.op == core.OpStop {
				_, _ = l.rbd(t, "B", "snap", "purge", "--no-progress", hv[v.ref].image())
				if out, err := l.rbd(t, "B", "rm", "--no-progress", hv[v.ref].image()); err != nil {
					t.Fatalf("remove the copy the stop of volume %d kept: %v %s", v.ref.VolumeID, err, out)
				}
				cleaned++
			}
			copies.forget(v.ref) // started again: a new copy
			view = crashViews(t, c)[v.ref]
		}
		wasRefused := refusedOp(v.op, view)
		if op, ok := writeOperation(t, c, rng, v, view); ok {
			if wasRefused {
				refused++
				t.Logf("volume %s: %s", core.VolumeKey(v.ref), view.status.ErrorReason.Contents)
			}
			t.Logf("%6.1fs operation %2d: volume %d %s (from %s)", time.Since(start).Seconds(), issued+1, v.ref.VolumeID, op, view.describe())
			v.op = op
			issued++
			if rng.IntN(3) == 0 && killAt.IsZero() {
				killAt = time.Now().Add(time.Duration(rng.IntN(3000)) * time.Millisecond)
			}
		}
		// Ceph's steps take seconds: a pace that lets some operations
		// reach their end before the next, and others not.
		time.Sleep(time.Duration(rng.IntN(3000)) * time.Millisecond)
	}
	if !d.running() {
		time.Sleep(time.Until(restartAt))
		d.start(t)
	}
	// The last kill, while the last operations are under way.
	time.Sleep(time.Duration(rng.IntN(2000)) * time.Millisecond)
	killCephCrashDaemon(t, d)
	kills++
	lastKill := time.Now()
	t.Logf("%6.1fs kill %d, the last: mirrord and its plugin's process group (SIGKILL)", time.Since(start).Seconds(), kills)
	time.Sleep(time.Duration(rng.IntN(1000)) * time.Millisecond)
	d.start(t)

	// Convergence, mirrord left alone: every status at the end of its
	// operation, then the clusters checked with the rbd CLI.
	limit := lastKill.Add(6 * time.Minute)
	var statusesAt, storageAt time.Duration
	for time.Now().Before(limit) {
		views := crashViews(t, c)
		all := true
		for _, v := range vols {
			if !atEnd(v.op, views[v.ref]) {
				all = false
			}
			if refusedOp(v.op, views[v.ref]) {
				if op, ok := writeOperation(t, c, rng, v, views[v.ref]); ok {
					refused++
					t.Logf("volume %s: %s; answered with %s", core.VolumeKey(v.ref), views[v.ref].status.ErrorReason.Contents, op)
					v.op = op
					issued++
				}
			}
		}
		if !all {
			time.Sleep(500 * time.Millisecond)
			continue
		}
		if statusesAt == 0 {
			statusesAt = time.Since(lastKill)
		}
		diffs := 0
		for _, v := range vols {
			if cephEndDiff(t, l, hv[v.ref], v.op) != "" {
				diffs++
			}
		}
		if diffs == 0 {
			storageAt = time.Since(lastKill)
			break
		}
		time.Sleep(2 * time.Second)
	}
	views := crashViews(t, c)
	stuck, lost, mismatched := 0, 0, 0
	for _, v := range vols {
		copies.check(t, l, hv[v.ref])
		view := views[v.ref]
		diff := cephEndDiff(t, l, hv[v.ref], v.op)
		t.Logf("volume %d: last operation %s; %s; storage %s", v.ref.VolumeID, v.op, view.describe(), map[bool]string{true: "as it should be", false: diff}[diff == ""])
		if diff != "" {
			mismatched++
			t.Errorf("volume %d: last operation %s, the clusters disagree: %s", v.ref.VolumeID, v.op, diff)
		}
		if atEnd(v.op, view) {
			continue
		}
		if taken(v.op, view) {
			stuck++
		} else {
			lost++
		}
		t.Errorf("volume %d: last operation %s, not at its end: %s", v.ref.VolumeID, v.op, view.describe())
	}
	if strings.Contains(d.logs(), "DATA RACE") {
		t.Errorf("%s reported a data race", d.id)
	}
	// The plugin's view of the calls (crash_test.go's definition of a
	// duplicated side effect), and the storage's: no copy made again.
	// Retries of a call the plugin answered with an error are left out:
	// the plugin said it was not done (a pause recorded but not yet
	// applied says paused). With forget, a DeleteTarget that finds the
	// copy gone is a no-op: rbd-mirror deletes a mirrored copy after the
	// call returns, and mirrord, which saw it still there, asks again.
	calls := readCallLog(t, callLog)
	toCheck, retries, retried := cephCallsToCheck(calls)
	dups, noops, failed := checkCalls(t, toCheck, true)
	attempted, interrupted, unread := cephCallCounts(calls)
	if attempted == 0 {
		t.Errorf("the plugin's call log %s holds no call: nothing to count duplicates from", callLog)
	}
	if t.Failed() {
		// What the plugin was asked, and what mirrord said of it: the two
		// temporary directories go with the test.
		data, _ := os.ReadFile(callLog)
		t.Logf("the plugin's call log:\n%s", data)
		t.Logf("mirrord's log, debug lines left out:\n%s", withoutDebug(d.logs()))
	}
	// Cleanup: what the last operations left on the clusters, so the pool
	// can go (the pool is removed with its images; mirroring first).
	for _, h := range hv {
		_, _ = l.rbd(t, "A", "mirror", "image", "disable", "--force", h.image())
	}
	t.Logf("Ceph crash anywhere, seed %d: volumes %d, operations %d (%d refused), kills %d (mirrord with its plugin's process group), "+
		"stuck %d, lost %d, clusters different from the status %d (+%d of %d checked mid-run, before a start again), kept copies removed to start again %d; "+
		"calls changing the storage %d (%d interrupted by a kill, %d failed, %d retries of a failed call %v, %d found nothing to do, %d with the state before unread), "+
		"duplicated side effects %d; target copies made again %d (%d reads of a copy's id); "+
		"after the last kill: statuses at their end in %s, the clusters agreeing (rbd CLI) in %s; run %s",
		seed, nVols, issued, refused, kills, stuck, lost, mismatched, len(badStorage), checked, cleaned,
		attempted, interrupted, failed, retries, retried, noops, unread, dups, copies.remade, copies.reads,
		statusesAt.Round(100*time.Millisecond), storageAt.Round(100*time.Millisecond), time.Since(began).Round(time.Second))
}

// newCephCrashDaemon is a daemon with the Ceph plugin keeping its state
// in stateDir and logging the calls that change the storage to callLog.
func newCephCrashDaemon(t *testing.T, c *cluster, id, pluginDir, stateDir, callLog string) *crashDaemon {
	t.Helper()
	return newDaemonProcess(t, id, map[string]any{
		"daemon_id":  id,
		"etcd":       map[string]any{"endpoints": c.etcd.Endpoints(), "session_ttl": hostLossSessionTTL.String()},
		"nats":       map[string]any{"url": c.nats.URL()},
		"plugin_dir": pluginDir,
		"plugins": map[string]any{
			"ceph": map[string]any{"args": []string{"--state-dir", stateDir, "--call-log", callLog}},
		},
		"resync_interval":    "10s",
		"poll_interval":      "2s",
		"fast_poll_interval": "500ms",
		"log_level":          "debug",
		"log_format":         "json",
		"http_address":       "127.0.0.1:0",
	})
}

// killCephCrashDaemon kills mirrord and, with it, each of its children's
// process groups (the plugin host starts each plugin in a group of its
// own); the plugin's rbd-mirror, in a group of its own, lives on.
func killCephCrashDaemon(t *testing.T, d *crashDaemon) {
	t.Helper()
	kids := childrenOf(d.cmd.Process.Pid)
	_ = syscall.Kill(d.cmd.Process.Pid, syscall.SIGKILL)
	for _, pid := range kids {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	<-d.exited
}

// waitCephEnd waits until the clusters are at the end state of op for
// the volume (rbd-mirror deletes a copy a little after the source's
// mirroring is disabled), and says how they differ if they never are.
func waitCephEnd(t *testing.T, l cephLab, v hostVolume, op core.Operation, within time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		diff := cephEndDiff(t, l, v, op)
		if diff == "" || time.Now().After(deadline) {
			return diff
		}
		time.Sleep(time.Second)
	}
}

// cephEndDiff says how the clusters differ, read with the rbd CLI, from
// the end state of the volume's last operation; "" when they do not.
func cephEndDiff(t *testing.T, l cephLab, v hostVolume, op core.Operation) string {
	t.Helper()
	src, srcErr := l.rbd(t, "A", "info", v.image())
	tgt, tgtErr := l.rbd(t, "B", "info", v.image())
	if srcErr != nil {
		return "the source image is unreadable or gone: " + strings.TrimSpace(src)
	}
	srcMirrored := strings.Contains(src, "mirroring state: enabled")
	var problems []string
	switch op {
	case core.OpStart, core.OpResume, core.OpPause:
		if !srcMirrored || !strings.Contains(src, "mirroring primary: true") {
			problems = append(problems, "the source is not a mirror-enabled primary")
		}
		if tgtErr != nil || !strings.Contains(tgt, "mirroring primary: false") {
			problems = append(problems, "no non-primary copy on the target")
		}
		status, err := l.rbd(t, "B", "mirror", "image", "status", v.image())
		replaying := err == nil && strings.Contains(stateLine(status), "replaying")
		if op != core.OpPause && !replaying {
			problems = append(problems, "the copy is not replaying: "+firstLines(status, 4))
		}
		if op == core.OpPause && replaying {
			problems = append(problems, "the copy of a paused volume replays: "+firstLines(status, 4))
		}
	case core.OpStop:
		if srcMirrored {
			problems = append(problems, "the source is still mirror-enabled")
		}
		if tgtErr != nil {
			problems = append(problems, "the target copy is gone")
		} else if strings.Contains(tgt, "mirroring primary: false") || strings.Contains(tgt, "mirroring state: enabled") {
			problems = append(problems, "the target copy is still mirrored")
		}
	case core.OpStopAndDelete, core.OpDestroy:
		if srcMirrored {
			problems = append(problems, "the source is still mirror-enabled")
		}
		if tgtErr == nil {
			problems = append(problems, "the target copy is still there")
		}
	}
	return strings.Join(slices.Compact(problems), "; ")
}

func firstLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[:min(n, len(lines))], " | ")
}

// stateLine is the "state:" line of `rbd mirror image status`.
func stateLine(status string) string {
	for _, line := range strings.Split(status, "\n") {
		if s, ok := strings.CutPrefix(strings.TrimSpace(line), "state:"); ok {
			return strings.TrimSpace(s)
		}
	}
	return ""
}

// cephCallCounts counts the Ceph plugin's call log: calls attempted,
// those a kill interrupted (an attempted line without its done line, by
// plugin process, call and volume), and volume calls whose state before
// could not be read (they escape checkCalls).
func cephCallCounts(calls []crashCall) (attempted, interrupted, unread int) {
	type callKey struct {
		pid          int
		call, volume string
	}
	open := map[callKey]int{}
	for _, l := range calls {
		k := callKey{l.PID, l.Call, l.Volume}
		switch l.Phase {
		case "attempted":
			attempted++
			open[k]++
			if l.BeforeErr != "" {
				unread++
			}
		case "done":
			open[k]--
		}
	}
	for _, n := range open {
		interrupted += max(n, 0)
	}
	return attempted, interrupted, unread
}

// cephCallsToCheck is the call log less the attempted lines of calls
// made again after the plugin answered the same call of the volume with
// an error (retries, how many; retried, how many of each call): what
// checkCalls counts duplicates in. A call made again after a kill (no
// done line in between) is checked.
func cephCallsToCheck(calls []crashCall) (checked []crashCall, retries int, retried map[string]int) {
	retried = map[string]int{}
	lastDone := map[string]crashCall{} // by volume
	for _, l := range calls {
		switch l.Phase {
		case "done":
			lastDone[l.Volume] = l
		case "attempted":
			if d, ok := lastDone[l.Volume]; ok && l.Volume != "" && d.Call == l.Call && d.Err != "" {
				retries++
				retried[l.Call]++
				continue
			}
		}
		checked = append(checked, l)
	}
	return checked, retries, retried
}

// copyIDs follows the id of each volume's copy on the target (`rbd info`
// "id:"): from its first copy until a stop, stop_and_delete or destroy
// let it go and the volume is started again, the copy must stay the same
// image. Another id is a copy made again: a first copy done twice, a side
// effect the call log cannot show (rbd-mirror makes copies, not a call).
type copyIDs struct {
	ids           map[core.VolumeRef]string
	remade, reads int
}

func newCopyIDs() *copyIDs { return &copyIDs{ids: map[core.VolumeRef]string{}} }

// check reads the copy's id, if there is a copy, and fails the test if
// it changed since the last read.
func (c *copyIDs) check(t *testing.T, l cephLab, v hostVolume) {
	t.Helper()
	out, err := l.rbd(t, "B", "info", v.image())
	if err != nil {
		return // no copy (yet, or any more)
	}
	id := ""
	for _, line := range strings.Split(out, "\n") {
		if s, ok := strings.CutPrefix(strings.TrimSpace(line), "id:"); ok {
			id = strings.TrimSpace(s)
		}
	}
	if id == "" {
		return
	}
	c.reads++
	if was, ok := c.ids[v.ref]; ok && was != id {
		c.remade++
		t.Errorf("volume %d: its copy on the target was made again (image id %s, then %s) without a stop between", v.ref.VolumeID, was, id)
	}
	c.ids[v.ref] = id
}

// forget lets the volume's copy go: the volume is started again.
func (c *copyIDs) forget(ref core.VolumeRef) { delete(c.ids, ref) }

// withoutDebug is a JSON log without its DEBUG lines.
func withoutDebug(log string) string {
	var kept []string
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, `"level":"DEBUG"`) {
			kept = append(kept, line)
		}
	}
	return strings.Join(kept, "\n")
}
