// Package memstorage is an in-memory storage backend: the reference
// implementation of sdk.Backend, which passes the plugintest conformance
// kit. It models a pair of storages closely enough for the daemon's
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
// A first copy (or a full resync) takes time, as on a real storage, and
// goes on whether or not anyone asks: it is done CopyTime after it
// started (the option, or "copy_time" in the source storage's metadata,
// a Go duration such as "30s"), counting only the time it is not paused,
// and every call sees how far it got. It does not complete while it is
// held: by HoldFirstCopy in the same process, or, over the wire, while
// the file named by "hold_first_copy" in the source storage's metadata
// exists. A snapshot of a volume is pending until the volume's first
// copy is complete, then ready.
//
// A storage can be made unreachable, as a lost site's is: by CutStorage
// in the same process, or, over the wire, while the file named by
// "cut_file" in the storage's metadata exists. A call that needs it then
// fails with ErrRetryable, except where the contract says the call copes
// with it (StopVolume, DestroyVolume, TeardownEnvironment): those do what
// the reachable storage allows, report the rest, and record it on the
// reachable storage, where FindLeftovers finds it.
package memstorage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// Name and Version are what Info reports.
const (
	Name    = "memstorage"
	Version = "1.2.0"
)

// DefaultType is the storage type served when no Types option is given.
const DefaultType = "openstack.storage.type.memory"

var _ sdk.Backend = (*Backend)(nil)

// Backend is an in-memory sdk.Backend. It is safe for concurrent use.
type Backend struct {
	info       sdk.Info
	autoSource bool
	now        func() time.Time
	copyTime   time.Duration

	mu          sync.Mutex
	envs        map[string]*pairing  // environments prepared on one side at least, by ID
	sourceVols  map[string]bool      // volume UUIDs added on the source (true) or removed from it (false)
	sourceSnaps map[string]string    // snapshot UUID → volume UUID added on the source
	removed     map[string]bool      // snapshot UUIDs removed from the source
	vols        map[string]*volume   // by volume UUID
	snaps       map[string]*snapshot // by snapshot UUID
	holds       map[string]int       // HoldFirstCopy calls not released, by volume UUID
	cuts        map[storageKey]int   // CutStorage calls not restored
	records     map[storageKey][]record
}

// pairing is an environment's set-up on each of its storages: a teardown
// with one storage unreachable ends it on the other only.
type pairing struct {
	source, target     storageKey
	onSource, onTarget bool
}

// volume is one volume's replication, and its copy on the target.
type volume struct {
	env            string
	source, target storageKey
	state          sdk.ReplicationState
	targetExists   bool
	// synced: the first copy is complete; a stop keeps the target, a
	// resume replays at once.
	synced   bool
	lastSync time.Time
	// description and lag are reported as they are (SetReplication).
	description, lag string

	// The running copy: it needs copyTime, had copied before copySince
	// (when it last went on), and is held while holdFile exists.
	copyTime  time.Duration
	copied    time.Duration
	copySince time.Time
	holdFile  string
}

