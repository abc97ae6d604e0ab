package cephrbd

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// An rbd-mirror the plugin does not run (an operator's, a cephadm or Rook
// service) takes a share of the target pool's images, where the plugin
// can neither pause nor watch them: the environment says so and is not
// ready while it runs; the volumes it replays still reach "replaying".
func TestForeignRbdMirrorReported(t *testing.T) {
	r := newRig(t, modeJournal)
	ctx := t.Context()
	env := r.env(t)
	r.prepareEnvironments(t, env)
	if h, err := r.be.EnvironmentStatus(ctx, env); err != nil || !h.Ready {
		t.Fatalf("EnvironmentStatus = %+v, %v; want ready", h, err)
	}

	stop := startForeignRbdMirror(t, r.lab.Sites[1])
	var h sdk.EnvironmentHealth
	waitFor(t, "the foreign rbd-mirror reported", 90*time.Second, func() bool {
		var err error
		h, err = r.be.EnvironmentStatus(ctx, env)
		return err == nil && !h.Ready && strings.Contains(h.Description, "does not run")
	})
	t.Logf("environment while a foreign rbd-mirror runs: %s", h.Description)

	var vols []sdk.Volume
	for i := range 4 {
		vols = append(vols, r.startSmallVolume(t, env, uint64(200+i), r.srcIO, r.dstIO))
	}
	ours := 0
	for _, v := range vols {
		waitFor(t, "replaying "+imageName(v), 2*time.Minute, func() bool {
			st, err := r.be.VolumeStatus(ctx, v)
			return err == nil && st.State == sdk.ReplicationReplaying
		})
		if _, _, err := replayerOf(ctx, r.asoks(t, r.be, env), "volumes/"+imageName(v)); err == nil {
			ours++
		}
	}
	t.Logf("%d of %d images replayed by the plugin's rbd-mirror, the rest by the foreign one", ours, len(vols))

	stop()
	waitFor(t, "ready again once the foreign rbd-mirror is gone", 2*time.Minute, func() bool {
		h, err := r.be.EnvironmentStatus(ctx, env)
		return err == nil && h.Ready
	})
}

// startForeignRbdMirror runs an rbd-mirror on the lab site the plugin
// knows nothing of; the returned func stops it (also at cleanup).
func startForeignRbdMirror(t *testing.T, s labSite) (stop func()) {
	t.Helper()
	dir, err := os.MkdirTemp("/tmp", "frm") // short: admin socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("rbd-mirror", "--cluster", s.Name, "-c", s.Conf, "-n", "client.admin", "--keyring", s.AdminKeyring,
		"-f", "--admin-socket", filepath.Join(dir, "foreign.asok"), "--log-file", filepath.Join(dir, "foreign.log"),
		"--rbd-mirror-pool-replayers-refresh-interval", "5")
	// rbd-mirror re-reads its cluster's conf as ./<cluster>.conf.
	cmd.Dir = filepath.Dir(s.Conf)
	cmd.Env = append(os.Environ(), "CEPH_ARGS=--run-dir "+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start a foreign rbd-mirror: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-done
		}
		_ = os.RemoveAll(dir)
	}
	t.Cleanup(stop)
	return stop
}
