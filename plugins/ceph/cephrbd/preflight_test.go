package cephrbd

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/ceph/go-ceph/rbd"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// ceph runs the ceph CLI on a lab site as its admin.
func (s labSite) ceph(t testing.TB, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("ceph", append([]string{"--cluster", s.Name, "-c", s.Conf}, args...)...)
	cmd.Env = append(os.Environ(), "CEPH_ARGS=--keyring "+s.AdminKeyring)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("ceph %s on %s: %v: %s", strings.Join(args, " "), s.Name, err, out)
	}
	return out
}

// user creates client.name on the site with the given capabilities
// (mon and osd, and more "service", "caps" pairs; removed when the test
// ends) and returns its key.
func (s labSite) user(t testing.TB, name, mon, osd string, more ...string) string {
	t.Helper()
	cmd := exec.Command("ceph", "--cluster", s.Name, "-c", s.Conf, "auth", "rm", "client."+name)
	cmd.Env = append(os.Environ(), "CEPH_ARGS=--keyring "+s.AdminKeyring)
	_ = cmd.Run()
	out := s.ceph(t, append(append([]string{"auth", "get-or-create", "client." + name, "mon", mon, "osd", osd}, more...), "-f", "json")...)
	var entries []struct {
		Key string `json:"key"`
	}
	if err := json.Unmarshal(out, &entries); err != nil || len(entries) == 0 {
		t.Fatalf("auth get-or-create client.%s: %v: %s", name, err, out)
	}
	t.Cleanup(func() { s.ceph(t, "auth", "rm", "client."+name) })
	return entries[0].Key
}

// metadataAs is the site's metadata for a storage whose client is
// client.name with key, and no admin credentials.
func (s labSite) metadataAs(t testing.TB, name, key string, extra map[string]string) json.RawMessage {
	t.Helper()
	var md map[string]string
	_ = json.Unmarshal(s.metadata(t, extra), &md)
	delete(md, "admin_client")
	delete(md, "admin_keyring")
	md["client"], md["keyring"] = name, key
	b, _ := json.Marshal(md)
	return b
}

// The capabilities docs/ceph.md gives a storage's client.
const (
	docPeerRm    = `allow command "config-key rm" with key prefix rbd/mirror/peer/`
	docSourceMon = "profile rbd-mirror-peer, " + docPeerRm
	docTargetMon = "profile rbd-mirror, profile rbd-mirror-peer, " + docPeerRm
	docOSD       = "profile rbd pool=volumes"
	docSourceMgr = "profile rbd pool=volumes" // for snapshot schedules
)

// mirrorSetup is what the target pool's mirroring looks like, read as
// the admin: its mode and peers.
func (r *labRig) mirrorSetup(t testing.TB) string {
	t.Helper()
	mode, err := rbd.GetMirrorMode(r.dstIO)
	if err != nil {
		t.Fatal(err)
	}
	peers, err := rbd.ListMirrorPeerSite(r.dstIO)
	if err != nil {
		t.Fatal(err)
	}
	s := mode.String()
	for _, p := range peers {
		s += " " + p.SiteName + "/" + p.ClientName
	}
	return s
}

// refused checks that err is an ErrPrecondition whose message holds each
// of wants, and that EnvironmentStatus says the same.
func (r *labRig) refused(t *testing.T, env sdk.Environment, err error, wants ...string) {
	t.Helper()
	if !errors.Is(err, sdk.ErrPrecondition) {
		t.Fatalf("PrepareEnvironment = %v; want ErrPrecondition", err)
	}
	h, serr := r.be.EnvironmentStatus(t.Context(), env)
	if serr != nil || h.Ready {
		t.Fatalf("EnvironmentStatus = %+v, %v; want not ready, with the reason", h, serr)
	}
	for _, w := range wants {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("the refusal does not say %q: %v", w, err)
		}
		if !strings.Contains(h.Description, w) {
			t.Errorf("the status does not say %q: %s", w, h.Description)
		}
	}
	t.Logf("refused: %v", err)
}

