package main

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cdmdr/mirror/core"
)

// cephLab is test/ceph/cluster.sh's DIR/lab.json.
type cephLab map[string]string

// needCephLab reads the lab that `make test` brings up; without CEPH_LAB
// (a plain `go test` on a machine with no lab) the Ceph tests are skipped.
func needCephLab(t testing.TB) cephLab {
	t.Helper()
	dir := os.Getenv("CEPH_LAB")
	if dir == "" {
		t.Skip("CEPH_LAB is not set: no Ceph lab (make test brings one up)")
	}
	data, err := os.ReadFile(filepath.Join(dir, "lab.json"))
	if err != nil {
		t.Fatalf("CEPH_LAB=%s: %v", dir, err)
	}
	var l cephLab
	if err := json.Unmarshal(data, &l); err != nil {
		t.Fatalf("CEPH_LAB=%s: lab.json: %v", dir, err)
	}
	return l
}

// rbd runs the rbd CLI on a site ("A" or "B") of the lab, to check the
// clusters' real state independently of the plugin.
func (l cephLab) rbd(t testing.TB, site string, args ...string) (string, error) {
	t.Helper()
	full := append([]string{"--cluster", l["CEPH_"+site+"_CLUSTER"], "-c", l["CEPH_"+site+"_CONF"],
		"--keyring", l["CEPH_"+site+"_KEYRING"], "-n", "client.admin"}, args...)
	out, err := exec.Command("rbd", full...).CombinedOutput()
	return string(out), err
}

func (l cephLab) metadata(t testing.TB, site string) string {
	t.Helper()
	conf, err := os.ReadFile(l["CEPH_"+site+"_CONF"])
	if err != nil {
		t.Fatal(err)
	}
	m, _ := json.Marshal(map[string]string{"pool": l["CEPH_POOL"], "conf": string(conf),
		"client": "admin", "keyring": l["CEPH_"+site+"_ADMIN_KEY"],
		"admin_client": "admin", "admin_keyring": l["CEPH_"+site+"_ADMIN_KEY"],
		// The lab's OSDs keep data in RAM: no day in the trash for the
		// replicas rbd-mirror deletes.
		"mirror_delete_delay": "0"})
	return string(m)
}

