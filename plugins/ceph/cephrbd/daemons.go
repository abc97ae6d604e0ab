package cephrbd

import (
	"context"
	"os"
	"path/filepath"
	"strings"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// The backend runs one rbd-mirror per prepared environment, on the
// environment's target cluster; its files are under <state>/run/<env>.

func (b *Backend) runDir(envID string) string { return filepath.Join(b.stateDir, "run", envID) }

// asokPath is where the environment's rbd-mirror admin socket lives.
func (b *Backend) asokPath(envID string) string {
	return filepath.Join(b.runDir(envID), "rbd-mirror.asok")
}

func (b *Backend) pidPath(envID string) string {
	return filepath.Join(b.runDir(envID), "rbd-mirror.pid")
}

// clusterAsoks returns the admin sockets of every rbd-mirror the plugin
// runs on envID's target cluster, envID's own first. The rbd-mirror
// daemons of one cluster share out its images among themselves, whichever
// environment started them, so an image's replayer may live in any.
func (b *Backend) clusterAsoks(envID string) []string {
	out := []string{b.asokPath(envID)}
	mine, ok := readMarker(b.markerPath(envID))
	if !ok || mine.TargetSite == "" {
		return out
	}
	for _, o := range b.otherMarkers(envID) {
		if o.TargetSite == mine.TargetSite {
			out = append(out, b.asokPath(o.envID))
		}
	}
	return out
}

// daemon returns the environment's rbd-mirror supervisor, starting it
// (or adopting a live rbd-mirror) when it is not running.
func (b *Backend) daemon(env sdk.Environment, dst side) (*mirrorDaemon, error) {
	b.mu.Lock()
	d, ok := b.daemons[env.ID]
	b.mu.Unlock()
	if ok {
		return d, nil
	}
	d, err := b.newDaemon(env, dst)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	if old, ok := b.daemons[env.ID]; ok {
		b.mu.Unlock()
		d.quitSupervising()
		return old, nil
	}
	b.daemons[env.ID] = d
	b.mu.Unlock()
	d.start()
	return d, nil
}

// newDaemon writes the files an environment's rbd-mirror reads and
// returns its supervisor, not started.
func (b *Backend) newDaemon(env sdk.Environment, dst side) (*mirrorDaemon, error) {
	run := b.runDir(env.ID)
	logDir := filepath.Join(b.stateDir, "log")
	for _, dir := range []string{filepath.Join(b.stateDir, "run"), run, logDir} {
		if err := ensureDir(dir); err != nil {
			return nil, err
		}
	}
	// The daemon reads its own copies, so tearing down another
	// environment of the same target storage cannot pull them away.
	conf := filepath.Join(run, dst.key()+".conf")
	keyring := filepath.Join(run, dst.key()+".client."+dst.m.AdminClient+".keyring")
	if err := writePrivate(conf, []byte(dst.m.Conf+"\n")); err != nil {
		return nil, err
	}
	if err := writePrivate(keyring, []byte(keyringText("client."+dst.m.AdminClient, dst.m.AdminKeyring))); err != nil {
		return nil, err
	}
	asok := b.asokPath(env.ID)
	ctx, cancel := context.WithCancel(context.Background())
	return &mirrorDaemon{
		log: b.log, envID: env.ID, runDir: run, asok: asok, pidFile: b.pidPath(env.ID),
		args: []string{
			"--cluster", dst.key(), "-c", conf, "-n", "client." + dst.m.AdminClient, "--keyring", keyring,
			"-f", "--admin-socket", asok,
			"--rbd-mirror-pool-replayers-refresh-interval", "5",
		},
		env:     daemonEnviron(run, filepath.Join(logDir, env.ID+".$cluster-$name.log")),
		paused:  b.pausedSet(env.ID).load,
		cluster: func() []string { return b.clusterAsoks(env.ID) },
		ctx:     ctx, cancel: cancel, done: make(chan struct{}),
	}, nil
}

// daemonEnviron is the plugin's environment without the caller's Ceph
// settings, and a CEPH_ARGS that keeps rbd-mirror's admin sockets and log
// in the state directory. CEPH_ARGS reaches the remote (source) context
// too, which a command-line option would not.
func daemonEnviron(runDir, logFile string) []string {
	var environ []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "CEPH_ARGS=") && !strings.HasPrefix(e, "CEPH_CONF=") {
			environ = append(environ, e)
		}
	}
	return append(environ, "CEPH_ARGS=--run-dir "+runDir+" --log-file "+logFile)
}

// existingDaemon returns the supervisor in memory, or one that adopts an
// rbd-mirror recorded in the pid file, or nil.
func (b *Backend) existingDaemon(env sdk.Environment, dst side) *mirrorDaemon {
	b.mu.Lock()
	d, ok := b.daemons[env.ID]
	b.mu.Unlock()
	if ok {
		return d
	}
	if _, err := os.Stat(b.pidPath(env.ID)); err != nil && !b.prepared(env.ID) {
		return nil
	}
	d, err := b.daemon(env, dst)
	if err != nil {
		return nil
	}
	return d
}
