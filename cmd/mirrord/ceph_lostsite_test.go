package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"

	"github.com/cdmdr/mirror/core"
)

// lostSitePool is TestCephProtectionSiteLost's pool, on both sites.
const lostSitePool = "lost"

// TestCephProtectionSiteLost is issue 11's day, through a real daemon:
// the protection site's cluster frozen (its mon and OSD stopped with
// SIGSTOP) while two volumes mirror. A stop ends within a bound and keeps
// a writable target holding the last replicated data; a destroy keeps the
// target too (the last copy); the environment's stop completes on the
// surviving side. With the site back, nothing replicates (no peer, no
// rbd-mirror, the kept copies not mirrored, checked with the rbd CLI),
// and `mirrord leftovers` lists the source images still mirror-enabled.
func TestCephProtectionSiteLost(t *testing.T) {
	l := needCephLab(t)
	r := startCephEnvironment(t, l, lostSitePool)
	c, p, state := r.c, r.p, r.state
	events := c.subscribeEvents(t)

	run := uint64(time.Now().UnixNano() % 1e9)
	vols := []hostVolume{
		{ref: core.VolumeRef{Env: seedEnv, VolumeID: 7}, pool: lostSitePool, source: "A", target: "B", uuid: uuidFor(run*10 + 1)},
		{ref: core.VolumeRef{Env: seedEnv, VolumeID: 8}, pool: lostSitePool, source: "A", target: "B", uuid: uuidFor(run*10 + 2)},
	}
	for _, v := range vols {
		if out, err := l.rbd(t, "A", "create", v.image(), "--size", "16M"); err != nil {
			t.Fatalf("create source image: %v %s", err, out)
		}
		c.put(core.VolumeKey(v.ref), fmt.Sprintf(`{"source_cluster_storage":{"cluster_id":5,"storage_id":11},"target_cluster_storage":{"cluster_id":6,"storage_id":13},"source_volume":{"cluster_id":5,"volume_id":%d,"volume_uuid":"%s"}}`, v.ref.VolumeID, v.uuid))
		c.setOp(v.ref, "start")
	}
	sums := map[uint64]string{}
	for _, v := range vols {
		c.waitStateWithin(core.VolumeStatusKey(v.ref), core.StateMirroring, 120*time.Second)
		l.write(t, v)
		l.waitSameData(t, v, 60*time.Second)
		sums[v.ref.VolumeID] = l.sum(t, "B", v.image())
	}

	thaw := l.freezeSite(t, "a")

	// stop keeps the target, without waiting for the lost source
	stop := vols[0]
	began := time.Now()
	c.setOp(stop.ref, "stop")
	c.waitFor("volume 7's keys deleted with the source frozen", 240*time.Second, func() bool { return c.get(core.VolumeKey(stop.ref)) == "" })
	t.Logf("stop with the source frozen: keys deleted %s after the operation was written", time.Since(began).Round(100*time.Millisecond))
	events.want(t, "cdm-dr.mirror.volume.stop-leftovers-found", core.VolumeKey(stop.ref), "volume-"+stop.uuid)
	if out, err := l.rbd(t, "B", "mirror", "image", "status", stop.image()); err == nil {
		t.Fatalf("the kept copy is still mirrored after the stop: %s", out)
	}
	if got := l.sum(t, "B", stop.image()); got != sums[7] {
		t.Fatal("the kept copy does not hold the last replicated data")
	}
	if out, err := l.rbd(t, "B", "bench", "--io-type", "write", "--io-total", "64K", stop.image()); err != nil {
		t.Fatalf("the kept copy is not writable: %v %s", err, out)
	}
	written := l.sum(t, "B", stop.image())

	// destroy keeps the target: with the source unread it is the last copy
	destroy := vols[1]
	began = time.Now()
	c.setOp(destroy.ref, "destroy")
	c.waitFor("volume 8's keys deleted with the source frozen", 240*time.Second, func() bool { return c.get(core.VolumeKey(destroy.ref)) == "" })
	t.Logf("destroy with the source frozen: keys deleted %s after the operation was written", time.Since(began).Round(100*time.Millisecond))
	events.want(t, "cdm-dr.mirror.volume.destroy-leftovers-found", core.VolumeKey(destroy.ref), "volume-"+destroy.uuid)
	if got, err := l.trySum("B", destroy.image()); err != nil || got != sums[8] {
		t.Fatalf("destroy with the source frozen did not keep the target copy with its data (%v)", err)
	}

	// the environment's stop completes on the surviving side
	began = time.Now()
	c.seedEnvironment("stop")
	c.waitFor("environment keys deleted with the source frozen", 240*time.Second, func() bool { return c.get("mirror_environment/storage.11.13") == "" })
	t.Logf("environment stop with the source frozen: keys deleted %s after the operation was written", time.Since(began).Round(100*time.Millisecond))
	events.want(t, "cdm-dr.mirror.environment.stop-leftovers-found", "mirror_environment/storage.11.13", "")
	if out, err := l.rbd(t, "B", "mirror", "pool", "info", lostSitePool, "--format", "json"); err != nil || strings.Contains(out, `"uuid"`) {
		t.Fatalf("the target pool still has a peer after the environment's stop: %v %s", err, out)
	}
	if rm := slices.DeleteFunc(processesMentioning(state), func(pid int) bool { return !isRBDMirror(pid) }); len(rm) > 0 {
		t.Fatalf("rbd-mirror %v still runs after the environment's stop", rm)
	}

	// The site comes back: nothing replicates into the kept copies.
	thaw()
	for _, v := range vols {
		if out, err := l.rbd(t, "B", "mirror", "image", "status", v.image()); err == nil {
			t.Errorf("the kept copy of volume %d is mirrored again with the source back: %s", v.ref.VolumeID, out)
		}
		if out, err := l.rbd(t, "A", "info", v.image()); err != nil || !strings.Contains(out, "mirroring primary: true") {
			t.Errorf("source of volume %d: want it still a mirror-enabled primary, the leftover to clean: %v %s", v.ref.VolumeID, err, out)
		}
	}
	if got := l.sum(t, "B", stop.image()); got != written {
		t.Error("the kept copy of volume 7 changed once the source was back")
	}
	p.stop(t)

	// mirrord leftovers lists the source images still mirror-enabled.
	code, out, errOut := r.leftovers(t)
	if code != 1 {
		t.Fatalf("mirrord leftovers: exit %d, want 1 (leftovers found)\n%s\n%s", code, out, errOut)
	}
	var got leftoversJSON
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("JSON listing: %v\n%s", err, out)
	}
	for _, v := range vols {
		if !slices.ContainsFunc(got.Leftovers, func(x leftoverJSON) bool {
			return x.Storage == "clusters/5/storages/11" && strings.Contains(x.Name, "volume-"+v.uuid) && strings.Contains(x.Remedy, "mirror image disable")
		}) {
			t.Errorf("mirrord leftovers does not list the source image of volume %d with its remedy:\n%s", v.ref.VolumeID, out)
		}
	}
	for _, v := range vols {
		_, _ = l.rbd(t, "A", "mirror", "image", "disable", "--force", v.image())
	}
}