// A source pool volumes and a target pool volumesdr never replicate
// (rbd-mirror pairs pools by name): refused before anything changes.
func TestPreflightPoolNames(t *testing.T) {
	r := newRig(t, modeJournal)
	b := r.lab.Sites[1]
	b.ceph(t, "osd", "pool", "create", "volumesdr", "8", "8", "replicated")
	t.Cleanup(func() { b.ceph(t, "osd", "pool", "delete", "volumesdr", "volumesdr", "--yes-i-really-really-mean-it") })
	b.ceph(t, "osd", "pool", "application", "enable", "volumesdr", "rbd")
	env := r.env(t)
	b.Pool = "volumesdr"
	env.Target.Metadata = b.metadata(t, nil)
	before := r.mirrorSetup(t)
	err := r.be.PrepareEnvironment(t.Context(), env)
	r.refused(t, env, err, "different names", "volumesdr", "clusters.6.storages.13")
	if after := r.mirrorSetup(t); after != before {
		t.Errorf("the refused prepare changed the target's mirroring: %q, was %q", after, before)
	}
	b.Pool = "nosuchpool"
	env.Target.Metadata = b.metadata(t, nil)
	err = r.be.PrepareEnvironment(t.Context(), env)
	r.refused(t, env, err, "pool nosuchpool does not exist on storage clusters.6.storages.13", "ceph osd pool create nosuchpool")
}

// A user without a capability the plugin needs is refused by the
// pre-flight, which names the user, the storage and the capability.
func TestPreflightMissingCapability(t *testing.T) {
	r := newRig(t, modeJournal)
	a, b := r.lab.Sites[0], r.lab.Sites[1]
	srcKey := a.user(t, "mirror-pf-src", docSourceMon, docOSD)
	snapshots := map[string]string{"mirror_mode": modeSnapshot, "mirror_snapshot_interval": "1m"}
	for _, c := range []struct {
		name, side, mon, osd, missing string
		extra                         map[string]string
	}{
		{"target without rbd-mirror", "b", "profile rbd", docOSD, "mon 'profile rbd-mirror'", nil},
		{"target without rbd-mirror-peer", "b", "profile rbd-mirror, " + docPeerRm, docOSD, "mon 'profile rbd-mirror-peer'", nil},
		{"target without config-key rm", "b", "profile rbd-mirror, profile rbd-mirror-peer", docOSD, "mon '" + docPeerRm + "'", nil},
		{"target read-only", "b", docTargetMon, "profile rbd-read-only pool=volumes", "osd 'profile rbd pool=volumes'", nil},
		{"source without rbd-mirror-peer", "a", "profile rbd", docOSD, "mon 'profile rbd-mirror-peer'", nil},
		{"source with schedules without mgr", "a", docSourceMon, docOSD, "mgr 'profile rbd pool=volumes'", snapshots},
	} {
		t.Run(c.name, func(t *testing.T) {
			env := r.env(t)
			user := "mirror-pf-" + c.side
			if c.side == "a" {
				key := a.user(t, user, c.mon, c.osd)
				env.Source.Metadata = a.metadataAs(t, user, key, c.extra)
				env.Target.Metadata = b.metadataAs(t, "mirror-pf-dst", b.user(t, "mirror-pf-dst", docTargetMon, docOSD), c.extra)
			} else {
				env.Source.Metadata = a.metadataAs(t, "mirror-pf-src", srcKey, c.extra)
				env.Target.Metadata = b.metadataAs(t, user, b.user(t, user, c.mon, c.osd), c.extra)
			}
			storage := "clusters.6.storages.13"
			if c.side == "a" {
				storage = "clusters.5.storages.11"
			}
			before := r.mirrorSetup(t)
			err := r.be.PrepareEnvironment(t.Context(), env)
			r.refused(t, env, err, "client."+user, storage, c.missing, "ceph auth caps client."+user)
			if after := r.mirrorSetup(t); after != before {
				t.Errorf("the refused prepare changed the target's mirroring: %q, was %q", after, before)
			}
		})
	}
}

