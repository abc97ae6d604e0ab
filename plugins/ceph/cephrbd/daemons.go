package cephrbd

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// The backend runs one rbd-mirror per environment this host leads, on
// the environment's target cluster, started only by PrepareEnvironment
// and stopped by ReleaseEnvironment and TeardownEnvironment. Its files
// are this host's own, under <state>/run/<env>: admin socket, pid file,
// the conf and keyring it reads, and env.json (what it serves).

func (b *Backend) runDir(envID string) string { return filepath.Join(b.stateDir, "run", envID) }

// asokPath is where the environment's rbd-mirror admin socket lives.
func (b *Backend) asokPath(envID string) string {
	return filepath.Join(b.runDir(envID), "rbd-mirror.asok")
}

func (b *Backend) pidPath(envID string) string {
	return filepath.Join(b.runDir(envID), "rbd-mirror.pid")
}

func (b *Backend) hostMarkerPath(envID string) string {
	return filepath.Join(b.runDir(envID), "env.json")
}

// livePid is the pid recorded in pidFile if that process is still the
// rbd-mirror serving asok, else 0.
func livePid(pidFile, asok string) int {
	data, err := os.ReadFile(pidFile)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 || !pidAlive(pid, asok) {
		return 0
	}
	return pid
}

// localEnv is an environment whose rbd-mirror this host runs, as its
// env.json says.
type localEnv struct {
	envID string
	marker
}

// localEnvs lists the environments whose rbd-mirror this host runs (or
// ran and did not stop), in the order of their ids.
func (b *Backend) localEnvs() []localEnv {
	var out []localEnv
	paths, _ := filepath.Glob(filepath.Join(b.stateDir, "run", "*", "env.json"))
	for _, p := range paths {
		var m marker
		if data, err := os.ReadFile(p); err == nil && json.Unmarshal(data, &m) == nil {
			out = append(out, localEnv{filepath.Base(filepath.Dir(p)), m})
		}
	}
	return out
}

// storageInUse says whether an environment other than envID that runs
// on this host uses the storage key (its files must stay).
func (b *Backend) storageInUse(key, envID string) bool {
	for _, e := range b.localEnvs() {
		if e.envID != envID && (e.Source == key || e.Target == key) {
			return true
		}
	}
	return false
}

// errNotHere says that a call needs env's rbd-mirror on this host, where
// it does not run: the host leading the environment runs it.
func (b *Backend) errNotHere(envID string) error {
	return fmt.Errorf("the rbd-mirror of environment %s does not run on this host (state directory %s): "+
		"the host leading the environment runs it, started by PrepareEnvironment; ask again once this host leads it: %w",
		envID, b.stateDir, sdk.ErrRetryable)
}

// localAsoks returns the admin sockets of the rbd-mirror daemons this
// host runs on env's target cluster, env's own first; errNotHere when
// env's own does not run here. The rbd-mirror daemons of one cluster
// share out its images among themselves, whichever environment started
// them, so an image's replayer may live in any (or on another host,
// whose supervisor applies the pauses recorded in the pool).
func (b *Backend) localAsoks(env sdk.Environment, dst side) ([]string, error) {
	d := b.localDaemon(env, dst)
	if d == nil || !d.running() {
		return nil, b.errNotHere(env.ID)
	}
	out := []string{d.asok}
	envs := b.localEnvs()
	site := ""
	for _, o := range envs {
		if o.envID == env.ID {
			site = o.TargetSite
		}
	}
	for _, o := range envs {
		if o.envID != env.ID && site != "" && o.TargetSite == site && livePid(b.pidPath(o.envID), b.asokPath(o.envID)) > 0 {
			out = append(out, b.asokPath(o.envID))
		}
	}
	return out, nil
}

// daemon returns the environment's rbd-mirror supervisor, starting it
// (it adopts a live rbd-mirror, else starts one) when there is none.
// Only PrepareEnvironment may call it without a live rbd-mirror here.
func (b *Backend) daemon(env sdk.Environment, dst side, site string) (*mirrorDaemon, error) {
	b.mu.Lock()
	d, ok := b.daemons[env.ID]
	b.mu.Unlock()
	if ok {
		return d, nil
	}
	d, err := b.newDaemon(env, dst, site)
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

// localDaemon returns the supervisor of env's rbd-mirror on this host:
// the one in memory, or one adopting the live rbd-mirror its pid file
// names (left by an earlier plugin process), or nil. It never starts an
// rbd-mirror: during a hand-over, the host that released the
// environment must not start again what it just stopped.
func (b *Backend) localDaemon(env sdk.Environment, dst side) *mirrorDaemon {
	b.mu.Lock()
	d, ok := b.daemons[env.ID]
	b.mu.Unlock()
	if ok {
		return d
	}
	if livePid(b.pidPath(env.ID), b.asokPath(env.ID)) == 0 {
		return nil
	}
	var m marker
	if data, err := os.ReadFile(b.hostMarkerPath(env.ID)); err == nil {
		_ = json.Unmarshal(data, &m)
	}
	// An rbd-mirror the last release started has no env.json (no site):
	// the next PrepareEnvironment writes it.
	d, err := b.daemon(env, dst, m.TargetSite)
	if err != nil {
		return nil
	}
	return d
}

// newDaemon writes the files an environment's rbd-mirror reads and
// returns its supervisor, not started.
func (b *Backend) newDaemon(env sdk.Environment, dst side, site string) (*mirrorDaemon, error) {
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
	if err := b.writeHostMarker(env, dst, site); err != nil {
		return nil, err
	}
	asok := b.asokPath(env.ID)
	src, err := b.side(env.Source)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	host, _ := os.Hostname()
	d := &mirrorDaemon{
		log: b.log, b: b, src: src, dst: dst, host: host,
		envID: env.ID, runDir: run, asok: asok, pidFile: b.pidPath(env.ID),
		args: []string{
			"--cluster", dst.key(), "-c", conf, "-n", "client." + dst.m.AdminClient, "--keyring", keyring,
			"-f", "--admin-socket", asok,
			"--rbd-mirror-pool-replayers-refresh-interval", "5",
			// A new rbd-mirror (a restart, a takeover) finds the dead one's
			// leader lock and images sooner: the leader's heartbeat paces
			// both the lock's break and the dead instance's removal.
			"--rbd-mirror-leader-heartbeat-interval", "1",
			// A journal-mode image sync that rbd-mirror restarts (after a
			// crash, or a blocklisting on the source) resumes from the
			// object number its sync point records, by default every 30 s:
			// a young sync started over. Every second it re-copies seconds
			// of data, for one small write to the source journal a second.
			"--rbd-mirror-sync-point-update-age", "1",
		},
		env:      daemonEnviron(run, filepath.Join(logDir, env.ID+".$cluster-$name.log")),
		ctx:      ctx,
		cancel:   cancel,
		done:     make(chan struct{}),
		recorded: map[string]bool{}, enforced: map[string]pausedImage{},
		startedAt: time.Now(),
	}
	if b.rbdMirrorDebug != "" {
		d.args = append(d.args, "--debug-rbd-mirror", b.rbdMirrorDebug)
	}
	return d, nil
}

// writeHostMarker records in the run directory that this host runs the
// environment's rbd-mirror, and for which storages and target site.
func (b *Backend) writeHostMarker(env sdk.Environment, dst side, site string) error {
	here, _ := json.Marshal(marker{Source: storageKey(env.Source), Target: dst.key(), TargetSite: site})
	return writePrivate(b.hostMarkerPath(env.ID), here)
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
