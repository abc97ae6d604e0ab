package cephrbd

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/ceph/go-ceph/rados"
	"github.com/ceph/go-ceph/rbd"

	"github.com/cdmdr/mirror/plugins/sdk"
	"github.com/cdmdr/mirror/plugins/sdk/plugintest"
)

// secondPool is the pool of the second environment in
// TestTwoEnvironmentsOnOneTargetCluster, created on both sites when
// missing (N:1 replication uses one pool per source on the shared target).
const secondPool = "volumes2"

// Two environments into one target cluster (different pools) each run an
// rbd-mirror there, and the two daemons share out both pools' images
// between them. A pause, a resume and the status must reach whichever
// daemon runs the image.
func TestTwoEnvironmentsOnOneTargetCluster(t *testing.T) {
	r := newRig(t, modeJournal)
	ctx := t.Context()
	for _, s := range r.lab.Sites {
		ensurePool(t, s, secondPool)
	}
	env1 := r.env(t)
	second := func(s labSite) labSite { s.Pool = secondPool; return s }
	extra := map[string]string{"mirror_mode": modeJournal}
	env2 := sdk.Environment{
		ID:     "storage.12.14",
		Source: sdk.Storage{ClusterID: 5, StorageID: 12, Type: StorageType, BackendName: "ceph", Metadata: second(r.lab.Sites[0]).metadata(t, extra)},
		Target: sdk.Storage{ClusterID: 6, StorageID: 14, Type: StorageType, BackendName: "ceph", Metadata: second(r.lab.Sites[1]).metadata(t, extra)},
	}
	srcIO2, dstIO2 := second(r.lab.Sites[0]).connect(t), second(r.lab.Sites[1]).connect(t)

	r.prepareEnvironments(t, env1, env2)
	asoks := r.asoks(t, r.be, env1)
	if len(asoks) != 2 {
		t.Fatalf("rbd-mirror daemons known on the target cluster = %q, want both environments'", asoks)
	}
	// Both daemons must have joined the pools before images arrive, so
	// the leader shares the images out between them.
	waitFor(t, "both rbd-mirror daemons in each pool's instance list", 60*time.Second, func() bool {
		return instancesSeen(ctx, asoks) >= 2
	})
	var vols []sdk.Volume
	for i := range 6 {
		env, srcIO, dstIO := env1, r.srcIO, r.dstIO
		if i%2 == 1 {
			env, srcIO, dstIO = env2, srcIO2, dstIO2
		}
		vols = append(vols, r.startSmallVolume(t, env, uint64(100+i), srcIO, dstIO))
	}
	spec := func(v sdk.Volume) string {
		m, _ := parseMeta(v.Environment.Target)
		return m.Pool + "/" + imageName(v)
	}
	// Where each image's replayer runs.
	where := map[string]int{}
	for _, v := range vols {
		waitFor(t, "replaying "+spec(v), 90*time.Second, func() bool {
			st, err := r.be.VolumeStatus(ctx, v)
			return err == nil && st.State == sdk.ReplicationReplaying
		})
		_, asok, err := replayerOf(ctx, asoks, spec(v))
		if err != nil {
			t.Fatalf("no rbd-mirror runs %s: %v", spec(v), err)
		}
		where[asok]++
	}
	t.Logf("image replayers per rbd-mirror: %v", where)
	if len(where) < 2 {
		t.Fatalf("all %d images run in one rbd-mirror (%v): the test cannot check a pause that must reach the other one", len(vols), where)
	}

	for _, v := range vols {
		if err := r.be.PauseVolume(ctx, v); err != nil {
			t.Fatalf("PauseVolume %s: %v", spec(v), err)
		}
	}
	for _, v := range vols {
		waitFor(t, "stopped "+spec(v), 30*time.Second, func() bool {
			st, _, err := replayerOf(ctx, asoks, spec(v))
			return err == nil && st.State == replayerStopped
		})
		if st, err := r.be.VolumeStatus(ctx, v); err != nil || st.State != sdk.ReplicationPaused {
			t.Fatalf("VolumeStatus %s = %+v, %v; want paused", spec(v), st, err)
		}
	}
	for _, v := range vols {
		if err := r.be.ResumeVolume(ctx, v); err != nil {
			t.Fatalf("ResumeVolume %s: %v", spec(v), err)
		}
	}
	for _, v := range vols {
		waitFor(t, "replaying again "+spec(v), 60*time.Second, func() bool {
			st, err := r.be.VolumeStatus(ctx, v)
			return err == nil && st.State == sdk.ReplicationReplaying
		})
	}
	for _, v := range vols {
		waitFor(t, "stopped with its copy kept "+spec(v), 60*time.Second, func() bool {
			err := reportless(r.be.StopVolume(ctx, v))
			if err != nil && !errors.Is(err, sdk.ErrInProgress) {
				t.Fatalf("StopVolume %s: %v", spec(v), err)
			}
			return err == nil
		})
	}
}

