package cephrbd

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ceph/go-ceph/rados"
	"github.com/ceph/go-ceph/rbd"

	"github.com/cdmdr/mirror/plugins/sdk"
	"github.com/cdmdr/mirror/plugins/sdk/plugintest"
)

// labSite is one cluster of the lab as $CEPH_LAB/lab.json describes it.
type labSite struct {
	Name         string `json:"name"`
	Conf         string `json:"conf"`
	AdminKeyring string `json:"admin_keyring"`
	FSID         string `json:"fsid"`
	Pool         string `json:"pool"`
}

type lab struct {
	// Sites are site-a and site-b, the pair most tests use.
	Sites []labSite `json:"sites"`
	// C is site-c, when the lab has one (siteC).
	C labSite `json:"-"`
}

// needLab skips without CEPH_LAB and fails when CEPH_LAB is set but the
// lab is unusable.
func needLab(t testing.TB) lab {
	t.Helper()
	dir := os.Getenv("CEPH_LAB")
	if dir == "" {
		t.Skip("CEPH_LAB is not set: no Ceph lab to test against")
	}
	data, err := os.ReadFile(filepath.Join(dir, "lab.json"))
	if err != nil {
		t.Fatalf("CEPH_LAB=%s: %v", dir, err)
	}
	var l lab
	// test/ceph/cluster.sh writes a flat object of CEPH_* variables
	// (CEPH_POOL, CEPH_A_CONF, CEPH_A_KEYRING, CEPH_A_FSID, ...); an
	// older hand-made lab wrote {"sites": [...]}.
	var flat map[string]any
	if err := json.Unmarshal(data, &flat); err != nil {
		t.Fatalf("CEPH_LAB=%s: lab.json: %v", dir, err)
	}
	if _, ok := flat["sites"]; ok {
		if err := json.Unmarshal(data, &l); err != nil {
			t.Fatalf("CEPH_LAB=%s: lab.json: %v", dir, err)
		}
	} else {
		str := func(k string) string { v, _ := flat[k].(string); return v }
		site := func(s string) labSite {
			return labSite{
				Name: str("CEPH_" + s + "_CLUSTER"), Conf: str("CEPH_" + s + "_CONF"),
				AdminKeyring: str("CEPH_" + s + "_KEYRING"), FSID: str("CEPH_" + s + "_FSID"), Pool: str("CEPH_POOL"),
			}
		}
		l.Sites = []labSite{site("A"), site("B")}
		if str("CEPH_C_CONF") != "" { // a three-site lab (cluster.sh up with IP_C)
			l.C = site("C")
		}
	}
	if len(l.Sites) < 2 || l.Sites[0].Conf == "" || l.Sites[1].Conf == "" || l.Sites[0].AdminKeyring == "" {
		t.Fatalf("CEPH_LAB=%s: lab.json does not describe two sites with conf and keyring", dir)
	}
	for i := range l.Sites {
		if l.Sites[i].Pool == "" {
			l.Sites[i].Pool = "volumes"
		}
	}
	return l
}

// siteC is the lab's third site, which test/ceph/cluster.sh builds when
// IP_C is set (make test sets it); a test that needs it skips on a
// two-site lab.
func (l lab) siteC(t testing.TB) labSite {
	t.Helper()
	if l.C.Conf == "" {
		t.Skip("the Ceph lab has no site-c: bring it up with IP_C set (test/ceph/cluster.sh up DIR with IP_C=127.0.0.3, as make test does)")
	}
	return l.C
}

var keyPattern = regexp.MustCompile(`key\s*=\s*(\S+)`)

// metadata builds a storage's metadata from a lab site.
func (s labSite) metadata(t testing.TB, extra map[string]string) json.RawMessage {
	t.Helper()
	conf, err := os.ReadFile(s.Conf)
	if err != nil {
		t.Fatal(err)
	}
	kr, err := os.ReadFile(s.AdminKeyring)
	if err != nil {
		t.Fatal(err)
	}
	m := keyPattern.FindSubmatch(kr)
	if m == nil {
		t.Fatalf("no key in %s", s.AdminKeyring)
	}
	md := map[string]string{
		"pool": s.Pool, "conf": string(conf), "client": "admin", "keyring": string(m[1]),
		"admin_client": "admin", "admin_keyring": string(m[1]),
		// The lab's OSDs keep data in RAM: replicas rbd-mirror deletes
		// must not wait a day in the trash (TestDeleteDelayParksReplica
		// sets its own delay).
		"mirror_delete_delay": "0",
	}
	for k, v := range extra {
		md[k] = v
	}
	b, _ := json.Marshal(md)
	return b
}

