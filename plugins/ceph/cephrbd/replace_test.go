package cephrbd

import (
	"crypto/rand"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestFencedRbdMirrorReplaced: once a keep has fenced the environment's
// rbd-mirror (blocklisted on the target, its record marked), the
// supervisor replaces the process, and the volumes left mirroring
// replicate again through the new one.
func TestFencedRbdMirrorReplaced(t *testing.T) {
	r := newRig(t, modeJournal)
	h := r.newHarness(t)
	startReplaying(t, r, h)
	ctx := t.Context()
	env := h.env.ID
	pid := rbdMirrorPid(t, r, env)

	v, err := r.be.openVol(ctx, h.vol)
	if err != nil {
		t.Fatalf("open the volume: %v", err)
	}
	defer v.close()
	var rec instanceRecord
	waitFor(t, "the running rbd-mirror's instance recorded", time.Minute, func() bool {
		recs, err := instanceRecords(ctx, v.dstIO, env)
		if err != nil {
			t.Fatalf("read the instance records: %v", err)
		}
		for _, c := range recs {
			if c.Pid == pid {
				rec = c
				return true
			}
		}
		return false
	})
	fenced := time.Now()
	if err := r.be.fence(ctx, v, rec, rec.Addr); err != nil {
		t.Fatalf("fence instance %s: %v", rec.InstanceID, err)
	}

	waitReplaced(t, r, env, pid, "it was fenced", fenced, 30*time.Second)
	replicatesAgain(t, r, h)
}

// TestWedgedRbdMirrorReplaced: an rbd-mirror whose admin socket stays
// silent is left running while a cluster does not answer either (a lost
// site silences it, and a new one would not help), and replaced once
// both answer. Its socket file removed stands for the wedge (Ceph's
// hangs under its main lock, which the status command takes).
func TestWedgedRbdMirrorReplaced(t *testing.T) {
	r := newRig(t, modeJournal)
	h := r.newHarness(t)
	startReplaying(t, r, h)
	env := h.env.ID
	pid := rbdMirrorPid(t, r, env)

	f := freezeSite(t, r.lab, 0)
	if err := os.Remove(r.be.asokPath(env)); err != nil {
		t.Fatalf("remove rbd-mirror's admin socket: %v", err)
	}
	silenced := time.Now()
	waitFor(t, "the silent rbd-mirror left running, the source frozen", wedgedAfter+30*time.Second, func() bool {
		return strings.Contains(r.logs.String(), "but a cluster does not answer either: left running")
	})
	if syscall.Kill(pid, 0) != nil || strings.Contains(r.logs.String(), "replacing rbd-mirror") {
		t.Fatalf("rbd-mirror %d replaced while the source was frozen", pid)
	}
	f.thaw(t)
	waitReplaced(t, r, env, pid, "it is wedged", silenced, wedgedAfter+time.Minute)
	if _, err := poolReplayersAt(t.Context(), r.be.asokPath(env)); err != nil {
		t.Errorf("the new rbd-mirror's admin socket: %v", err)
	}
	replicatesAgain(t, r, h)
}

// waitReplaced waits until env's rbd-mirror pid is gone and another runs,
// and checks the log says why.
func waitReplaced(t *testing.T, r *labRig, env string, pid int, why string, since time.Time, timeout time.Duration) {
	t.Helper()
	waitFor(t, "rbd-mirror "+strconv.Itoa(pid)+" replaced", timeout, func() bool {
		return syscall.Kill(pid, 0) != nil && pidOrZero(r, env) > 0 && pidOrZero(r, env) != pid
	})
	t.Logf("rbd-mirror %d replaced by %d (%s) %v after the fault", pid, pidOrZero(r, env), why, time.Since(since).Round(100*time.Millisecond))
	if !strings.Contains(r.logs.String(), "replacing rbd-mirror: "+why) {
		t.Errorf("no log says rbd-mirror was replaced because %s", why)
	}
}

// replicatesAgain checks a write to the harness's volume reaches the
// target.
func replicatesAgain(t *testing.T, r *labRig, h *labHarness) {
	t.Helper()
	name := imageName(h.vol)
	data := make([]byte, 64<<10)
	_, _ = rand.Read(data)
	writeImage(t, r, name, data)
	sum := exportDigest(t, r.lab.Sites[0], name)
	wrote := time.Now()
	waitFor(t, "a write after the replacement replicated", 2*time.Minute, func() bool { return exportDigest(t, r.lab.Sites[1], name) == sum })
	t.Logf("a write after the replacement replicated in %v", time.Since(wrote).Round(100*time.Millisecond))
}

// pidOrZero is the live rbd-mirror's pid of env, or 0.
func pidOrZero(r *labRig, envID string) int {
	return livePid(r.be.pidPath(envID), r.be.asokPath(envID))
}
