// Package memstorage is an in-memory storage backend: the reference
// implementation of sdk.Backend, which passes the plugintest conformance
// kit. It simulates a pair of storages closely enough for the daemon's
// tests and for a vendor to read beside the contract, and keeps nothing
// across restarts.
//
// A volume or snapshot must exist on the source before it can be
// replicated. It exists when
//
//   - AddSourceVolume or AddSourceSnapshot said so (in the same process);
//   - the source storage's metadata lists it (over the wire, where the
//     caller cannot reach the plugin's memory):
//     {"volumes": ["<volume uuid>"], "snapshots": {"<snapshot uuid>": "<volume uuid>"}};
//   - or the backend was made with AutoSource and the source storage's
//     metadata lists no volumes: then every volume and snapshot exists.
//
// Time does not pass in memstorage, calls move it on: a started volume is
// syncing, and the next VolumeStatus reports it replaying; an added
// snapshot is pending, and the next SnapshotStatus reports it ready.
package memstorage

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// Name and Version are what Info reports.
const (
	Name    = "memstorage"
	Version = "1.0.0"
)

// DefaultType is the storage type served when no Types option is given.
const DefaultType = "openstack.storage.type.memory"

var _ sdk.Backend = (*Backend)(nil)

// Backend is an in-memory sdk.Backend. It is safe for concurrent use.
type Backend struct {
	info       sdk.Info
	autoSource bool
	now        func() time.Time

	mu          sync.Mutex
	envs        map[string]bool      // prepared environments, by ID
	sourceVols  map[string]bool      // volume UUIDs added on the source
	sourceSnaps map[string]string    // snapshot UUID → volume UUID added on the source
	removed     map[string]bool      // snapshot UUIDs removed from the source
	vols        map[string]*volume   // by volume UUID
	snaps       map[string]*snapshot // by snapshot UUID
}

type volume struct {
	env    string
	rep    sdk.VolumeReplication
	synced bool // the first copy finished: a resumed volume replays at once
}

type snapshot struct {
	volume string
	state  sdk.SnapshotState
}

// Option configures a Backend.
type Option func(*Backend)

// Types makes the backend serve these storage types instead of
// DefaultType.
func Types(types ...string) Option {
	return func(b *Backend) { b.info.StorageTypes = slices.Clone(types) }
}

// AutoSource makes every volume and snapshot exist on a source storage
// whose metadata lists no volumes, so that the daemon can replicate any
// volume with this backend.
func AutoSource() Option {
	return func(b *Backend) { b.autoSource = true }
}

// Clock sets the time source for LastSyncTime (time.Now by default).
func Clock(now func() time.Time) Option {
	return func(b *Backend) { b.now = now }
}

// New returns an empty backend: no environment prepared, nothing on the
// source storage.
func New(opts ...Option) *Backend {
	b := &Backend{
		info: sdk.Info{
			Name:         Name,
			Version:      Version,
			StorageTypes: []string{DefaultType},
			Capabilities: sdk.Capabilities{Pause: true, KeepTargetStop: true, Snapshots: true,
				SnapshotModes: []string{"journal"}},
		},
		now:         time.Now,
		envs:        map[string]bool{},
		sourceVols:  map[string]bool{},
		sourceSnaps: map[string]string{},
		removed:     map[string]bool{},
		vols:        map[string]*volume{},
		snaps:       map[string]*snapshot{},
	}
	for _, opt := range opts {
		opt(b)
	}
	return b
}

// AddSourceVolume makes the volume exist on the source storage.
func (b *Backend) AddSourceVolume(volumeUUID string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sourceVols[volumeUUID] = true
}

// AddSourceSnapshot makes the snapshot of the volume exist on the source
// storage, and the volume too.
func (b *Backend) AddSourceSnapshot(volumeUUID, snapshotUUID string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sourceVols[volumeUUID] = true
	b.sourceSnaps[snapshotUUID] = volumeUUID
	delete(b.removed, snapshotUUID)
}