// connect opens a lab site's pool as its admin, with go-ceph.
func (s labSite) connect(t testing.TB) *rados.IOContext {
	t.Helper()
	conn, err := rados.NewConnWithClusterAndUser(s.Name, "client.admin")
	if err != nil {
		t.Fatal(err)
	}
	if err := conn.ReadConfigFile(s.Conf); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetConfigOption("keyring", s.AdminKeyring)
	_ = conn.SetConfigOption("rados_mon_op_timeout", "10")
	_ = conn.SetConfigOption("client_mount_timeout", "10")
	_ = conn.SetConfigOption("admin_socket", "")
	if err := conn.Connect(); err != nil {
		t.Fatalf("CEPH_LAB: connect to %s: %v", s.Name, err)
	}
	io, err := conn.OpenIOContext(s.Pool)
	if err != nil {
		t.Fatalf("CEPH_LAB: open pool %s on %s: %v", s.Pool, s.Name, err)
	}
	t.Cleanup(func() { io.Destroy(); conn.Shutdown() })
	return io
}

// logBuffer collects the plugin's log to check that no secret is in it.
type logBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// labRig is one backend against the lab, shared by the subtests.
type labRig struct {
	lab      lab
	be       *Backend
	stateDir string
	logs     *logBuffer
	srcIO    *rados.IOContext
	dstIO    *rados.IOContext
	mode     string
}

func newRig(t testing.TB, mode string) *labRig {
	l := needLab(t)
	dir, err := os.MkdirTemp("/tmp", "cph")
	if err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	r := &labRig{lab: l, stateDir: dir, logs: logs, mode: mode,
		be:    New(sdkLoggerTo(logs), filepath.Join(dir, "state")),
		srcIO: l.Sites[0].connect(t), dstIO: l.Sites[1].connect(t)}
	// rbd-mirror has stalled in rare runs saying nothing at Ceph's
	// default level; at 10 it logs about 10 KiB a second, kept (below)
	// only when the test fails.
	r.be.rbdMirrorDebug = "10"
	t.Cleanup(func() {
		r.be.Close()
		if !t.Failed() {
			os.RemoveAll(dir)
		} else {
			t.Logf("state kept in %s", dir)
		}
	})
	return r
}

func (r *labRig) env(t testing.TB) sdk.Environment {
	extra := map[string]string{"mirror_mode": r.mode}
	return sdk.Environment{
		ID:     "storage.11.13",
		Source: sdk.Storage{ClusterID: 5, StorageID: 11, Type: StorageType, BackendName: "ceph", Metadata: r.lab.Sites[0].metadata(t, extra)},
		Target: sdk.Storage{ClusterID: 6, StorageID: 13, Type: StorageType, BackendName: "ceph", Metadata: r.lab.Sites[1].metadata(t, extra)},
	}
}

// prepareEnvironments prepares envs. Each is torn down when the test ends,
// after what the test registers later (its volumes) is cleaned up; the
// teardown is registered first, so a prepare that fails halfway is undone.
func (r *labRig) prepareEnvironments(t testing.TB, envs ...sdk.Environment) {
	t.Helper()
	for _, env := range envs {
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			if err := reportless(r.be.TeardownEnvironment(ctx, env, false)); err != nil {
				t.Errorf("cleanup: teardown %s: %v", env.ID, err)
			}
		})
		if err := r.be.PrepareEnvironment(t.Context(), env); err != nil {
			t.Fatalf("PrepareEnvironment %s: %v", env.ID, err)
		}
	}
}

// destroyAtEnd destroys v when the test ends, before the environment
// teardowns registered earlier.
func (r *labRig) destroyAtEnd(t testing.TB, v sdk.Volume) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		_, _ = r.be.DestroyVolume(ctx, v)
	})
}

type labHarness struct {
	r    *labRig
	env  sdk.Environment
	vol  sdk.Volume
	snap sdk.Snapshot
	// remote, when set, is the backend under test instead of r.be: the
	// plugin executable, reached over gRPC.
	remote sdk.Backend
	// stateDir is the state directory of the backend under test.
	stateDir string
}