type snapshot struct {
	volume string
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

// Clock sets the time source (time.Now by default): how far copies got,
// LastSyncTime.
func Clock(now func() time.Time) Option {
	return func(b *Backend) { b.now = now }
}

// CopyTime sets how long a first copy takes on a storage whose metadata
// does not say ("copy_time"); by default no time at all: the copy is
// done by the first call after the start that does not find it held.
func CopyTime(d time.Duration) Option {
	return func(b *Backend) { b.copyTime = d }
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
		envs:        map[string]*pairing{},
		sourceVols:  map[string]bool{},
		sourceSnaps: map[string]string{},
		removed:     map[string]bool{},
		vols:        map[string]*volume{},
		snaps:       map[string]*snapshot{},
		holds:       map[string]int{},
		cuts:        map[storageKey]int{},
		records:     map[storageKey][]record{},
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

// RemoveSourceVolume makes the volume gone from the source storage, as
// if its user deleted it there: the volume's replicated copy may then be
// its last one.
func (b *Backend) RemoveSourceVolume(volumeUUID string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sourceVols[volumeUUID] = false
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

// HoldFirstCopy keeps every first copy (or full resync) of the volume from
// completing until release is called: the copy runs on, at most 99% done.
// Holds add up; release is idempotent.
func (b *Backend) HoldFirstCopy(volumeUUID string) (release func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.holds[volumeUUID]++
	var once sync.Once
	return func() {
		once.Do(func() {
			b.mu.Lock()
			defer b.mu.Unlock()
			if b.holds[volumeUUID]--; b.holds[volumeUUID] == 0 {
				delete(b.holds, volumeUUID)
			}
		})
	}
}

// SetReplication makes the storage report rep for the volume, as an event
// outside the contract would (a split brain, an operator's command on the
// storage): State failed with a Description, replaying with the first
// copy complete, syncing with a copy starting now, absent with or
// without a copy on the target. Calls go on from there.
func (b *Backend) SetReplication(volumeUUID string, rep sdk.VolumeReplication) {
	b.mu.Lock()
	defer b.mu.Unlock()
	v := b.vols[volumeUUID]
	if v == nil {
		v = &volume{copyTime: b.copyTime}
		b.vols[volumeUUID] = v
	}
	v.state, v.targetExists = rep.State, rep.TargetExists
	v.description, v.lag = rep.Description, rep.Lag
	if !rep.LastSyncTime.IsZero() {
		v.lastSync = rep.LastSyncTime
	}
	switch rep.State {
	case sdk.ReplicationReplaying:
		v.synced = true
	case sdk.ReplicationSyncing:
		v.startCopy(b.now())
	case sdk.ReplicationAbsent:
		v.synced = false
	}
}

// Replication returns what VolumeStatus would report for the volume now,
// without a call.
func (b *Backend) Replication(volumeUUID string) sdk.VolumeReplication {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.report(volumeUUID)
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
// prepared, both reachable.
func (b *Backend) PrepareEnvironment(ctx context.Context, env sdk.Environment) error {
	if err := enter(ctx, "prepare environment %s", env.ID); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.reach(env.Source, env.Target); err != nil {
		return fmt.Errorf("prepare environment %s: %w", env.ID, err)
	}
	src, dst := keyOf(env.Source), keyOf(env.Target)
	b.envs[env.ID] = &pairing{source: src, target: dst, onSource: true, onTarget: true}
	b.forget(src, env.ID, kindPairing)
	b.forget(dst, env.ID, kindPairing)
	return nil
}

// EnvironmentStatus implements sdk.Backend. It needs both storages.
func (b *Backend) EnvironmentStatus(ctx context.Context, env sdk.Environment) (sdk.EnvironmentHealth, error) {
	if err := enter(ctx, "environment status %s", env.ID); err != nil {
		return sdk.EnvironmentHealth{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.reach(env.Source, env.Target); err != nil {
		return sdk.EnvironmentHealth{}, fmt.Errorf("environment status %s: %w", env.ID, err)
	}
	if p := b.envs[env.ID]; p == nil || !p.onSource || !p.onTarget {
		return sdk.EnvironmentHealth{Description: "environment not prepared"}, nil
	}
	return sdk.EnvironmentHealth{Ready: true}, nil
}

// ReleaseEnvironment implements sdk.Backend: memstorage runs nothing per
// host, and its state is the storage's.
func (b *Backend) ReleaseEnvironment(ctx context.Context, env sdk.Environment) error {
	return enter(ctx, "release environment %s", env.ID)
}

// TeardownEnvironment implements sdk.Backend. With one storage
// unreachable it ends the pairing on the other, and records there what it
// left on the lost one; force leaves replicated volumes as they are.
func (b *Backend) TeardownEnvironment(ctx context.Context, env sdk.Environment, force bool) (sdk.CleanupReport, error) {
	if err := enter(ctx, "teardown environment %s", env.ID); err != nil {
		return sdk.CleanupReport{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	srcErr, dstErr := b.unreachable(env.Source), b.unreachable(env.Target)
	if srcErr != nil && dstErr != nil {
		return sdk.CleanupReport{}, fmt.Errorf("teardown environment %s: nothing could be torn down: %w; %w", env.ID, srcErr, dstErr)
	}
	var busy []string
	for id, v := range b.vols {
		if v.env == env.ID && v.state != sdk.ReplicationAbsent {
			busy = append(busy, id)
		}
	}
	slices.Sort(busy)
	if len(busy) > 0 && !force {
		return sdk.CleanupReport{}, fmt.Errorf("teardown environment %s: volumes still replicated %v, stop or destroy them first: %w",
			env.ID, busy, sdk.ErrPrecondition)
	}
	var rep sdk.CleanupReport
	for _, id := range busy {
		v := b.vols[id]
		rep.Leftovers = append(rep.Leftovers, words(forcedVolume(id, v.source, v.target)))
	}
	p := b.envs[env.ID]
	if p == nil {
		return rep, nil
	}
	if srcErr == nil {
		p.onSource = false
	} else if p.onSource {
		lo := pairingLeft(env.ID, p.source)
		rep.Leftovers = append(rep.Leftovers, words(lo))
		b.record(p.target, env.ID, lo)
	}
	if dstErr == nil {
		p.onTarget = false
	} else if p.onTarget {
		lo := pairingLeft(env.ID, p.target)
		rep.Leftovers = append(rep.Leftovers, words(lo))
		b.record(p.source, env.ID, lo)
	}
	if !p.onSource && !p.onTarget {
		delete(b.envs, env.ID)
		b.forget(p.source, env.ID, kindPairing)
		b.forget(p.target, env.ID, kindPairing)
	}
	return rep, nil
}

// StartVolume implements sdk.Backend. The first copy starts now and
// takes the source storage's copy time.
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
	if err := b.reach(vol.Environment.Source, vol.Environment.Target); err != nil {
		return fmt.Errorf("start volume %s: %w", vol.VolumeUUID, err)
	}
	if !b.onSource(src, vol.VolumeUUID) {
		return fmt.Errorf("start volume %s: no such volume on the source storage: %w", vol.VolumeUUID, sdk.ErrNotFound)
	}
	if p := b.envs[vol.Environment.ID]; p == nil || !p.onSource || !p.onTarget {
		return fmt.Errorf("start volume %s: environment %s not prepared: %w",
			vol.VolumeUUID, vol.Environment.ID, sdk.ErrPrecondition)
	}
	v := b.volume(vol.VolumeUUID)
	if v == nil {
		v = &volume{state: sdk.ReplicationAbsent}
		b.vols[vol.VolumeUUID] = v
	}
	v.env = vol.Environment.ID
	v.source, v.target = keyOf(vol.Environment.Source), keyOf(vol.Environment.Target)
	switch v.state {
	case sdk.ReplicationAbsent:
		// A standalone target left by StopVolume is resynced from scratch.
		v.copyTime, v.holdFile = b.copyTime, src.HoldFirstCopy
		if src.CopyTime != "" {
			v.copyTime = src.copyTime
		}
		v.targetExists = true
		v.startCopy(b.now())
	case sdk.ReplicationPaused:
		v.resume(b.now())
	}
	return nil
}

// VolumeStatus implements sdk.Backend. It reads the target storage.
func (b *Backend) VolumeStatus(ctx context.Context, vol sdk.Volume) (sdk.VolumeReplication, error) {
	if err := enter(ctx, "volume status %s", vol.VolumeUUID); err != nil {
		return sdk.VolumeReplication{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.reach(vol.Environment.Target); err != nil {
		return sdk.VolumeReplication{}, fmt.Errorf("volume status %s: %w", vol.VolumeUUID, err)
	}
	return b.report(vol.VolumeUUID), nil
}

// VolumeStatuses implements sdk.Backend: what VolumeStatus says of each
// volume, all read at one instant.
func (b *Backend) VolumeStatuses(ctx context.Context, env sdk.Environment, vols []sdk.Volume) ([]sdk.VolumeReplication, error) {
	if err := enter(ctx, "volume statuses in environment %s", env.ID); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.reach(env.Target); err != nil {
		return nil, fmt.Errorf("volume statuses in environment %s: %w", env.ID, err)
	}
	reps := make([]sdk.VolumeReplication, len(vols))
	for i, vol := range vols {
		reps[i] = b.report(vol.VolumeUUID)
	}
	return reps, nil
}

// PauseVolume implements sdk.Backend. A paused first copy stops where it
// is, and goes on from there when resumed. Replay stops on the target:
// the source is not needed.
func (b *Backend) PauseVolume(ctx context.Context, vol sdk.Volume) error {
	if err := enter(ctx, "pause volume %s", vol.VolumeUUID); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.reach(vol.Environment.Target); err != nil {
		return fmt.Errorf("pause volume %s: %w", vol.VolumeUUID, err)
	}
	v := b.replicated(vol.VolumeUUID)
	if v == nil {
		return fmt.Errorf("pause volume %s: not replicated: %w", vol.VolumeUUID, sdk.ErrNotFound)
	}
	if v.state == sdk.ReplicationSyncing {
		v.copied = v.elapsed(b.now())
	}
	v.state = sdk.ReplicationPaused
	return nil
}

// ResumeVolume implements sdk.Backend. Replay needs both storages.
func (b *Backend) ResumeVolume(ctx context.Context, vol sdk.Volume) error {
	if err := enter(ctx, "resume volume %s", vol.VolumeUUID); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.reach(vol.Environment.Source, vol.Environment.Target); err != nil {
		return fmt.Errorf("resume volume %s: %w", vol.VolumeUUID, err)
	}
	v := b.replicated(vol.VolumeUUID)
	if v == nil {
		return fmt.Errorf("resume volume %s: not replicated: %w", vol.VolumeUUID, sdk.ErrNotFound)
	}
	v.resume(b.now())
	return nil
}

// StopVolume implements sdk.Backend. The target copy stays, standalone.
// It needs the target; with the source unreachable a complete copy is
// kept all the same, and the replication left set up on the source is
// reported and recorded on the target.
func (b *Backend) StopVolume(ctx context.Context, vol sdk.Volume) (sdk.CleanupReport, error) {
	if err := enter(ctx, "stop volume %s", vol.VolumeUUID); err != nil {
		return sdk.CleanupReport{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.reach(vol.Environment.Target); err != nil {
		return sdk.CleanupReport{}, fmt.Errorf("stop volume %s: %w", vol.VolumeUUID, err)
	}
	v := b.replicated(vol.VolumeUUID)
	if v == nil {
		return sdk.CleanupReport{}, nil
	}
	srcErr := b.unreachable(vol.Environment.Source)
	now := b.now()
	switch {
	case !v.synced && srcErr != nil:
		return sdk.CleanupReport{}, fmt.Errorf("stop volume %s: the first copy is only %d%% done and cannot be kept "+
			"while the source storage %s is unreachable; bring the source back to let it complete, or delete the "+
			"target copy: %w", vol.VolumeUUID, v.progress(now), keyOf(vol.Environment.Source), sdk.ErrPrecondition)
	case !v.synced:
		// Never keep a partial copy; a pause gives way to the stop.
		if v.state == sdk.ReplicationPaused {
			v.resume(now)
		}
		return sdk.CleanupReport{}, fmt.Errorf("stop volume %s: the first copy is %d%% done, the target is kept once it is complete: %w",
			vol.VolumeUUID, v.progress(now), sdk.ErrInProgress)
	}
	v.standalone()
	if srcErr == nil {
		return sdk.CleanupReport{}, nil
	}
	lo := sourceStillMirrored(vol, "StopVolume kept the copy on the target")
	b.record(v.target, vol.VolumeUUID, lo)
	return sdk.CleanupReport{Leftovers: []string{words(lo)}}, nil
}

// DeleteTarget implements sdk.Backend. The copy is gone at once. It
// needs the target, and the source too while the volume is replicated
// (replication ends there).
func (b *Backend) DeleteTarget(ctx context.Context, vol sdk.Volume) error {
	if err := enter(ctx, "delete target %s", vol.VolumeUUID); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	need := []sdk.Storage{vol.Environment.Target}
	if b.replicated(vol.VolumeUUID) != nil {
		need = append(need, vol.Environment.Source)
	}
	if err := b.reach(need...); err != nil {
		return fmt.Errorf("delete target %s: %w", vol.VolumeUUID, err)
	}
	delete(b.vols, vol.VolumeUUID)
	for _, s := range need {
		b.forget(keyOf(s), vol.VolumeUUID, kindCopy)
	}
	return nil
}

// DestroyVolume implements sdk.Backend. It forgets the volume's
// replication, its replicated target copy and its snapshots' recovery
// points. The source keeps the volume and its snapshots, and a standalone
// copy left by StopVolume stays. With the source unreachable, or the
// volume gone from it, the replicated copy is kept standalone, since it
// may be the last one; with the target unreachable it stays as it is;
// either way what is left is reported and recorded on the reachable
// storage.
func (b *Backend) DestroyVolume(ctx context.Context, vol sdk.Volume) (sdk.CleanupReport, error) {
	if err := enter(ctx, "destroy volume %s", vol.VolumeUUID); err != nil {
		return sdk.CleanupReport{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	src, dst := keyOf(vol.Environment.Source), keyOf(vol.Environment.Target)
	srcErr, dstErr := b.unreachable(vol.Environment.Source), b.unreachable(vol.Environment.Target)
	if srcErr != nil && dstErr != nil {
		return sdk.CleanupReport{}, fmt.Errorf("destroy volume %s: could not even try: %w; %w", vol.VolumeUUID, srcErr, dstErr)
	}
	var rep sdk.CleanupReport
	leave := func(on storageKey, lo sdk.Leftover) {
		rep.Leftovers = append(rep.Leftovers, words(lo))
		b.record(on, vol.VolumeUUID, lo)
	}
	v := b.replicated(vol.VolumeUUID)
	switch {
	case srcErr != nil:
		if v != nil {
			leave(dst, keptCopy(vol, v.synced, fmt.Sprintf("the source storage %s was unreachable", src)))
			leave(dst, sourceStillMirrored(vol, "DestroyVolume kept the copy on the target"))
			v.standalone()
		}
	case dstErr != nil:
		if v != nil {
			leave(src, copyNotDeleted(vol))
		}
	default:
		b.forget(dst, vol.VolumeUUID, kindVolume)
		if v == nil {
			break
		}
		// The copy goes only if the source volume is known intact.
		if meta, err := readSource(vol.Environment.Source); err != nil || !b.onSource(meta, vol.VolumeUUID) {
			leave(dst, keptCopy(vol, v.synced, fmt.Sprintf("the volume was not found on the source storage %s", src)))
			v.standalone()
			break
		}
		delete(b.vols, vol.VolumeUUID)
		b.forget(src, vol.VolumeUUID, kindCopy)
		b.forget(dst, vol.VolumeUUID, kindCopy)
	}
	for id, s := range b.snaps {
		if s.volume == vol.VolumeUUID {
			delete(b.snaps, id)
		}
	}
	return rep, nil
}

// AddSnapshot implements sdk.Backend. The snapshot is pending until the
// volume's first copy is complete.
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
	if err := b.reach(snap.Volume.Environment.Source, snap.Volume.Environment.Target); err != nil {
		return fmt.Errorf("add snapshot %s: %w", snap.SnapshotUUID, err)
	}
	if !b.snapshotOnSource(src, snap) {
		return fmt.Errorf("add snapshot %s of volume %s: no such snapshot on the source storage: %w",
			snap.SnapshotUUID, snap.Volume.VolumeUUID, sdk.ErrNotFound)
	}
	if _, ok := b.snaps[snap.SnapshotUUID]; !ok {
		b.snaps[snap.SnapshotUUID] = &snapshot{volume: snap.Volume.VolumeUUID}
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
	if err := b.reach(snap.Volume.Environment.Source, snap.Volume.Environment.Target); err != nil {
		return fmt.Errorf("remove snapshot %s: %w", snap.SnapshotUUID, err)
	}
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
	if err := b.reach(snap.Volume.Environment.Target); err != nil {
		return sdk.SnapshotReplication{}, fmt.Errorf("snapshot status %s: %w", snap.SnapshotUUID, err)
	}
	s := b.snaps[snap.SnapshotUUID]
	if s == nil {
		return sdk.SnapshotReplication{State: sdk.SnapshotAbsent}, nil
	}
	if v := b.replicated(s.volume); v == nil || !v.synced {
		return sdk.SnapshotReplication{State: sdk.SnapshotPending,
			Description: "on the target once the volume's first copy is complete"}, nil
	}
	return sdk.SnapshotReplication{State: sdk.SnapshotReady}, nil
}

// enter returns an error wrapping ctx's if ctx is done: every method
// checks on entry, as a real backend would between steps.
func enter(ctx context.Context, format string, args ...any) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("memstorage: "+format+": %w", append(args, err)...)
	}
	return nil
}

// volume returns the volume as it is now, its copy moved on to the
// present, or nil if the storage knows nothing of it. Callers hold mu.
func (b *Backend) volume(volumeUUID string) *volume {
	v := b.vols[volumeUUID]
	if v != nil && v.state == sdk.ReplicationSyncing {
		b.advance(volumeUUID, v)
	}
	return v
}

// replicated returns the volume if it is replicated. Callers hold mu.
func (b *Backend) replicated(volumeUUID string) *volume {
	v := b.volume(volumeUUID)
	if v == nil || v.state == sdk.ReplicationAbsent {
		return nil
	}
	return v
}

// report is what VolumeStatus says of the volume. Callers hold mu.
func (b *Backend) report(volumeUUID string) sdk.VolumeReplication {
	v := b.volume(volumeUUID)
	if v == nil {
		return sdk.VolumeReplication{State: sdk.ReplicationAbsent}
	}
	rep := sdk.VolumeReplication{State: v.state, TargetExists: v.targetExists, LastSyncTime: v.lastSync,
		Lag: v.lag, Description: v.description}
	switch {
	case v.state == sdk.ReplicationSyncing:
		rep.Progress = v.progress(b.now())
	case v.synced && v.state == sdk.ReplicationReplaying:
		rep.Progress = 100
		if rep.Lag == "" {
			rep.Lag = "0 entries"
		}
	}
	return rep
}

// advance completes the syncing volume's copy if its time has come and
// nothing holds it. Callers hold mu.
func (b *Backend) advance(volumeUUID string, v *volume) {
	now := b.now()
	if v.elapsed(now) < v.copyTime {
		return
	}
	if b.holds[volumeUUID] > 0 || v.holdFile != "" && fileExists(v.holdFile) {
		// The copy waits at its end; once released it completes then.
		v.copied, v.copySince = v.copyTime, now
		return
	}
	v.state, v.synced = sdk.ReplicationReplaying, true
	v.lastSync = v.copySince.Add(v.copyTime - v.copied).UTC()
	v.description = ""
}

// startCopy starts a full copy now.
func (v *volume) startCopy(now time.Time) {
	v.state, v.synced = sdk.ReplicationSyncing, false
	v.copied, v.copySince = 0, now
	v.description, v.lag = "", ""
}

// standalone ends the volume's replication, its copy kept on the target
// as a volume of its own.
func (v *volume) standalone() {
	*v = volume{env: v.env, source: v.source, target: v.target, state: sdk.ReplicationAbsent,
		targetExists: true, lastSync: v.lastSync}
}

// elapsed is how long the syncing volume's copy has run by now.
func (v *volume) elapsed(now time.Time) time.Duration {
	if v.state != sdk.ReplicationSyncing {
		return v.copied
	}
	return v.copied + now.Sub(v.copySince)
}

// progress is how far the copy is, 0-99 until it is complete.
func (v *volume) progress(now time.Time) int {
	if v.copyTime <= 0 {
		return 0
	}
	return min(99, int(100*v.elapsed(now)/v.copyTime))
}

// resume restarts replay of a paused or failed volume: a paused first
// copy goes on from where it was, a failed replication resyncs in full.
func (v *volume) resume(now time.Time) {
	switch {
	case v.state == sdk.ReplicationPaused && v.synced:
		v.state = sdk.ReplicationReplaying
	case v.state == sdk.ReplicationPaused:
		v.state, v.copySince = sdk.ReplicationSyncing, now
	case v.state == sdk.ReplicationFailed:
		v.startCopy(now)
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, os.ErrNotExist)
}

// source is what a source storage's metadata says it holds.
type source struct {
	Volumes   []string          `json:"volumes"`
	Snapshots map[string]string `json:"snapshots"` // snapshot UUID → volume UUID
	// CopyTime is how long a first copy takes, a Go duration ("30s").
	CopyTime string `json:"copy_time"`
	// HoldFirstCopy names a file: while it exists, no first copy of a
	// volume of this storage completes.
	HoldFirstCopy string `json:"hold_first_copy"`

	copyTime time.Duration
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
	if src.CopyTime != "" {
		d, err := time.ParseDuration(src.CopyTime)
		if err != nil || d < 0 {
			return source{}, fmt.Errorf("metadata of storage %d: copy_time is not a duration such as \"30s\": %w",
				s.StorageID, sdk.ErrPrecondition)
		}
		src.copyTime = d
	}
	return src, nil
}

// onSource reports whether the volume exists on the source. Callers hold
// mu.
func (b *Backend) onSource(src source, volumeUUID string) bool {
	if added, ok := b.sourceVols[volumeUUID]; ok {
		return added
	}
	return slices.Contains(src.Volumes, volumeUUID) ||
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

// HoldFile holds first copies across the process boundary: named as
// "hold_first_copy" in a source storage's metadata, while the file exists
// no first copy of a volume of that storage completes. A harness's
// plugintest.FirstCopyHolder over the wire calls Hold.
type HoldFile string

// Hold creates the file; release removes it (idempotent).
func (f HoldFile) Hold() (release func(), err error) {
	release, err = touch(string(f))
	if err != nil {
		return nil, fmt.Errorf("hold first copies: %w", err)
	}
	return release, nil
}

// touch creates the file at path; remove removes it (idempotent).
func touch(path string) (remove func(), err error) {
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		return nil, err
	}
	var once sync.Once
	return func() { once.Do(func() { _ = os.Remove(path) }) }, nil
}