// asoks are the admin sockets of the rbd-mirror daemons be runs on env's
// target cluster, env's own first.
func (r *labRig) asoks(t testing.TB, be *Backend, env sdk.Environment) []string {
	t.Helper()
	dst, err := be.side(env.Target)
	if err != nil {
		t.Fatal(err)
	}
	asoks, err := be.localAsoks(env, dst)
	if err != nil {
		t.Fatalf("admin sockets of environment %s: %v", env.ID, err)
	}
	return asoks
}

// ensurePool creates an rbd pool on a lab site unless it exists.
func ensurePool(t *testing.T, s labSite, pool string) {
	t.Helper()
	conn, err := labConn(s)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Shutdown()
	if _, err := conn.GetPoolByName(pool); err == nil {
		return
	}
	for _, cmd := range []string{
		`{"prefix":"osd pool create","pool":"` + pool + `","pg_num":8,"pgp_num":8}`,
		`{"prefix":"osd pool application enable","pool":"` + pool + `","app":"rbd"}`,
	} {
		if _, info, err := conn.MonCommand([]byte(cmd)); err != nil {
			t.Fatalf("%s on %s: %v: %s", cmd, s.Name, err, info)
		}
	}
}

// instancesSeen is the smallest number of rbd-mirror instances a pool's
// leader knows of, over the pools the daemons at asoks replicate.
func instancesSeen(ctx context.Context, asoks []string) int {
	perPool := map[string]int{}
	for _, a := range asoks {
		out, err := asokCommand(ctx, a, "rbd mirror status")
		if err != nil {
			return 0
		}
		var st struct {
			PoolReplayers []struct {
				Pool      string   `json:"pool"`
				Instances []string `json:"instances"`
			} `json:"pool_replayers"`
		}
		if json.Unmarshal(out, &st) != nil {
			return 0
		}
		for _, p := range st.PoolReplayers {
			perPool[p.Pool] = max(perPool[p.Pool], len(p.Instances))
		}
	}
	if len(perPool) < 2 {
		return 0
	}
	n := -1
	for _, c := range perPool {
		if n < 0 || c < n {
			n = c
		}
	}
	return n
}

// startSmallVolume creates a 16 MiB source image for a new volume of env
// and starts it; cleanup destroys the volume and removes the images on
// both sides.
func (r *labRig) startSmallVolume(t *testing.T, env sdk.Environment, id uint64, srcIO, dstIO *rados.IOContext) sdk.Volume {
	t.Helper()
	v := sdk.Volume{Environment: env, ClusterID: 5, VolumeID: id, VolumeUUID: plugintest.NewUUID()}
	name := imageName(v)
	if err := rbd.CreateImage(srcIO, name, 16<<20, rbd.NewRbdImageOptions()); err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	t.Cleanup(func() {
		for _, io := range []*rados.IOContext{srcIO, dstIO} {
			removeImageForTest(io, name)
		}
	})
	r.destroyAtEnd(t, v)
	if err := r.be.StartVolume(t.Context(), v); err != nil {
		t.Fatalf("StartVolume %s: %v", name, err)
	}
	return v
}
