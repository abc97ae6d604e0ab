package cephrbd

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// A volume started right after its snapshot-mode environment's prepare
// gets its first copy from its first mirror snapshot: the prepare waits
// until the target's rbd-mirror has registered on the source pool, so
// that snapshot is linked to it. The schedule's interval is an hour: a
// first snapshot the target missed fails the test by the deadline.
//
// A fresh rbd-mirror registers within a second of answering on its
// admin socket on the lab, too soon to miss a snapshot here; one already
// running registers again only on its next refresh of the pool. So the
// second prepare, after the registration was removed by hand, is the
// one that fails without the wait.
func TestFirstMirrorSnapshotRightAfterPrepare(t *testing.T) {
	r := newRig(t, modeSnapshot)
	a := r.lab.Sites[0]
	if n := txPeers(t, a); n != 0 {
		t.Fatalf("site-a's pool lists %d tx peers before the prepare; want none (an earlier test left one)", n)
	}
	extra := map[string]string{"mirror_mode": modeSnapshot, "mirror_snapshot_interval": "1h"}
	env := r.env(t)
	env.Source.Metadata = a.metadata(t, extra)
	env.Target.Metadata = r.lab.Sites[1].metadata(t, extra)
	begin := time.Now()
	r.prepareEnvironments(t, env)
	t.Logf("PrepareEnvironment took %v", time.Since(begin).Round(time.Millisecond))
	if n := txPeers(t, a); n != 1 {
		t.Fatalf("site-a's pool lists %d tx peers once PrepareEnvironment returned; want site-b's", n)
	}
	firstCopyAfterStart(t, r, env, 41)

	// The registration gone while rbd-mirror runs (a teardown of another
	// environment from this pool into the same cluster removes it too).
	for _, p := range mirrorPoolInfo(t, a).Peers {
		if p.Direction == "tx-only" {
			rbdCLI(t, a, "mirror", "pool", "peer", "remove", a.Pool, p.UUID)
		}
	}
	begin = time.Now()
	if err := r.be.PrepareEnvironment(t.Context(), env); err != nil {
		t.Fatalf("PrepareEnvironment again: %v", err)
	}
	t.Logf("PrepareEnvironment with rbd-mirror running, unregistered, took %v", time.Since(begin).Round(time.Millisecond))
	firstCopyAfterStart(t, r, env, 42)
}

// firstCopyAfterStart starts a small volume of env and waits for its
// first copy, which only the first mirror snapshot brings. The bound
// leaves room for one replacement of a wedged rbd-mirror: the removed
// registration makes rbd-mirror restart its pool replayer when it
// registers again, and Pacific's restart once hung for good here
// (rbdmirror_replace.go). A snapshot missed would still wait an hour.
func firstCopyAfterStart(t *testing.T, r *labRig, env sdk.Environment, id uint64) {
	t.Helper()
	vol := r.startSmallVolume(t, env, id, r.srcIO, r.dstIO)
	name := imageName(vol)
	begin := time.Now()
	waitFor(t, "a complete non-primary mirror snapshot of "+name+" on site-b (the first one)", 45*time.Second+wedgedAfter+time.Minute, func() bool {
		return cliFirstCopy(t, r.lab.Sites[1], name)
	})
	t.Logf("first copy of volume %d complete %v after StartVolume", id, time.Since(begin).Round(time.Millisecond))
	st, err := r.be.VolumeStatus(t.Context(), vol)
	if err != nil || st.State != sdk.ReplicationReplaying {
		t.Errorf("VolumeStatus of volume %d = %+v, %v; want replaying", id, st, err)
	}
}

// cliFirstCopy says, from the rbd CLI, whether the copy of image on s
// holds a complete non-primary mirror snapshot.
func cliFirstCopy(t *testing.T, s labSite, image string) bool {
	t.Helper()
	out, err := rbdCLIErr(s, "snap", "ls", "--all", "--format", "json", s.Pool+"/"+image)
	if err != nil {
		return false // not created yet
	}
	var snaps []struct {
		Namespace struct {
			Type     string `json:"type"`
			State    string `json:"state"`
			Complete bool   `json:"complete"`
		} `json:"namespace"`
	}
	if err := json.Unmarshal([]byte(out), &snaps); err != nil {
		t.Fatalf("rbd snap ls: %v\n%s", err, out)
	}
	for _, sn := range snaps {
		if sn.Namespace.Type == "mirror" && sn.Namespace.State == "non-primary" && sn.Namespace.Complete {
			return true
		}
	}
	return false
}