// Info implements sdk.Backend.
func (b *Backend) Info(ctx context.Context) (sdk.Info, error) {
	if err := enter(ctx, "info"); err != nil {
		return sdk.Info{}, err
	}
	info := b.info
	info.StorageTypes = slices.Clone(info.StorageTypes)
	info.Capabilities.SnapshotModes = slices.Clone(info.Capabilities.SnapshotModes)
	return info, nil
}

// PrepareEnvironment implements sdk.Backend. Any pair of storages can be
// prepared.
func (b *Backend) PrepareEnvironment(ctx context.Context, env sdk.Environment) error {
	if err := enter(ctx, "prepare environment %s", env.ID); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.envs[env.ID] = true
	return nil
}

// EnvironmentStatus implements sdk.Backend.
func (b *Backend) EnvironmentStatus(ctx context.Context, env sdk.Environment) (sdk.EnvironmentHealth, error) {
	if err := enter(ctx, "environment status %s", env.ID); err != nil {
		return sdk.EnvironmentHealth{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.envs[env.ID] {
		return sdk.EnvironmentHealth{Description: "environment not prepared"}, nil
	}
	return sdk.EnvironmentHealth{Ready: true}, nil
}

// TeardownEnvironment implements sdk.Backend.
func (b *Backend) TeardownEnvironment(ctx context.Context, env sdk.Environment) error {
	if err := enter(ctx, "teardown environment %s", env.ID); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	var busy []string
	for id, v := range b.vols {
		if v.env == env.ID && v.rep.State != sdk.ReplicationAbsent {
			busy = append(busy, id)
		}
	}
	if len(busy) > 0 {
		slices.Sort(busy)
		return fmt.Errorf("teardown environment %s: volumes still replicated %v, stop or destroy them first: %w",
			env.ID, busy, sdk.ErrPrecondition)
	}
	delete(b.envs, env.ID)
	return nil
}

// StartVolume implements sdk.Backend.
func (b *Backend) StartVolume(ctx context.Context, vol sdk.Volume) error {
	if err := enter(ctx, "start volume %s", vol.VolumeUUID); err != nil {
		return err
	}
	src, err := readSource(vol.Environment.Source)
	if err != nil {
		return fmt.Errorf("start volume %s: %w", vol.VolumeUUID, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.onSource(src, vol.VolumeUUID) {
		return fmt.Errorf("start volume %s: no such volume on the source storage: %w", vol.VolumeUUID, sdk.ErrNotFound)
	}
	if !b.envs[vol.Environment.ID] {
		return fmt.Errorf("start volume %s: environment %s not prepared: %w",
			vol.VolumeUUID, vol.Environment.ID, sdk.ErrPrecondition)
	}
	v := b.vols[vol.VolumeUUID]
	if v == nil {
		v = &volume{rep: sdk.VolumeReplication{State: sdk.ReplicationAbsent}}
		b.vols[vol.VolumeUUID] = v
	}
	v.env = vol.Environment.ID
	switch v.rep.State {
	case sdk.ReplicationAbsent:
		// A standalone target left by StopVolume is resynced from scratch.
		v.synced = false
		v.rep = sdk.VolumeReplication{State: sdk.ReplicationSyncing, TargetExists: true}
	case sdk.ReplicationPaused:
		v.resume()
	}
	return nil
}

// VolumeStatus implements sdk.Backend. A syncing volume finishes its copy
// here, so the next status after a start reports it replaying.
func (b *Backend) VolumeStatus(ctx context.Context, vol sdk.Volume) (sdk.VolumeReplication, error) {
	if err := enter(ctx, "volume status %s", vol.VolumeUUID); err != nil {
		return sdk.VolumeReplication{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	v := b.vols[vol.VolumeUUID]
	if v == nil {
		return sdk.VolumeReplication{State: sdk.ReplicationAbsent}, nil
	}
	rep := v.rep
	if v.rep.State == sdk.ReplicationSyncing {
		// Report this step of the copy, and finish it for the next call.
		v.synced = true
		v.rep.State = sdk.ReplicationReplaying
		v.rep.Progress = 100
		v.rep.Lag = "0 entries"
		v.rep.LastSyncTime = b.now().UTC()
		rep.Progress = 50
	}
	return rep, nil
}

// PauseVolume implements sdk.Backend.
func (b *Backend) PauseVolume(ctx context.Context, vol sdk.Volume) error {
	if err := enter(ctx, "pause volume %s", vol.VolumeUUID); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	v := b.replicated(vol.VolumeUUID)
	if v == nil {
		return fmt.Errorf("pause volume %s: not replicated: %w", vol.VolumeUUID, sdk.ErrNotFound)
	}
	v.rep.State = sdk.ReplicationPaused
	return nil
}

// ResumeVolume implements sdk.Backend.
func (b *Backend) ResumeVolume(ctx context.Context, vol sdk.Volume) error {
	if err := enter(ctx, "resume volume %s", vol.VolumeUUID); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	v := b.replicated(vol.VolumeUUID)
	if v == nil {
		return fmt.Errorf("resume volume %s: not replicated: %w", vol.VolumeUUID, sdk.ErrNotFound)
	}
	v.resume()
	return nil
}

// StopVolume implements sdk.Backend. The target copy stays, standalone.
func (b *Backend) StopVolume(ctx context.Context, vol sdk.Volume) error {
	if err := enter(ctx, "stop volume %s", vol.VolumeUUID); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if v := b.replicated(vol.VolumeUUID); v != nil {
		if !v.synced {
			// Never keep a partial copy; a pause gives way to the stop.
			if v.rep.State == sdk.ReplicationPaused {
				v.resume()
			}
			return fmt.Errorf("stop volume %s: the first copy is not complete: %w", vol.VolumeUUID, sdk.ErrInProgress)
		}
		v.rep = sdk.VolumeReplication{State: sdk.ReplicationAbsent, TargetExists: true}
	}
	return nil
}

// DeleteTarget implements sdk.Backend. The copy is gone at once.
func (b *Backend) DeleteTarget(ctx context.Context, vol sdk.Volume) error {
	if err := enter(ctx, "delete target %s", vol.VolumeUUID); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.vols, vol.VolumeUUID)
	return nil
}

// DestroyVolume implements sdk.Backend. It forgets the volume's
// replication, its target copy and its snapshots' recovery points, and
// never leaves anything behind; the source keeps the volume and its
// snapshots.
func (b *Backend) DestroyVolume(ctx context.Context, vol sdk.Volume) (sdk.DestroyReport, error) {
	if err := enter(ctx, "destroy volume %s", vol.VolumeUUID); err != nil {
		return sdk.DestroyReport{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.vols, vol.VolumeUUID)
	for id, s := range b.snaps {
		if s.volume == vol.VolumeUUID {
			delete(b.snaps, id)
		}
	}
	return sdk.DestroyReport{}, nil
}

// AddSnapshot implements sdk.Backend. The snapshot is pending until the
// next SnapshotStatus.
func (b *Backend) AddSnapshot(ctx context.Context, snap sdk.Snapshot) error {
	if err := enter(ctx, "add snapshot %s", snap.SnapshotUUID); err != nil {
		return err
	}
	src, err := readSource(snap.Volume.Environment.Source)
	if err != nil {
		return fmt.Errorf("add snapshot %s: %w", snap.SnapshotUUID, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.snapshotOnSource(src, snap) {
		return fmt.Errorf("add snapshot %s of volume %s: no such snapshot on the source storage: %w",
			snap.SnapshotUUID, snap.Volume.VolumeUUID, sdk.ErrNotFound)
	}
	if _, ok := b.snaps[snap.SnapshotUUID]; !ok {
		b.snaps[snap.SnapshotUUID] = &snapshot{volume: snap.Volume.VolumeUUID, state: sdk.SnapshotPending}
	}
	return nil
}

// RemoveSnapshot implements sdk.Backend. The snapshot is gone from the
// source too, so adding it again is ErrNotFound.
func (b *Backend) RemoveSnapshot(ctx context.Context, snap sdk.Snapshot) error {
	if err := enter(ctx, "remove snapshot %s", snap.SnapshotUUID); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.snaps, snap.SnapshotUUID)
	delete(b.sourceSnaps, snap.SnapshotUUID)
	b.removed[snap.SnapshotUUID] = true
	return nil
}

// SnapshotStatus implements sdk.Backend.
func (b *Backend) SnapshotStatus(ctx context.Context, snap sdk.Snapshot) (sdk.SnapshotReplication, error) {
	if err := enter(ctx, "snapshot status %s", snap.SnapshotUUID); err != nil {
		return sdk.SnapshotReplication{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.snaps[snap.SnapshotUUID]
	if s == nil {
		return sdk.SnapshotReplication{State: sdk.SnapshotAbsent}, nil
	}
	st := s.state
	if st == sdk.SnapshotPending {
		s.state = sdk.SnapshotReady
		return sdk.SnapshotReplication{State: st, Description: "copying to the target"}, nil
	}
	return sdk.SnapshotReplication{State: st}, nil
}

// enter returns an error wrapping ctx's if ctx is done: every method
// checks on entry, as a real backend would between steps.
func enter(ctx context.Context, format string, args ...any) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstorage: "+format+": %w", append(args, err)...)
	}
	return nil
}

// replicated returns the volume if it is replicated. Callers hold mu.
func (b *Backend) replicated(volumeUUID string) *volume {
	v := b.vols[volumeUUID]
	if v == nil || v.rep.State == sdk.ReplicationAbsent {
		return nil
	}
	return v
}

// resume restarts replay of a paused or failed volume.
func (v *volume) resume() {
	switch v.rep.State {
	case sdk.ReplicationPaused:
		if v.synced {
			v.rep.State = sdk.ReplicationReplaying
			return
		}
	case sdk.ReplicationFailed:
		v.synced = false
	default:
		return
	}
	v.rep.State = sdk.ReplicationSyncing
	v.rep.Progress, v.rep.Description = 0, ""
}

// source is what a source storage's metadata says it holds.
type source struct {
	Volumes   []string          `json:"volumes"`
	Snapshots map[string]string `json:"snapshots"` // snapshot UUID → volume UUID
}

// readSource reads the source storage's metadata. Unknown fields are
// ignored: they are the storage's business. The error never quotes the
// metadata, which may hold secrets.
func readSource(s sdk.Storage) (source, error) {
	var src source
	if len(s.Metadata) == 0 {
		return src, nil
	}
	if err := json.Unmarshal(s.Metadata, &src); err != nil {
		return source{}, fmt.Errorf("metadata of storage %d is not the JSON object memstorage expects: %w",
			s.StorageID, sdk.ErrPrecondition)
	}
	return src, nil
}

// onSource reports whether the volume exists on the source. Callers hold
// mu.
func (b *Backend) onSource(src source, volumeUUID string) bool {
	return b.sourceVols[volumeUUID] || slices.Contains(src.Volumes, volumeUUID) ||
		b.autoSource && len(src.Volumes) == 0
}

// snapshotOnSource reports whether the snapshot exists on the source.
// Callers hold mu.
func (b *Backend) snapshotOnSource(src source, snap sdk.Snapshot) bool {
	if b.removed[snap.SnapshotUUID] {
		return false
	}
	if vol, ok := b.sourceSnaps[snap.SnapshotUUID]; ok {
		return vol == snap.Volume.VolumeUUID
	}
	if vol, ok := src.Snapshots[snap.SnapshotUUID]; ok {
		return vol == snap.Volume.VolumeUUID
	}
	return b.autoSource && len(src.Volumes) == 0
}
