package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"

	"github.com/ceph/go-ceph/rados"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// Version is the plugin's version.
const Version = "0.1.0"

// peerClient is the user rbd-mirror on the target uses to read the source.
const peerClient = "client.rbd-mirror-peer"

// Backend is the Ceph RBD sdk.Backend: rbd-mirror pulls from the source
// storage's pool into the target storage's pool.
type Backend struct {
	log      *slog.Logger
	stateDir string

	mu      sync.Mutex
	conns   map[string]cachedConn
	daemons map[string]*mirrorDaemon
	paused  map[string]*pausedSet
	copied  sync.Map // target image id → its first copy was seen complete
}

var _ sdk.Backend = (*Backend)(nil)

// New returns a backend keeping its files under stateDir.
func New(log *slog.Logger, stateDir string) *Backend {
	return &Backend{
		log: log, stateDir: stateDir,
		conns: map[string]cachedConn{}, daemons: map[string]*mirrorDaemon{}, paused: map[string]*pausedSet{},
	}
}

// Close stops the supervisors (not the rbd-mirror processes: a plugin
// started again adopts them) and the connections.
func (b *Backend) Close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for id, d := range b.daemons {
		d.mu.Lock()
		if !d.stopping {
			d.stopping = true
			close(d.quit)
		}
		d.mu.Unlock()
		delete(b.daemons, id)
	}
	for k, c := range b.conns {
		c.conn.Shutdown()
		delete(b.conns, k)
	}
}

// Info implements sdk.Backend.
func (b *Backend) Info(ctx context.Context) (sdk.Info, error) {
	if err := ctx.Err(); err != nil {
		return sdk.Info{}, err
	}
	return sdk.Info{
		Name: "ceph-rbd", Version: Version, StorageTypes: []string{StorageType},
		Capabilities: sdk.Capabilities{
			Pause: true, KeepTargetStop: true, Snapshots: true,
			SnapshotModes: []string{modeJournal, modeSnapshot},
		},
	}, nil
}

var envIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$`)

func checkEnvID(env sdk.Environment) error {
	if !envIDPattern.MatchString(env.ID) {
		return fmt.Errorf("environment id %q cannot name files: %w", env.ID, sdk.ErrPrecondition)
	}
	return nil
}

func (b *Backend) runDir(envID string) string { return filepath.Join(b.stateDir, "run", envID) }
func (b *Backend) markerPath(envID string) string {
	return filepath.Join(b.stateDir, envID+".prepared")
}

// marker records a prepared environment and the storages it uses.
type marker struct {
	Source string `json:"source"`
	Target string `json:"target"`
	// TargetSite is the target cluster's mirror site name: environments
	// with the same one run their rbd-mirror daemons on one cluster.
	TargetSite string `json:"target_site,omitempty"`
}

func (b *Backend) prepared(envID string) bool {
	_, err := os.Stat(b.markerPath(envID))
	return err == nil
}

// storageInUse says whether a prepared environment other than envID uses
// the storage key.
func (b *Backend) storageInUse(key, envID string) bool {
	ms, _ := filepath.Glob(filepath.Join(b.stateDir, "*.prepared"))
	for _, p := range ms {
		if p == b.markerPath(envID) {
			continue
		}
		var m marker
		if data, err := os.ReadFile(p); err == nil && json.Unmarshal(data, &m) == nil && (m.Source == key || m.Target == key) {
			return true
		}
	}
	return false
}

func (b *Backend) pausedSet(envID string) *pausedSet {
	b.mu.Lock()
	defer b.mu.Unlock()
	p, ok := b.paused[envID]
	if !ok {
		p = &pausedSet{path: filepath.Join(b.stateDir, "paused", envID+".json")}
		b.paused[envID] = p
	}
	return p
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
	asok := filepath.Join(run, "rbd-mirror.asok")
	var environ []string
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "CEPH_ARGS=") && !strings.HasPrefix(e, "CEPH_CONF=") {
			environ = append(environ, e)
		}
	}
	// CEPH_ARGS reaches the remote (source) context too (notes, gotcha 4):
	// its admin socket and log stay in the state directory.
	environ = append(environ, "CEPH_ARGS=--run-dir "+run+" --log-file "+filepath.Join(logDir, env.ID+".$cluster-$name.log"))
	paused := b.pausedSet(env.ID)
	d = &mirrorDaemon{
		log: b.log, envID: env.ID, runDir: run, asok: asok,
		pidFile: filepath.Join(run, "rbd-mirror.pid"),
		args: []string{
			"--cluster", dst.key(), "-c", conf, "-n", "client." + dst.m.AdminClient, "--keyring", keyring,
			"-f", "--admin-socket", asok,
			"--rbd-mirror-pool-replayers-refresh-interval", "5",
		},
		env:     environ,
		paused:  paused.load,
		cluster: func() []string { return b.clusterAsoks(env.ID) },
	}
	b.mu.Lock()
	if old, ok := b.daemons[env.ID]; ok {
		b.mu.Unlock()
		return old, nil
	}
	b.daemons[env.ID] = d
	b.mu.Unlock()
	d.start()
	return d, nil
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
	if _, err := os.Stat(filepath.Join(b.runDir(env.ID), "rbd-mirror.pid")); err != nil && !b.prepared(env.ID) {
		return nil
	}
	d, err := b.daemon(env, dst)
	if err != nil {
		return nil
	}
	return d
}

// asokPath is where the environment's rbd-mirror admin socket lives.
func (b *Backend) asokPath(envID string) string {
	return filepath.Join(b.runDir(envID), "rbd-mirror.asok")
}

// clusterAsoks returns the admin sockets of every rbd-mirror the plugin
// runs on envID's target cluster, envID's own first. The rbd-mirror
// daemons of one cluster share out its images among themselves, whichever
// environment started them, so an image's replayer may live in any.
func (b *Backend) clusterAsoks(envID string) []string {
	out := []string{b.asokPath(envID)}
	var mine marker
	data, err := os.ReadFile(b.markerPath(envID))
	if err != nil || json.Unmarshal(data, &mine) != nil || mine.TargetSite == "" {
		return out
	}
	ms, _ := filepath.Glob(filepath.Join(b.stateDir, "*.prepared"))
	for _, p := range ms {
		if p == b.markerPath(envID) {
			continue
		}
		var m marker
		if data, err := os.ReadFile(p); err == nil && json.Unmarshal(data, &m) == nil && m.TargetSite == mine.TargetSite {
			out = append(out, b.asokPath(strings.TrimSuffix(filepath.Base(p), ".prepared")))
		}
	}
	return out
}

// siteName is a cluster's mirror site name (its fsid unless set).
func siteName(ctx context.Context, conn *rados.Conn) (string, error) {
	return call(ctx, func() (string, error) {
		s, err := rbdGetMirrorSiteName(conn)
		return strings.Trim(s, "\x00"), err
	})
}
