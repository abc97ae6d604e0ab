package cephrbd

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ceph/go-ceph/rados"
	"github.com/ceph/go-ceph/rbd"
)

// DestroyVolume with one cluster unreachable: the lab's mon and OSD of
// that site are frozen (SIGSTOP) for the call and thawed (SIGCONT) after
// it, so the lab is whole again for the tests that follow.

func TestDestroyWithTargetUnreachable(t *testing.T) { testDestroyUnreachable(t, 1) }

func TestDestroyWithSourceUnreachable(t *testing.T) { testDestroyUnreachable(t, 0) }

const destroyDeadline = 20 * time.Second

// testDestroyUnreachable freezes the lab site down (0: source, 1: target)
// and destroys a replaying volume.
func testDestroyUnreachable(t *testing.T, down int) {
	r := newRig(t, modeJournal)
	h := r.newHarness(t)
	startReplaying(t, r, h)
	name := imageName(h.vol)
	downKey, upKey := storageKey(h.env.Target), storageKey(h.env.Source)
	downWord, upWord := "target", "source"
	if down == 0 {
		downKey, upKey = upKey, downKey
		downWord, upWord = upWord, downWord
	}
	// The rig's background work (status polls, an earlier test's loop
	// winding down) may be in a librados call right now: let it end, so
	// that what runs after the freeze is this destroy's alone.
	waitForFast(t, "no librados call of the plugin running before the freeze", 30*time.Second, func() bool { return strayCalls() == 0 })

	f := freezeSite(t, r.lab, down)
	ctx, cancel := context.WithTimeout(context.Background(), destroyDeadline)
	begin := time.Now()
	rep, err := r.be.DestroyVolume(ctx, h.vol)
	elapsed := time.Since(begin)
	cancel()
	t.Logf("DestroyVolume with the %s frozen: %v; %d librados calls left running; report %+v, err %v",
		downWord, elapsed.Round(100*time.Millisecond), strayCalls(), rep, err)

	// Only what the frozen site allows to check while it is frozen.
	if down == 1 {
		if st := mirrorStateOf(t, r.srcIO, name); st != rbd.MirrorImageDisabled {
			t.Errorf("source image %s: mirroring %v after DestroyVolume, want disabled", name, st)
		}
	}
	f.thaw(t)

	if elapsed >= destroyDeadline+5*time.Second {
		t.Errorf("DestroyVolume took %v with the %s unreachable; its deadline was %v", elapsed, downWord, destroyDeadline)
	}
	if err != nil {
		t.Errorf("DestroyVolume: %v; want a report of leftovers, not an error", err)
	}
	var named bool
	for _, l := range rep.Leftovers {
		if strings.Contains(l, downKey) && strings.Contains(l, downWord) {
			named = true
		}
		if down == 1 && strings.Contains(l, upKey) {
			t.Errorf("leftover %q names the reachable %s %s, which was cleaned", l, upWord, upKey)
		}
	}
	if !named {
		t.Errorf("leftovers %q do not name the unreachable %s storage %s", rep.Leftovers, downWord, downKey)
	}
	if down == 0 {
		// The report is true: the source was not reached, so its
		// mirroring is still on.
		if st := mirrorStateOf(t, r.srcIO, name); st != rbd.MirrorImageEnabled {
			t.Errorf("source image %s: mirroring %v after a DestroyVolume that could not reach it; the report says it may still be enabled", name, st)
		}
		// The target copy, maybe the last one, is kept: standalone (it
		// was complete), and recorded where FindLeftovers finds it.
		if st := mirrorStateOf(t, r.dstIO, name); st != rbd.MirrorImageDisabled {
			t.Errorf("target copy %s: mirroring %v after a DestroyVolume without the source, want disabled (kept standalone)", name, st)
		}
		if l, ok, err := readLeftover(t.Context(), r.dstIO, h.env.ID, name); err != nil || !ok || l.Kind != "copy" {
			t.Errorf("leftover record of %s = %+v, %v, %v; want one of kind copy", name, l, ok, err)
		}
	}

	// Both sites back: destroying again cleans everything.
	ctx, cancel = context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	begin = time.Now()
	rep, err = r.be.DestroyVolume(ctx, h.vol)
	t.Logf("DestroyVolume again with both sites up: %v, report %+v, err %v", time.Since(begin).Round(100*time.Millisecond), rep, err)
	if err != nil || len(rep.Leftovers) != 0 {
		t.Fatalf("DestroyVolume with both sites up = %+v, %v; want no leftovers", rep, err)
	}
	// (mirrorStateOf fails if DestroyVolume deleted the source image.)
	if st := mirrorStateOf(t, r.srcIO, name); st != rbd.MirrorImageDisabled {
		t.Errorf("source image %s: mirroring %v after the second DestroyVolume", name, st)
	}
	waitFor(t, "the target copy deleted", 30*time.Second, func() bool {
		img, err := rbd.OpenImageReadOnly(r.dstIO, name, rbd.NoSnapshot)
		if err == nil {
			img.Close()
		}
		return errors.Is(err, rbd.ErrNotFound)
	})
}