// freezeSite stops the mon and the OSD of a lab site ("a" or "b") with
// SIGSTOP: the site is silent, as a lost one is, until thaw (also run at
// cleanup).
func (l cephLab) freezeSite(t testing.TB, site string) (thaw func()) {
	t.Helper()
	return l.freeze(t, site, false)
}

// freezeMon stops only the mon of a lab site with SIGSTOP, until thaw
// (also run at cleanup): clients reach no mon, while the OSD still
// serves the sessions they hold.
func (l cephLab) freezeMon(t testing.TB, site string) (thaw func()) {
	t.Helper()
	return l.freeze(t, site, true)
}

func (l cephLab) freeze(t testing.TB, site string, monOnly bool) (thaw func()) {
	t.Helper()
	f, err := os.Open(filepath.Join(os.Getenv("CEPH_LAB"), "pids"))
	if err != nil {
		t.Fatalf("the lab's pids: %v", err)
	}
	defer f.Close()
	var pids []int
	osd, mon := "", 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) != 3 || fields[1] != "site-"+site || (fields[2] != "mon.a" && !strings.HasPrefix(fields[2], "osd.")) {
			continue
		}
		if pid, err := strconv.Atoi(fields[0]); err == nil {
			pids = append(pids, pid)
			if fields[2] == "mon.a" {
				mon = pid
			}
		}
		if id, ok := strings.CutPrefix(fields[2], "osd."); ok {
			osd = id
		}
	}
	if len(pids) != 2 || osd == "" {
		t.Fatalf("want the mon and the OSD of site %s in the lab's pids, found %v", site, pids)
	}
	if monOnly {
		pids = []int{mon}
	}
	name := strings.ToUpper(site)
	// An OSD marked down more than osd_max_markdown_count times in ten
	// minutes stops for good; the Ceph plugin's tests freeze it often.
	if out, err := l.ceph(t, name, "config", "set", "osd", "osd_max_markdown_count", "1000"); err != nil {
		t.Fatalf("raise osd_max_markdown_count on site %s: %v %s", site, err, out)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatalf("freeze site %s: %v", site, err)
		}
	}
	thawed := false
	thaw = func() {
		if thawed {
			return
		}
		thawed = true
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGCONT)
		}
		// An OSD stopped longer than its PGs' read lease may come back
		// with them laggy for good: a new interval clears them.
		if out, err := l.ceph(t, name, "osd", "down", osd); !monOnly && err != nil {
			t.Errorf("osd down %s on site %s after the thaw: %v %s", osd, site, err, out)
		}
		deadline := time.Now().Add(120 * time.Second)
		for {
			out, err := l.ceph(t, name, "health")
			if err == nil && strings.HasPrefix(out, "HEALTH_OK") {
				if _, err := l.rbd(t, name, "ls", lostSitePool); err == nil {
					return
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("site %s not healthy 120 s after the thaw: %v %s", site, err, out)
			}
			time.Sleep(time.Second)
		}
	}
	t.Cleanup(thaw)
	return thaw
}

// eventLog collects the daemons' events from NATS.
type eventLog struct {
	ch chan []byte
	// seen keeps every event read, for the failure message.
	seen []string
}

// subscribeEvents listens to the daemons' event subject.
func (c *cluster) subscribeEvents(t testing.TB) *eventLog {
	t.Helper()
	nc, err := natsgo.Connect(c.nats.URL())
	if err != nil {
		t.Fatalf("connect to nats: %v", err)
	}
	t.Cleanup(nc.Close)
	e := &eventLog{ch: make(chan []byte, 1024)}
	if _, err := nc.Subscribe("cdm.dr.mirror.event", func(m *natsgo.Msg) {
		select {
		case e.ch <- m.Data:
		default:
		}
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return e
}

// want waits for an event with code about key whose message holds text.
func (e *eventLog) want(t testing.TB, code, key, text string) {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case data := <-e.ch:
			var ev struct{ Code, Key, Message string }
			_ = json.Unmarshal(data, &ev)
			e.seen = append(e.seen, string(data))
			if ev.Code == code && ev.Key == key && strings.Contains(ev.Message, text) {
				return
			}
		case <-deadline:
			t.Fatalf("no event %s for %s mentioning %q; seen:\n%s", code, key, text, strings.Join(e.seen, "\n"))
		}
	}
}