// A full target pool (its quota reached) refuses the environment; one
// with less room than a volume's image refuses that volume's start,
// saying both sizes.
func TestPreflightRoom(t *testing.T) {
	r := newRig(t, modeJournal)
	b := r.lab.Sites[1]
	t.Cleanup(func() {
		b.ceph(t, "osd", "pool", "set-quota", b.Pool, "max_objects", "0")
		b.ceph(t, "osd", "pool", "set-quota", b.Pool, "max_bytes", "0")
	})
	env := r.env(t)
	b.ceph(t, "osd", "pool", "set-quota", b.Pool, "max_objects", "1")
	// Once the monitors mark the pool full, a plain write waits for
	// room (until the OSD timeout): the prepare must still answer at
	// once. CI once ran the prepare after the mark, when its write probe
	// still waited.
	waitFor(t, "the target pool marked full", time.Minute, func() bool {
		var pools []struct {
			Name  string `json:"pool_name"`
			Flags string `json:"flags_names"`
		}
		if err := json.Unmarshal(b.ceph(t, "osd", "pool", "ls", "detail", "--format", "json"), &pools); err != nil {
			t.Fatalf("ceph osd pool ls detail: %v", err)
		}
		for _, p := range pools {
			if p.Name == b.Pool && strings.Contains(p.Flags, "full_quota") {
				return true
			}
		}
		return false
	})
	err := r.be.PrepareEnvironment(t.Context(), env)
	r.refused(t, env, err, "quota of 1 objects", "set-quota volumes max_objects")

	b.ceph(t, "osd", "pool", "set-quota", b.Pool, "max_objects", "0")
	var df struct {
		Pools []struct {
			Name  string   `json:"name"`
			Stats poolRoom `json:"stats"`
		} `json:"pools"`
	}
	if err := json.Unmarshal(b.ceph(t, "df", "detail", "-f", "json"), &df); err != nil {
		t.Fatal(err)
	}
	var stored uint64
	for _, p := range df.Pools {
		if p.Name == b.Pool {
			stored = p.Stats.Stored
		}
	}
	quota := stored + 8<<20
	b.ceph(t, "osd", "pool", "set-quota", b.Pool, "max_bytes", jsonNumber(quota))
	h := r.newHarness(t) // a 16 MiB image
	r.prepareEnvironments(t, h.env)
	r.destroyAtEnd(t, h.vol)
	err = r.be.StartVolume(t.Context(), h.vol)
	if !errors.Is(err, sdk.ErrPrecondition) || !strings.Contains(err.Error(), "is 16 MiB") || !strings.Contains(err.Error(), "8 MiB") {
		t.Fatalf("StartVolume of a 16 MiB image with 8 MiB left = %v; want ErrPrecondition saying both sizes", err)
	}
	t.Logf("refused: %v", err)
	if in, err := inspect(t.Context(), r.srcIO, imageName(h.vol), false); err != nil || in.mirror.State != rbd.MirrorImageDisabled {
		t.Fatalf("the refused start changed the image: %+v, %v", in.mirror, err)
	}
}

func jsonNumber(n uint64) string { b, _ := json.Marshal(n); return string(b) }

// Storages without admin credentials, their clients holding the
// capabilities docs/ceph.md lists: every operation works, the kept copy
// is writable, and a capability taken away shows in the status; in
// journal mode, and in snapshot mode with a schedule (which needs the
// manager's rbd profile on the source).
func TestLeastPrivilege(t *testing.T) {
	for _, mode := range []string{modeJournal, modeSnapshot} {
		t.Run(mode, func(t *testing.T) { leastPrivilege(t, mode) })
	}
}

