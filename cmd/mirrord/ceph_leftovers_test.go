package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"gopkg.in/yaml.v3"

	"github.com/cdmdr/mirror/core"
)

// leftoverPool is TestCephLeftovers' pool, on both sites, created and
// removed by the test.
const leftoverPool = "lftv"

// TestCephLeftovers: after a reset as the original's operators did it (the
// daemon gone, every mirror key deleted by hand with `etcdctl del --prefix
// mirror`), mirrord leftovers, run with the daemon's configuration, lists
// what the Ceph plugin had made: the replicated image, the pool's peer and
// the rbd-mirror process still running on this host. It changes nothing
// (checked with the rbd CLI).
func TestCephLeftovers(t *testing.T) {
	l := needCephLab(t)
	r := startCephEnvironment(t, l, leftoverPool)
	c, p := r.c, r.p
	uuid := uuidFor(uint64(time.Now().UnixNano() % 1e9))
	image := leftoverPool + "/volume-" + uuid
	if out, err := l.rbd(t, "A", "create", image, "--size", "16M"); err != nil {
		t.Fatalf("create source image: %v %s", err, out)
	}
	ref := core.VolumeRef{Env: seedEnv, VolumeID: 7}
	c.put(core.VolumeKey(ref), fmt.Sprintf(`{"source_cluster_storage":{"cluster_id":5,"storage_id":11},"target_cluster_storage":{"cluster_id":6,"storage_id":13},"source_volume":{"cluster_id":5,"volume_id":7,"volume_uuid":"%s"}}`, uuid))
	c.setOp(ref, "start")
	c.waitStateWithin(core.VolumeStatusKey(ref), core.StateMirroring, 120*time.Second)

	// The reset: the daemon and its plugin gone at once (the environment's
	// rbd-mirror outlives them on purpose), then every mirror key deleted.
	var rbdMirrors []int
	for _, pid := range p.hostProcesses() {
		if isRBDMirror(pid) {
			rbdMirrors = append(rbdMirrors, pid)
		} else {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	p.reap()
	if len(rbdMirrors) == 0 {
		t.Fatal("no rbd-mirror ran for the environment")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.cli.Delete(ctx, "mirror", clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}

	// mirrord leftovers with the daemon's configuration file.
	began := time.Now()
	code, out, errOut := r.leftovers(t)
	t.Logf("mirrord leftovers took %s; exit %d; stderr:\n%s", time.Since(began).Round(time.Millisecond), code, errOut)
	if code != 1 {
		t.Fatalf("exit code %d, want 1 (leftovers found); output:\n%s", code, out)
	}
	var got leftoversJSON
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("JSON listing: %v\n%s", err, out)
	}
	t.Logf("leftovers:\n%s", out)
	has := func(what string, match func(leftoverJSON) bool) {
		t.Helper()
		if !slices.ContainsFunc(got.Leftovers, match) {
			t.Errorf("no leftover for %s", what)
		}
	}
	has("the image on the source", func(x leftoverJSON) bool {
		return x.Storage == "clusters/5/storages/11" && strings.Contains(x.Name, "volume-"+uuid)
	})
	has("the image on the target", func(x leftoverJSON) bool {
		return x.Storage == "clusters/6/storages/13" && strings.Contains(x.Name, "volume-"+uuid)
	})
	has("the peer", func(x leftoverJSON) bool { return x.Kind == "pairing" })
	has("the rbd-mirror process", func(x leftoverJSON) bool { return x.Kind == "process" })
	for _, x := range got.Leftovers {
		if x.Remedy == "" || x.Description == "" {
			t.Errorf("leftover %+v: want a description and a remedy", x)
		}
	}
	if strings.Contains(out+errOut, l["CEPH_A_ADMIN_KEY"]) || strings.Contains(out+errOut, l["CEPH_B_ADMIN_KEY"]) {
		t.Fatal("a Ceph key reached the listing")
	}

	// Read only: the image is still mirrored, the peer and rbd-mirror still there.
	if o, err := l.rbd(t, "B", "mirror", "image", "status", image); err != nil {
		t.Errorf("target image no longer mirrored after mirrord leftovers: %v %s", err, o)
	}
	if o, err := l.rbd(t, "B", "mirror", "pool", "info", leftoverPool, "--format", "json"); err != nil || !strings.Contains(o, `"uuid"`) {
		t.Errorf("target pool lost its peer after mirrord leftovers: %v %s", err, o)
	}
	for _, pid := range rbdMirrors {
		if syscall.Kill(pid, 0) != nil {
			t.Errorf("rbd-mirror %d stopped by mirrord leftovers", pid)
		}
	}
	// At cleanup cephStateDir's stops the rbd-mirror, then the pools go
	// with the images and the peer.
}

// cephRun is one test's mirrord process with the Ceph plugin, on a pool of
// its own on both sites, and environment storage.11.13 mirroring there.
type cephRun struct {
	c                *cluster
	p                *mirrordProcess
	pluginDir, state string
}

// startCephEnvironment creates pool on both sites, starts mirrord with the
// Ceph plugin as a process, writes the storages and starts the environment.
func startCephEnvironment(t *testing.T, l cephLab, pool string) cephRun {
	t.Helper()
	r := cephRun{pluginDir: t.TempDir()}
	_ = os.Chmod(r.pluginDir, 0o755)
	buildCephPluginInto(t, r.pluginDir)
	l.createPool(t, pool)
	r.state = cephStateDir(t)
	r.c = newCluster(t)
	r.p = startMirrordProcess(t, r.c, "d1", r.pluginDir, r.state)
	r.c.put("clusters/5/storages/11", `{"cluster_id":5,"storage_id":11,"type":"openstack.storage.type.ceph","backend_name":"ceph"}`)
	r.c.put("clusters/5/storages/11/metadata", l.poolMetadata(t, "A", pool))
	r.c.put("clusters/6/storages/13", `{"cluster_id":6,"storage_id":13,"type":"openstack.storage.type.ceph","backend_name":"ceph"}`)
	r.c.put("clusters/6/storages/13/metadata", l.poolMetadata(t, "B", pool))
	r.c.seedEnvironment("start")
	r.c.waitStateWithin("mirror_environment/storage.11.13/status", core.StateMirroring, 90*time.Second)
	return r
}

// leftovers runs `mirrord leftovers -o json` with the daemon's
// configuration file: its exit code, output and error output.
func (r cephRun) leftovers(t *testing.T) (code int, out, errOut string) {
	t.Helper()
	cfg, _ := yaml.Marshal(map[string]any{
		"etcd":       map[string]any{"endpoints": r.c.etcd.Endpoints()},
		"plugin_dir": r.pluginDir,
		"plugins":    map[string]any{"ceph": map[string]any{"args": []string{"--state-dir", r.state}}},
	})
	cfgFile := filepath.Join(t.TempDir(), "mirrord.yaml")
	if err := os.WriteFile(cfgFile, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	var o, e bytes.Buffer
	code = command(context.Background(), []string{"leftovers", "--config", cfgFile, "-o", "json"}, env(nil), &o, &e)
	return code, o.String(), e.String()
}
