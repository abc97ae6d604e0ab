package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cdmdr/mirror/core"
)

// BenchmarkCephStartToMirroring measures, on the lab's real clusters, the
// time from putting operation start for a volume whose image holds 1 GiB
// of data to mirrord writing status mirroring, beside the same steps run
// by hand with the rbd CLI (features, image enable, then polling
// rbd-mirror until it replays) in the same run.
//
//	make ceph-lab-up && CEPH_LAB=$PWD/var/ceph-lab go test -run '^$' -bench CephStartToMirroring -benchtime 1x ./cmd/mirrord/
func BenchmarkCephStartToMirroring(b *testing.B) {
	l := needCephLab(b)
	size := "1G"
	if v := os.Getenv("MIRROR_BENCH_IMAGE_SIZE"); v != "" {
		size = v
	}
	pool := l["CEPH_POOL"]
	fill := func(image string) {
		b.Helper()
		if out, err := l.rbd(b, "A", "create", pool+"/"+image, "--size", size); err != nil {
			b.Fatalf("create: %v %s", err, out)
		}
		if out, err := l.rbd(b, "A", "bench", "--io-type", "write", "--io-size", "4M", "--io-total", size, "--io-pattern", "seq", pool+"/"+image); err != nil {
			b.Fatalf("fill: %v %s", err, out)
		}
	}
	drop := func(image string) {
		for _, site := range []string{"A", "B"} {
			_, _ = l.rbd(b, site, "snap", "purge", pool+"/"+image)
			_, _ = l.rbd(b, site, "rm", pool+"/"+image)
		}
	}

	// Through mirrord: the Ceph plugin as a process, etcd keys in, status out.
	state, err := os.MkdirTemp("/tmp", "mrb")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		_ = exec.Command("pkill", "-f", state).Run()
		_ = os.RemoveAll(state)
	})
	c := newClusterTB(b)
	d := c.startWithPlugins("bench", installCephPlugin(b, state))
	c.put("clusters/5/storages/11", `{"cluster_id":5,"storage_id":11,"type":"openstack.storage.type.ceph","backend_name":"ceph"}`)
	c.put("clusters/5/storages/11/metadata", l.metadata(b, "A"))
	c.put("clusters/6/storages/13", `{"cluster_id":6,"storage_id":13,"type":"openstack.storage.type.ceph","backend_name":"ceph"}`)
	c.put("clusters/6/storages/13/metadata", l.metadata(b, "B"))
	c.seedEnvironment("start")
	c.waitStateWithin("mirror_environment/storage.11.13/status", core.StateMirroring, 90*time.Second)

	uuid := uuidFor(uint64(time.Now().UnixNano() % 1e9))
	image := "volume-" + uuid
	fill(image)
	ref := core.VolumeRef{Env: seedEnv, VolumeID: 7}
	c.put(core.VolumeKey(ref), fmt.Sprintf(`{"source_cluster_storage":{"cluster_id":5,"storage_id":11},"target_cluster_storage":{"cluster_id":6,"storage_id":13},"source_volume":{"cluster_id":5,"volume_id":7,"volume_uuid":"%s"},"source_agent":{"ip":"192.168.137.101","port":8080}}`, uuid))
	start := time.Now()
	c.setOp(ref, "start")
	c.waitStateWithin(core.VolumeStatusKey(ref), core.StateMirroring, 10*time.Minute)
	viaMirrord := time.Since(start)
	c.setOp(ref, "stop_and_delete")
	c.waitFor("volume keys deleted", 5*time.Minute, func() bool { return c.get(core.VolumeKey(ref)) == "" })
	c.seedEnvironment("stop")
	c.waitFor("environment stopped", 5*time.Minute, func() bool { return c.get("mirror_environment/storage.11.13") == "" })
	d.stop()
	drop(image)

	// By hand: the lab's own peer and rbd-mirror (cluster.sh mirror), then
	// the per-image steps an operator runs.
	script := filepath.Join("..", "..", "test", "ceph", "cluster.sh")
	if out, err := exec.Command("bash", script, "mirror", os.Getenv("CEPH_LAB")).CombinedOutput(); err != nil {
		b.Fatalf("cluster.sh mirror: %v %s", err, out)
	}
	// Leave the plugin the only rbd-mirror on the target again.
	b.Cleanup(func() {
		if out, err := exec.Command("bash", script, "unmirror", os.Getenv("CEPH_LAB")).CombinedOutput(); err != nil {
			b.Errorf("cluster.sh unmirror: %v %s", err, out)
		}
	})
	image2 := "volume-" + uuidFor(uint64(time.Now().UnixNano()%1e9+1))
	fill(image2)
	asok := filepath.Join(os.Getenv("CEPH_LAB"), "site-b", "run", "site-b-client.rbd-mirror.local.asok")
	start = time.Now()
	if out, err := l.rbd(b, "A", "feature", "enable", pool+"/"+image2, "exclusive-lock,journaling"); err != nil && !strings.Contains(out, "already enabled") {
		b.Fatalf("feature enable: %v %s", err, out)
	}
	if out, err := l.rbd(b, "A", "mirror", "image", "enable", pool+"/"+image2, "journal"); err != nil {
		b.Fatalf("mirror image enable: %v %s", err, out)
	}
	deadline := time.Now().Add(10 * time.Minute)
	for {
		out, _ := exec.Command("ceph", "--admin-daemon", asok, "rbd", "mirror", "status", pool+"/"+image2).Output()
		var st struct {
			State string `json:"state"`
		}
		if json.Unmarshal(out, &st) == nil && st.State == "Replaying" {
			if info, err := l.rbd(b, "B", "info", pool+"/"+image2); err == nil && strings.Contains(info, "mirroring primary: false") {
				break
			}
		}
		if time.Now().After(deadline) {
			b.Fatalf("by hand: not replaying within 10 minutes: %s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	byHand := time.Since(start)
	_, _ = l.rbd(b, "A", "mirror", "image", "disable", pool+"/"+image2)
	drop(image2)

	b.ReportMetric(viaMirrord.Seconds(), "s_via_mirrord")
	b.ReportMetric(byHand.Seconds(), "s_by_hand")
	b.Logf("%s image: start → mirroring through mirrord %s; the same steps by hand %s", size, viaMirrord.Round(10*time.Millisecond), byHand.Round(10*time.Millisecond))
}