func leastPrivilege(t *testing.T, mode string) {
	r := newRig(t, mode)
	a, b := r.lab.Sites[0], r.lab.Sites[1]
	ctx := t.Context()
	h := r.newHarness(t)
	extra := map[string]string{"mirror_mode": mode}
	var mgr []string
	if mode == modeSnapshot {
		extra["mirror_snapshot_interval"] = "1m"
		mgr = []string{"mgr", docSourceMgr}
	}
	h.env.Source.Metadata = a.metadataAs(t, "mirror-lp-src", a.user(t, "mirror-lp-src", docSourceMon, docOSD, mgr...), extra)
	h.env.Target.Metadata = b.metadataAs(t, "mirror-lp-dst", b.user(t, "mirror-lp-dst", docTargetMon, docOSD), extra)
	h.vol.Environment = h.env
	h.snap.Volume = h.vol
	begin := time.Now()
	r.prepareEnvironments(t, h.env)
	if got := r.mirrorSetup(t); !strings.Contains(got, "/client.mirror-lp-src") {
		t.Fatalf("the target's peer: %q; want the source's own client as peer user", got)
	}
	if st, err := r.be.EnvironmentStatus(ctx, h.env); err != nil || !st.Ready {
		t.Fatalf("EnvironmentStatus = %+v, %v; want ready", st, err)
	}
	r.destroyAtEnd(t, h.vol)
	if err := r.be.StartVolume(ctx, h.vol); err != nil {
		t.Fatalf("StartVolume: %v", err)
	}
	waitFor(t, "replaying", 60*time.Second, func() bool {
		st, err := r.be.VolumeStatus(ctx, h.vol)
		if err != nil {
			t.Fatalf("VolumeStatus: %v", err)
		}
		return st.State == sdk.ReplicationReplaying
	})
	if err := r.be.PauseVolume(ctx, h.vol); err != nil {
		t.Fatalf("PauseVolume: %v", err)
	}
	if err := r.be.ResumeVolume(ctx, h.vol); err != nil {
		t.Fatalf("ResumeVolume: %v", err)
	}
	if mode == modeJournal {
		// The source's client without write access: a snapshot call is
		// refused naming it (through a fresh connection: a session's
		// OSD capabilities are those of its ticket).
		a.ceph(t, "auth", "caps", "client.mirror-lp-src", "mon", docSourceMon, "osd", "profile rbd-read-only pool=volumes")
		other := New(sdkLoggerTo(r.logs), t.TempDir()+"/state")
		err := other.AddSnapshot(ctx, h.snap)
		other.Close()
		a.ceph(t, "auth", "caps", "client.mirror-lp-src", "mon", docSourceMon, "osd", docOSD)
		if !errors.Is(err, sdk.ErrPrecondition) || !strings.Contains(err.Error(), "client.mirror-lp-src on storage clusters.5.storages.11") ||
			!strings.Contains(err.Error(), "ceph auth caps client.mirror-lp-src") {
			t.Fatalf("AddSnapshot without write access = %v; want ErrPrecondition naming the user and the caps", err)
		}
		t.Logf("refused: %v", err)
	}
	if err := r.be.AddSnapshot(ctx, h.snap); err != nil {
		t.Fatalf("AddSnapshot: %v", err)
	}
	if err := r.be.RemoveSnapshot(ctx, h.snap); err != nil {
		t.Fatalf("RemoveSnapshot: %v", err)
	}

	// A capability taken away: the status says which, from a fresh
	// connection (the monitors keep a session's capabilities).
	b.ceph(t, "auth", "caps", "client.mirror-lp-dst", "mon", "profile rbd-mirror, "+docPeerRm, "osd", docOSD)
	other := New(sdkLoggerTo(r.logs), t.TempDir()+"/state")
	st, err := other.EnvironmentStatus(ctx, h.env)
	other.Close()
	if err != nil || st.Ready || !strings.Contains(st.Description, "mon 'profile rbd-mirror-peer'") {
		t.Errorf("EnvironmentStatus with a capability taken away = %+v, %v; want not ready, naming it", st, err)
	}
	// The host leading it sees it on its next prepare, and from then on
	// in its status.
	err = r.be.PrepareEnvironment(ctx, h.env)
	r.refused(t, h.env, err, "client.mirror-lp-dst", "mon 'profile rbd-mirror-peer'")
	b.ceph(t, "auth", "caps", "client.mirror-lp-dst", "mon", docTargetMon, "osd", docOSD)
	if err := r.be.PrepareEnvironment(ctx, h.env); err != nil {
		t.Fatalf("PrepareEnvironment with the capability given back: %v", err)
	}
	if st, err := r.be.EnvironmentStatus(ctx, h.env); err != nil || !st.Ready {
		t.Fatalf("EnvironmentStatus with the capability given back = %+v, %v; want ready", st, err)
	}

	stopKeeping(t, r.be, h.vol)
	// The kept copy is the target storage's own volume: its client
	// writes it with the rbd CLI.
	out, err := exec.Command("rbd", "--cluster", b.Name, "-c", b.Conf, "--id", "mirror-lp-dst", "--key", keyOf(t, h.env.Target.Metadata),
		"bench", "--io-type", "write", "--io-size", "4K", "--io-total", "64K", b.Pool+"/"+imageName(h.vol)).CombinedOutput()
	if err != nil {
		t.Fatalf("rbd bench --io-type write on the kept copy: %v: %s", err, out)
	}
	if err := r.be.DeleteTarget(ctx, h.vol); err != nil {
		t.Fatalf("DeleteTarget: %v", err)
	}
	waitFor(t, "the kept copy deleted", 30*time.Second, func() bool {
		st, err := r.be.VolumeStatus(ctx, h.vol)
		return err == nil && !st.TargetExists
	})

	second := r.newVolume(t, h.env, 8)
	if err := r.be.StartVolume(ctx, second); err != nil {
		t.Fatalf("StartVolume of a second volume: %v", err)
	}
	if _, err := r.be.DestroyVolume(ctx, second); err != nil {
		t.Fatalf("DestroyVolume: %v", err)
	}
	if err := reportless(r.be.TeardownEnvironment(ctx, h.env, false)); err != nil {
		t.Fatalf("TeardownEnvironment: %v", err)
	}
	if got := r.mirrorSetup(t); strings.Contains(got, "mirror-lp-src") {
		t.Fatalf("the peer outlived the teardown: %q", got)
	}
	if peers, err := rbd.ListMirrorPeerSite(r.srcIO); err != nil || len(peers) > 0 {
		t.Fatalf("the source pool's peers after the teardown: %v, %v; want none (rbd-mirror's tx peer removed)", peers, err)
	}
	t.Logf("prepare to teardown without admin credentials in %v", time.Since(begin).Round(100*time.Millisecond))
	r.checkNoSecrets(t)
}