// installCephPlugin builds plugins/ceph and installs it into a plugin
// directory behind a script that gives it its state directory.
func installCephPlugin(t testing.TB, stateDir string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "ceph-plugin")
	cmd := exec.Command("go", "build", "-tags", "pacific", "-o", bin, ".")
	cmd.Dir = filepath.Join("..", "..", "plugins", "ceph")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the Ceph plugin: %v\n%s", err, out)
	}
	dir := t.TempDir()
	_ = os.Chmod(dir, 0o755)
	script := fmt.Sprintf("#!/bin/sh\nexec %s --state-dir %s\n", bin, stateDir)
	if err := os.WriteFile(filepath.Join(dir, "ceph"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func (c *cluster) waitStateWithin(key string, s core.State, within time.Duration) core.Status {
	c.t.Helper()
	var st core.Status
	c.waitFor(key+" = "+string(s), within, func() bool {
		var ok bool
		st, ok = c.status(key)
		return ok && st.StateCode == s
	})
	return st
}

// Every operation end to end through mirrord on the real clusters: etcd
// keys in, the Ceph plugin as a process, statuses out, each step checked
// against the clusters with the rbd CLI.
func TestCephThroughMirrord(t *testing.T) {
	l := needCephLab(t)
	state, err := os.MkdirTemp("/tmp", "mrd") // short: admin socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// The plugin's rbd-mirror outlives the plugin on purpose (replication
		// goes on while mirrord restarts); a test stops what it started.
		_ = exec.Command("pkill", "-f", state).Run()
		_ = os.RemoveAll(state)
	})
	c := newCluster(t)
	d := c.startWithPlugins("d1", installCephPlugin(t, state))

	c.put("clusters/5/storages/11", `{"cluster_id":5,"storage_id":11,"type":"openstack.storage.type.ceph","backend_name":"ceph"}`)
	c.put("clusters/5/storages/11/metadata", l.metadata(t, "A"))
	c.put("clusters/6/storages/13", `{"cluster_id":6,"storage_id":13,"type":"openstack.storage.type.ceph","backend_name":"ceph"}`)
	c.put("clusters/6/storages/13/metadata", l.metadata(t, "B"))
	c.seedEnvironment("start")
	c.waitStateWithin("mirror_environment/storage.11.13/status", core.StateMirroring, 90*time.Second)
	var info struct {
		Mode  string `json:"mode"`
		Peers []struct {
			SiteName  string `json:"site_name"`
			Direction string `json:"direction"`
		} `json:"peers"`
	}
	out, err := l.rbd(t, "B", "mirror", "pool", "info", l["CEPH_POOL"], "--format", "json")
	if err != nil || json.Unmarshal([]byte(out), &info) != nil || info.Mode != "image" || len(info.Peers) != 1 || info.Peers[0].Direction != "rx-only" {
		t.Fatalf("target pool after environment start: want image mode and one rx-only peer: %v %s", err, out)
	}

	run := time.Now().UnixNano() % 1e9 // fresh images each run: a failed run may leave some
	vols := map[uint64]string{7: uuidFor(uint64(run*10 + 1)), 8: uuidFor(uint64(run*10 + 2)), 9: uuidFor(uint64(run*10 + 3))}
	for id, uuid := range vols {
		if out, err := l.rbd(t, "A", "create", l["CEPH_POOL"]+"/volume-"+uuid, "--size", "64M"); err != nil {
			t.Fatalf("create source image: %v %s", err, out)
		}
		ref := core.VolumeRef{Env: seedEnv, VolumeID: id}
		c.put(core.VolumeKey(ref), fmt.Sprintf(`{"source_cluster_storage":{"cluster_id":5,"storage_id":11},"target_cluster_storage":{"cluster_id":6,"storage_id":13},"source_volume":{"cluster_id":5,"volume_id":%d,"volume_uuid":"%s"},"source_agent":{"ip":"192.168.137.101","port":8080}}`, id, uuid))
		c.setOp(ref, "start")
	}
	for id, uuid := range vols {
		ref := core.VolumeRef{Env: seedEnv, VolumeID: id}
		c.waitStateWithin(core.VolumeStatusKey(ref), core.StateMirroring, 120*time.Second)
		if out, err := l.rbd(t, "B", "info", l["CEPH_POOL"]+"/volume-"+uuid); err != nil || !strings.Contains(out, "mirroring primary: false") {
			t.Fatalf("target image of volume %d: %v %s", id, err, out)
		}
	}

	// pause and resume volume 7
	v7 := core.VolumeRef{Env: seedEnv, VolumeID: 7}
	c.setOp(v7, "pause")
	c.waitStateWithin(core.VolumeStatusKey(v7), core.StatePaused, 90*time.Second)
	c.setOp(v7, "resume")
	c.waitStateWithin(core.VolumeStatusKey(v7), core.StateMirroring, 120*time.Second)

	// stop keeps the target as a plain writable image
	c.setOp(v7, "stop")
	c.waitFor("volume 7's keys deleted", 120*time.Second, func() bool { return c.get(core.VolumeKey(v7)) == "" })
	if out, err := l.rbd(t, "B", "info", l["CEPH_POOL"]+"/volume-"+vols[7], "--format", "json"); err != nil || strings.Contains(out, `"primary":false`) {
		t.Fatalf("target after stop: %v %s", err, out)
	}
	if out, err := l.rbd(t, "B", "mirror", "image", "status", l["CEPH_POOL"]+"/volume-"+vols[7]); err == nil {
		t.Fatalf("target still mirrored after stop: %s", out)
	}
	if out, err := l.rbd(t, "B", "bench", "--io-type", "write", "--io-total", "4M", l["CEPH_POOL"]+"/volume-"+vols[7]); err != nil {
		t.Fatalf("the kept target is not writable: %v %s", err, out)
	}

	// stop_and_delete removes the target
	v8 := core.VolumeRef{Env: seedEnv, VolumeID: 8}
	c.setOp(v8, "stop_and_delete")
	c.waitFor("volume 8's keys deleted", 120*time.Second, func() bool { return c.get(core.VolumeKey(v8)) == "" })
	if out, err := l.rbd(t, "B", "info", l["CEPH_POOL"]+"/volume-"+vols[8]); err == nil {
		t.Fatalf("target of volume 8 still exists after stop_and_delete: %s", out)
	}

	// destroy removes the keys whatever happens
	v9 := core.VolumeRef{Env: seedEnv, VolumeID: 9}
	c.setOp(v9, "destroy")
	c.waitFor("volume 9's keys deleted", 120*time.Second, func() bool { return c.get(core.VolumeKey(v9)) == "" })

	// the environment stops once no volume is left, removing the peer
	c.seedEnvironment("stop")
	c.waitFor("environment keys deleted", 120*time.Second, func() bool { return c.get("mirror_environment/storage.11.13") == "" })
	if out, err := l.rbd(t, "B", "mirror", "pool", "info", l["CEPH_POOL"], "--format", "json"); err != nil || strings.Contains(out, `"uuid"`) {
		t.Fatalf("target pool still has a peer after environment stop: %v %s", err, out)
	}
	for _, uuid := range vols {
		for _, site := range []string{"A", "B"} {
			_, _ = l.rbd(t, site, "snap", "purge", l["CEPH_POOL"]+"/volume-"+uuid)
			_, _ = l.rbd(t, site, "rm", l["CEPH_POOL"]+"/volume-"+uuid)
		}
	}
	d.stop()

	logs := d.logs.String()
	for _, k := range []string{l["CEPH_A_ADMIN_KEY"], l["CEPH_B_ADMIN_KEY"]} {
		if strings.Contains(logs, k) {
			t.Fatal("a Ceph key reached mirrord's logs")
		}
	}
	_ = filepath.WalkDir(state, func(p string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() {
			if fi, _ := e.Info(); fi != nil && fi.Mode().Perm()&0o077 != 0 && fi.Mode().IsRegular() {
				t.Errorf("%s is %v, want private", p, fi.Mode().Perm())
			}
		}
		return nil
	})
}
