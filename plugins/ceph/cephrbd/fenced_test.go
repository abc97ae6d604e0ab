package cephrbd

import (
	"crypto/rand"
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

	waitFor(t, "the fenced rbd-mirror replaced", 30*time.Second, func() bool {
		return syscall.Kill(pid, 0) != nil && pidOrZero(r, env) > 0 && pidOrZero(r, env) != pid
	})
	t.Logf("rbd-mirror %d replaced by %d %v after the fence", pid, pidOrZero(r, env), time.Since(fenced).Round(100*time.Millisecond))
	if !strings.Contains(r.logs.String(), "rbd-mirror was fenced") {
		t.Errorf("no log says why rbd-mirror was replaced")
	}

	name := imageName(h.vol)
	data := make([]byte, 64<<10)
	_, _ = rand.Read(data)
	writeImage(t, r, name, data)
	sum := exportDigest(t, r.lab.Sites[0], name)
	wrote := time.Now()
	waitFor(t, "a write after the fence replicated", 2*time.Minute, func() bool { return exportDigest(t, r.lab.Sites[1], name) == sum })
	t.Logf("a write after the fence replicated in %v", time.Since(wrote).Round(100*time.Millisecond))
}

// pidOrZero is the live rbd-mirror's pid of env, or 0.
func pidOrZero(r *labRig, envID string) int {
	return livePid(r.be.pidPath(envID), r.be.asokPath(envID))
}