// keyOf is the keyring field of a storage's metadata.
func keyOf(t testing.TB, md json.RawMessage) string {
	var m map[string]string
	if err := json.Unmarshal(md, &m); err != nil {
		t.Fatal(err)
	}
	return m["keyring"]
}

// A pool created a moment ago exists before `ceph df` lists it (the
// manager reports it within seconds): its room is waited for, never taken
// for a missing pool.
func TestPreflightNewPool(t *testing.T) {
	r := newRig(t, modeJournal)
	b := r.lab.Sites[1]
	const pool = "volumesfresh"
	b.ceph(t, "osd", "pool", "create", pool, "8", "8", "replicated")
	t.Cleanup(func() { b.ceph(t, "osd", "pool", "delete", pool, pool, "--yes-i-really-really-mean-it") })
	conn, err := labConn(b)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Shutdown()
	room, err := poolSpace(t.Context(), conn, side{s: sdk.Storage{ClusterID: 6, StorageID: 13}, m: meta{Pool: pool}})
	if err != nil {
		t.Fatalf("the space of a pool just created: %v", err)
	}
	if room.MaxAvail == 0 {
		t.Fatalf("the space of a pool just created: %+v; want its max_avail", room)
	}
	_, err = poolSpace(t.Context(), conn, side{s: sdk.Storage{ClusterID: 6, StorageID: 13}, m: meta{Pool: "nosuchpool"}})
	if !errors.Is(err, sdk.ErrPrecondition) || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("the space of a missing pool = %v; want ErrPrecondition, it does not exist", err)
	}
}
