// Package cephrbd is mirrord's Ceph RBD storage plugin: an sdk.Backend
// that replicates volumes (RBD images) from a source cluster's pool into
// a target cluster's pool with rbd-mirror, which it runs and supervises
// on the target side. It speaks to Ceph through librados/librbd (go-ceph)
// and to rbd-mirror through its admin socket. ARCHITECTURE.md lists its
// files, one per concern.
package cephrbd

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"sync"
	"time"

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

	mu       sync.Mutex
	conns    map[string]cachedConn
	daemons  map[string]*mirrorDaemon
	migrated map[string]bool // environments whose last-release files were moved into the cluster
	copied   sync.Map        // target image id → its first copy was seen complete
	// capsChecked holds the last capability check of each pair of
	// storages (capsKey → capsCheck), which EnvironmentStatus reuses.
	capsChecked sync.Map
	// ships are the ship loops this host runs, by environment
	// (ship_loop.go); shipLocks the per-image locks they share with the
	// volume calls.
	ships     map[string]*shipLoop
	shipLocks sync.Map
	// shipRoundDone, set by tests before a loop starts, is called after
	// each round of a ship loop.
	shipRoundDone func(envID string)

	// pauseLoopDelay, zero but in tests, keeps the supervisor from
	// applying pauses that long after an rbd-mirror starts: a test of
	// the copy's hold needs the replayers to run first.
	pauseLoopDelay time.Duration
	// rbdMirrorDebug, empty but in tests, is the debug_rbd_mirror level
	// of the rbd-mirror daemons started: a test that catches one
	// misbehaving keeps a log that says more than Ceph's default.
	rbdMirrorDebug string
}

var _ sdk.Backend = (*Backend)(nil)

// New returns a backend keeping its files under stateDir: only what
// belongs to this host (confs and keyrings, rbd-mirror's sockets, pid
// files and logs). What every host must see is in the target pools.
func New(log *slog.Logger, stateDir string) *Backend {
	return &Backend{
		log: log, stateDir: stateDir,
		conns: map[string]cachedConn{}, daemons: map[string]*mirrorDaemon{}, migrated: map[string]bool{},
		ships: map[string]*shipLoop{},
	}
}

// Close stops the ship loops, the supervisors (not the rbd-mirror
// processes: a plugin started again adopts them) and the connections.
func (b *Backend) Close() {
	b.stopShipLoops()
	b.mu.Lock()
	defer b.mu.Unlock()
	for id, d := range b.daemons {
		d.quitSupervising()
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
			// rbd-mirror runs on the host leading the environment, and
			// pause and resume go through its local admin socket.
			VolumesFollowEnvironment: true,
		},
	}, nil
}

var envIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,100}$`)

// checkEnvID refuses an environment id that cannot name files.
func checkEnvID(env sdk.Environment) error {
	if !envIDPattern.MatchString(env.ID) {
		return fmt.Errorf("environment id %q cannot name files: %w", env.ID, sdk.ErrPrecondition)
	}
	return nil
}