// mirrorStateOf reads an image's mirroring state (a missing image fails).
func mirrorStateOf(t *testing.T, io *rados.IOContext, name string) rbd.MirrorImageState {
	t.Helper()
	img, err := rbd.OpenImageReadOnly(io, name, rbd.NoSnapshot)
	if err != nil {
		t.Fatalf("open %s: %v", name, err)
	}
	defer img.Close()
	mi, err := img.GetMirrorImageInfo()
	if err != nil {
		t.Fatalf("mirror info of %s: %v", name, err)
	}
	return mi.State
}

// frozenSite is a lab site whose mon and OSD are stopped with SIGSTOP.
type frozenSite struct {
	site  labSite
	pids  []int
	osdID string
	once  sync.Once
}

// freezeSite stops the mon and the OSD of lab site i; cleanup thaws them
// (if the test did not) and waits until the lab is healthy again.
func freezeSite(t *testing.T, l lab, i int) *frozenSite {
	t.Helper()
	site := l.Sites[i]
	dir := os.Getenv("CEPH_LAB")
	fd, err := os.Open(filepath.Join(dir, "pids"))
	if err != nil {
		t.Fatalf("CEPH_LAB=%s: %v", dir, err)
	}
	defer fd.Close()
	f := &frozenSite{site: site}
	sc := bufio.NewScanner(fd)
	for sc.Scan() {
		w := strings.Fields(sc.Text())
		if len(w) != 3 || w[1] != site.Name || (w[2] != "mon.a" && !strings.HasPrefix(w[2], "osd.")) {
			continue
		}
		pid, err := strconv.Atoi(w[0])
		if err != nil {
			continue
		}
		// Guard against a recycled pid: the daemon was started from the lab.
		cmd, err := os.ReadFile(filepath.Join("/proc", w[0], "cmdline"))
		if err != nil || !strings.Contains(string(cmd), filepath.Clean(dir)+"/") {
			t.Fatalf("CEPH_LAB=%s: %s %s (pid %d) is not running", dir, w[1], w[2], pid)
		}
		f.pids = append(f.pids, pid)
		if id, ok := strings.CutPrefix(w[2], "osd."); ok {
			f.osdID = id
		}
	}
	if len(f.pids) != 2 || f.osdID == "" {
		t.Fatalf("CEPH_LAB=%s: want the mon and the OSD of %s in pids, found pids %v", dir, site.Name, f.pids)
	}
	// Every thaw marks the OSD down; an OSD marked down more than
	// osd_max_markdown_count (5) times in 10 minutes shuts itself down
	// for good, and the tests that freeze the site run in a row.
	if _, err := monCommand(site, `{"prefix": "config set", "who": "osd", "name": "osd_max_markdown_count", "value": "1000"}`); err != nil {
		t.Fatalf("%s: raise osd_max_markdown_count: %v", site.Name, err)
	}
	t.Cleanup(func() { f.thaw(t) })
	for _, pid := range f.pids {
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatalf("SIGSTOP %d: %v", pid, err)
		}
	}
	t.Logf("%s frozen: SIGSTOP to mon and osd %v", site.Name, f.pids)
	return f
}

// thaw continues the site's daemons, waits until both sites answer and
// are HEALTH_OK, and until the librados calls the plugin left running
// have ended (they use the backend's connections, which the rig's
// cleanup shuts down).
//
// An OSD stopped for longer than its PGs' read lease (16 s) may come back
// with PGs "laggy" for good, every op "waiting for readable" (seen here;
// Ceph tracker 80404, ceph/ceph#71663, ceph/ceph-container#1682): only a
// new interval clears them, so thaw marks the OSD down, and it re-peers
// within seconds.
func (f *frozenSite) thaw(t *testing.T) {
	f.once.Do(func() {
		for _, pid := range f.pids {
			if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
				t.Errorf("SIGCONT %d: %v", pid, err)
			}
		}
		begin := time.Now()
		if _, err := monCommand(f.site, `{"prefix": "osd down", "ids": ["`+f.osdID+`"]}`); err != nil {
			t.Errorf("%s: osd down %s: %v", f.site.Name, f.osdID, err)
		}
		time.Sleep(2 * time.Second)
		for _, s := range needLab(t).Sites {
			if err := waitHealthy(s, 120*time.Second); err != nil {
				t.Fatalf("%s not healthy 120 s after the thaw: %v", s.Name, err)
			}
		}
		t.Logf("%s thawed; both sites HEALTH_OK and writable after %v", f.site.Name, time.Since(begin).Round(100*time.Millisecond))
		begin = time.Now()
		deadline := time.Now().Add(60 * time.Second)
		for strayCalls() > 0 {
			if time.Now().After(deadline) {
				t.Errorf("%d librados calls of the plugin still running 60 s after the thaw:\n%s", strayCalls(), strayStacks())
				return
			}
			time.Sleep(200 * time.Millisecond)
		}
		t.Logf("the plugin's background librados calls ended %v after the thaw", time.Since(begin).Round(100*time.Millisecond))
	})
}