// newHarness creates a fresh source image with a snapshot.
func (r *labRig) newHarness(t testing.TB) *labHarness {
	env := r.env(t)
	volUUID, snapUUID := plugintest.NewUUID(), plugintest.NewUUID()
	name := "volume-" + volUUID
	if err := rbd.CreateImage(r.srcIO, name, 16<<20, rbd.NewRbdImageOptions()); err != nil {
		t.Fatalf("create %s: %v", name, err)
	}
	img, err := rbd.OpenImage(r.srcIO, name, rbd.NoSnapshot)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := img.WriteAt([]byte(strings.Repeat("mirror", 1000)), 0); err != nil {
		t.Fatal(err)
	}
	if _, err := img.CreateSnapshot("snapshot-" + snapUUID); err != nil {
		t.Fatal(err)
	}
	img.Close()
	t.Cleanup(func() {
		for _, io := range []*rados.IOContext{r.srcIO, r.dstIO} {
			removeImageForTest(io, name)
		}
	})
	vol := sdk.Volume{Environment: env, ClusterID: 5, VolumeID: 7, VolumeUUID: volUUID}
	return &labHarness{r: r, env: env, vol: vol, stateDir: r.be.stateDir,
		snap: sdk.Snapshot{Volume: vol, SnapshotID: 21, SnapshotUUID: snapUUID, SnapshotName: "s"}}
}

func removeImageForTest(io *rados.IOContext, name string) {
	img, err := rbd.OpenImage(io, name, rbd.NoSnapshot)
	if err != nil {
		return
	}
	if mi, err := img.GetMirrorImageInfo(); err == nil && mi.State != rbd.MirrorImageDisabled {
		_ = img.MirrorDisable(true)
	}
	snaps, _ := img.GetSnapshotNames()
	for _, s := range snaps {
		sn := img.GetSnapshot(s.Name)
		_ = sn.Unprotect()
		_ = sn.Remove()
	}
	img.Close()
	_ = rbd.RemoveImage(io, name)
}

func (h *labHarness) Backend() sdk.Backend {
	if h.remote != nil {
		return h.remote
	}
	return h.r.be
}
func (h *labHarness) Environment() sdk.Environment { return h.env }
func (h *labHarness) Volume() sdk.Volume           { return h.vol }
func (h *labHarness) Snapshot() sdk.Snapshot       { return h.snap }
func (h *labHarness) Timeout() time.Duration       { return 90 * time.Second }

func TestConformanceJournal(t *testing.T) {
	r := newRig(t, modeJournal)
	plugintest.Run(t, func(t *testing.T) plugintest.Harness { return r.newHarness(t) })
	r.checkNoSecrets(t)
}

// checkNoSecrets: no key of the lab in the plugin's log; every state
// file private.
func (r *labRig) checkNoSecrets(t *testing.T) {
	t.Helper()
	logs := r.logs.String()
	for _, s := range append(r.lab.Sites, r.lab.C) {
		if s.AdminKeyring == "" {
			continue
		}
		kr, _ := os.ReadFile(s.AdminKeyring)
		if m := keyPattern.FindSubmatch(kr); m != nil && strings.Contains(logs, string(m[1])) {
			t.Errorf("the plugin's log holds the admin key of %s", s.Name)
		}
	}
	checkPrivate(t, r.be.stateDir)
}

func checkPrivate(t *testing.T, dir string) {
	t.Helper()
	_ = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		switch {
		case fi.IsDir() && fi.Mode().Perm() != 0o700:
			t.Errorf("directory %s has mode %o, want 0700", p, fi.Mode().Perm())
		case fi.Mode().IsRegular() && fi.Mode().Perm() != 0o600:
			t.Errorf("file %s has mode %o, want 0600", p, fi.Mode().Perm())
		}
		return nil
	})
}

func TestConformanceSnapshotMode(t *testing.T) {
	r := newRig(t, modeSnapshot)
	plugintest.Run(t, func(t *testing.T) plugintest.Harness { return r.newHarness(t) })
	r.checkNoSecrets(t)
}

// reportless drops a call's CleanupReport where a check needs only its
// error.
func reportless(_ sdk.CleanupReport, err error) error { return err }