// waitHealthy waits until a fresh client of the site gets HEALTH_OK from
// the mon and can write and remove an object in the pool.
func waitHealthy(s labSite, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := probeSite(s)
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(time.Second)
	}
}

// labConn connects to a lab site as its admin, with short timeouts.
func labConn(s labSite) (*rados.Conn, error) {
	conn, err := rados.NewConnWithClusterAndUser(s.Name, "client.admin")
	if err != nil {
		return nil, err
	}
	err = conn.ReadConfigFile(s.Conf)
	for _, o := range [][2]string{{"keyring", s.AdminKeyring}, {"rados_mon_op_timeout", "5"},
		{"rados_osd_op_timeout", "5"}, {"client_mount_timeout", "5"}, {"admin_socket", ""}} {
		if err == nil {
			err = conn.SetConfigOption(o[0], o[1])
		}
	}
	if err == nil {
		err = conn.Connect()
	}
	if err != nil {
		conn.Shutdown()
		return nil, err
	}
	return conn, nil
}

func monCommand(s labSite, cmd string) ([]byte, error) {
	conn, err := labConn(s)
	if err != nil {
		return nil, err
	}
	defer conn.Shutdown()
	out, info, err := conn.MonCommand([]byte(cmd))
	if err != nil {
		return nil, fmt.Errorf("%w: %s", err, info)
	}
	return out, nil
}

func probeSite(s labSite) error {
	conn, err := labConn(s)
	if err != nil {
		return err
	}
	defer conn.Shutdown()
	out, _, err := conn.MonCommand([]byte(`{"prefix": "status", "format": "json"}`))
	if err != nil {
		return err
	}
	var st struct {
		Health struct {
			Status string `json:"status"`
		} `json:"health"`
		OSDMap struct {
			NumOSDs   int `json:"num_osds"`
			NumUpOSDs int `json:"num_up_osds"`
		} `json:"osdmap"`
		PGMap struct {
			PGsByState []struct {
				StateName string `json:"state_name"`
			} `json:"pgs_by_state"`
		} `json:"pgmap"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		return err
	}
	if st.Health.Status != "HEALTH_OK" || st.OSDMap.NumUpOSDs != st.OSDMap.NumOSDs {
		return fmt.Errorf("%s, %d of %d OSDs up", st.Health.Status, st.OSDMap.NumUpOSDs, st.OSDMap.NumOSDs)
	}
	for _, p := range st.PGMap.PGsByState {
		if p.StateName != "active+clean" {
			return fmt.Errorf("PGs %s", p.StateName)
		}
	}
	io, err := conn.OpenIOContext(s.Pool)
	if err != nil {
		return err
	}
	defer io.Destroy()
	// Objects in (most likely) every PG of the pool.
	for i := range 32 {
		obj := fmt.Sprintf("destroy-test-probe-%d-%d", os.Getpid(), i)
		if err := io.WriteFull(obj, []byte("probe")); err != nil {
			return fmt.Errorf("write %s: %w", obj, err)
		}
		if err := io.Delete(obj); err != nil {
			return fmt.Errorf("delete %s: %w", obj, err)
		}
	}
	return nil
}

// strayCalls counts the goroutines running a librados call through call
// (call.go): a call whose caller gave up finishes in the background.
func strayCalls() int { return len(strayGoroutines()) }

// strayStacks are the stacks of those goroutines, for a failure's message.
func strayStacks() string { return strings.Join(strayGoroutines(), "\n\n") }

func strayGoroutines() []string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	// The package's path prefixes its functions in stacks (not "main").
	fn := runtime.FuncForPC(reflect.ValueOf(strayCalls).Pointer()).Name()
	call := strings.TrimSuffix(fn, "strayCalls") + "call["
	var out []string
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, call) {
			out = append(out, g)
		}
	}
	return out
}
