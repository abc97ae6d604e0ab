package fake

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/cdmdr/mirror/ports"
)

var _ ports.StorageBackend = (*Backend)(nil)

// Backend is a scriptable ports.StorageBackend simulator.
//
// Volumes and snapshots must exist on the source (AddSourceVolume,
// AddSourceSnapshot) before they can be replicated. A started volume is
// syncing until Sync (or AutoSync) lets the next VolumeStatus report it
// replaying; a deleted target disappears after DeleteDelay more
// VolumeStatus calls; an added snapshot is pending for SnapshotDelay
// SnapshotStatus calls, then ready. Every method can be made to fail
// (FailNext, FailAlways) or to hang (Block), and every call is recorded
// (Calls, CallLog). Method names in these helpers are the Go method names,
// e.g. "StartVolume".
type Backend struct {
	mu   sync.Mutex
	info ports.Info
	now  func() time.Time

	envs        map[string]*envState  // by Environment.ID
	sourceVols  map[string]bool       // volume UUIDs on the source
	sourceSnaps map[string]string     // snapshot UUID → volume UUID on the source
	vols        map[string]*volState  // by volume UUID
	snaps       map[string]*snapState // by snapshot UUID
	leftovers   map[string][]string   // by volume UUID

	autoSync      bool
	deleteDelay   int
	snapshotDelay int

	failNext   map[string][]error
	failAlways map[string]error
	gates      map[string]chan struct{}
	blocked    map[string]int
	calls      map[string]int
	log        []string
}

type envState struct {
	prepared bool
	health   *ports.EnvironmentHealth // forced by SetEnvironmentHealth
}

type volState struct {
	env    string
	rep    ports.VolumeReplication
	synced bool // the first copy finished once: resume goes back to replaying
	// syncNow makes the next VolumeStatus of a syncing volume report
	// replaying (set by Sync).
	syncNow bool
	// deleting counts down the VolumeStatus calls before a deleted target
	// is gone; -1 when no delete is under way.
	deleting int
}

type snapState struct {
	volume string
	rep    ports.SnapshotReplication
	wait   int // SnapshotStatus calls still reporting pending
}

// NewBackend returns a backend serving the given storage types, by default
// "openstack.storage.type.ceph" so the specification's examples route to it.
func NewBackend(types ...string) *Backend {
	if len(types) == 0 {
		types = []string{"openstack.storage.type.ceph"}
	}
	return &Backend{
		info: ports.Info{
			Name:         "fake",
			Version:      "0.0.0",
			StorageTypes: types,
			Capabilities: ports.Capabilities{Pause: true, KeepTargetStop: true, Snapshots: true,
				SnapshotModes: []string{"journal", "snapshot"}},
		},
		now:         time.Now,
		envs:        map[string]*envState{},
		sourceVols:  map[string]bool{},
		sourceSnaps: map[string]string{},
		vols:        map[string]*volState{},
		snaps:       map[string]*snapState{},
		leftovers:   map[string][]string{},
		failNext:    map[string][]error{},
		failAlways:  map[string]error{},
		gates:       map[string]chan struct{}{},
		blocked:     map[string]int{},
		calls:       map[string]int{},
	}
}

// Info implements ports.StorageBackend.
func (b *Backend) Info(ctx context.Context) (ports.Info, error) {
	if err := b.enter(ctx, "Info", ""); err != nil {
		return ports.Info{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	info := b.info
	info.StorageTypes = slices.Clone(info.StorageTypes)
	info.Capabilities.SnapshotModes = slices.Clone(info.Capabilities.SnapshotModes)
	return info, nil
}

// PrepareEnvironment implements ports.StorageBackend.
func (b *Backend) PrepareEnvironment(ctx context.Context, env ports.Environment) error {
	if err := b.enter(ctx, "PrepareEnvironment", env.ID); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.envs[env.ID] = &envState{prepared: true}
	return nil
}

// EnvironmentStatus implements ports.StorageBackend.
func (b *Backend) EnvironmentStatus(ctx context.Context, env ports.Environment) (ports.EnvironmentHealth, error) {
	if err := b.enter(ctx, "EnvironmentStatus", env.ID); err != nil {
		return ports.EnvironmentHealth{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.envs[env.ID]
	switch {
	case e == nil:
		return ports.EnvironmentHealth{Description: "environment not prepared"}, nil
	case e.health != nil:
		return *e.health, nil
	case !e.prepared:
		return ports.EnvironmentHealth{Description: "environment not prepared"}, nil
	}
	return ports.EnvironmentHealth{Ready: true}, nil
}

// TeardownEnvironment implements ports.StorageBackend.
func (b *Backend) TeardownEnvironment(ctx context.Context, env ports.Environment) error {
	if err := b.enter(ctx, "TeardownEnvironment", env.ID); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	var busy []string
	for uuid, v := range b.vols {
		if v.env == env.ID && v.rep.State != ports.ReplicationAbsent {
			busy = append(busy, uuid)
		}
	}
	if len(busy) > 0 {
		slices.Sort(busy)
		return fmt.Errorf("teardown %s: volumes still replicated %v: %w", env.ID, busy, ports.ErrPrecondition)
	}
	delete(b.envs, env.ID)
	return nil
}

// StartVolume implements ports.StorageBackend. It needs the environment
// prepared (ErrPrecondition otherwise), like a real pool without mirroring
// enabled would.
func (b *Backend) StartVolume(ctx context.Context, vol ports.Volume) error {
	if err := b.enter(ctx, "StartVolume", vol.VolumeUUID); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.sourceVols[vol.VolumeUUID] {
		return fmt.Errorf("start volume %s: source volume: %w", vol.VolumeUUID, ports.ErrNotFound)
	}
	if e := b.envs[vol.Environment.ID]; e == nil || !e.prepared {
		return fmt.Errorf("start volume %s: environment %s not prepared: %w",
			vol.VolumeUUID, vol.Environment.ID, ports.ErrPrecondition)
	}
	v := b.vol(vol.VolumeUUID)
	v.env = vol.Environment.ID
	switch v.rep.State {
	case ports.ReplicationAbsent:
		v.synced = false
		v.deleting = -1
		v.rep = ports.VolumeReplication{State: ports.ReplicationSyncing, TargetExists: true}
		v.syncNow = v.syncNow || b.autoSync
	case ports.ReplicationPaused:
		b.resume(v)
	}
	return nil
}

// VolumeStatus implements ports.StorageBackend. This is where scripted
// progress happens: a synced volume turns replaying, a deleted target
// counts down to gone.
func (b *Backend) VolumeStatus(ctx context.Context, vol ports.Volume) (ports.VolumeReplication, error) {
	if err := b.enter(ctx, "VolumeStatus", vol.VolumeUUID); err != nil {
		return ports.VolumeReplication{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	v := b.vols[vol.VolumeUUID]
	if v == nil {
		return ports.VolumeReplication{State: ports.ReplicationAbsent}, nil
	}
	if v.rep.State == ports.ReplicationSyncing && (v.syncNow || b.autoSync) {
		v.syncNow = false
		v.synced = true
		v.rep.State = ports.ReplicationReplaying
		v.rep.Progress = 100
		v.rep.LastSyncTime = b.now()
	}
	if v.deleting == 0 {
		v.deleting = -1
		v.rep.TargetExists = false
	} else if v.deleting > 0 {
		v.deleting--
	}
	return v.rep, nil
}

// PauseVolume implements ports.StorageBackend.
func (b *Backend) PauseVolume(ctx context.Context, vol ports.Volume) error {
	if err := b.enter(ctx, "PauseVolume", vol.VolumeUUID); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	v := b.vols[vol.VolumeUUID]
	if v == nil || v.rep.State == ports.ReplicationAbsent {
		return fmt.Errorf("pause volume %s: not replicated: %w", vol.VolumeUUID, ports.ErrNotFound)
	}
	v.rep.State = ports.ReplicationPaused
	return nil
}

// ResumeVolume implements ports.StorageBackend. A failed volume restarts
// with a full resync, as Ceph does after a split brain.
func (b *Backend) ResumeVolume(ctx context.Context, vol ports.Volume) error {
	if err := b.enter(ctx, "ResumeVolume", vol.VolumeUUID); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	v := b.vols[vol.VolumeUUID]
	if v == nil || v.rep.State == ports.ReplicationAbsent {
		return fmt.Errorf("resume volume %s: not replicated: %w", vol.VolumeUUID, ports.ErrNotFound)
	}
	b.resume(v)
	return nil
}

// StopVolume implements ports.StorageBackend.
func (b *Backend) StopVolume(ctx context.Context, vol ports.Volume) error {
	if err := b.enter(ctx, "StopVolume", vol.VolumeUUID); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	v := b.vols[vol.VolumeUUID]
	if v == nil || v.rep.State == ports.ReplicationAbsent {
		return nil
	}
	v.rep = ports.VolumeReplication{State: ports.ReplicationAbsent, TargetExists: true}
	return nil
}

// DeleteTarget implements ports.StorageBackend.
func (b *Backend) DeleteTarget(ctx context.Context, vol ports.Volume) error {
	if err := b.enter(ctx, "DeleteTarget", vol.VolumeUUID); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	v := b.vols[vol.VolumeUUID]
	if v == nil {
		return nil
	}
	v.rep.State = ports.ReplicationAbsent
	v.rep.Progress, v.rep.Lag, v.rep.Description = 0, "", ""
	if !v.rep.TargetExists || v.deleting >= 0 {
		return nil // gone, or already on its way
	}
	if b.deleteDelay == 0 {
		v.rep.TargetExists = false
		return nil
	}
	v.deleting = b.deleteDelay
	return nil
}

// DestroyVolume implements ports.StorageBackend. It forgets the volume and
// its snapshots and reports the leftovers scripted with SetLeftovers.
func (b *Backend) DestroyVolume(ctx context.Context, vol ports.Volume) (ports.DestroyReport, error) {
	if err := b.enter(ctx, "DestroyVolume", vol.VolumeUUID); err != nil {
		return ports.DestroyReport{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.vols, vol.VolumeUUID)
	for id, s := range b.snaps {
		if s.volume == vol.VolumeUUID {
			delete(b.snaps, id)
		}
	}
	return ports.DestroyReport{Leftovers: slices.Clone(b.leftovers[vol.VolumeUUID])}, nil
}

// AddSnapshot implements ports.StorageBackend.
func (b *Backend) AddSnapshot(ctx context.Context, snap ports.Snapshot) error {
	if err := b.enter(ctx, "AddSnapshot", snap.SnapshotUUID); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, ok := b.sourceSnaps[snap.SnapshotUUID]; !ok {
		return fmt.Errorf("add snapshot %s: source snapshot: %w", snap.SnapshotUUID, ports.ErrNotFound)
	}
	if _, ok := b.snaps[snap.SnapshotUUID]; ok {
		return nil
	}
	b.snaps[snap.SnapshotUUID] = &snapState{
		volume: snap.Volume.VolumeUUID,
		rep:    ports.SnapshotReplication{State: ports.SnapshotPending},
		wait:   b.snapshotDelay,
	}
	return nil
}

// RemoveSnapshot implements ports.StorageBackend. The snapshot is gone
// from the source too, so adding it again is ErrNotFound.
func (b *Backend) RemoveSnapshot(ctx context.Context, snap ports.Snapshot) error {
	if err := b.enter(ctx, "RemoveSnapshot", snap.SnapshotUUID); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.snaps, snap.SnapshotUUID)
	delete(b.sourceSnaps, snap.SnapshotUUID)
	return nil
}

// SnapshotStatus implements ports.StorageBackend.
func (b *Backend) SnapshotStatus(ctx context.Context, snap ports.Snapshot) (ports.SnapshotReplication, error) {
	if err := b.enter(ctx, "SnapshotStatus", snap.SnapshotUUID); err != nil {
		return ports.SnapshotReplication{}, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.snaps[snap.SnapshotUUID]
	if s == nil {
		return ports.SnapshotReplication{State: ports.SnapshotAbsent}, nil
	}
	if s.rep.State == ports.SnapshotPending {
		if s.wait <= 0 {
			s.rep = ports.SnapshotReplication{State: ports.SnapshotReady}
		} else {
			s.wait--
		}
	}
	return s.rep, nil
}

// AddSourceVolume makes volumeUUID exist on the source storage.
func (b *Backend) AddSourceVolume(volumeUUID string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sourceVols[volumeUUID] = true
}

// AddSourceSnapshot makes snapshotUUID of volumeUUID exist on the source
// storage (and the volume too).
func (b *Backend) AddSourceSnapshot(volumeUUID, snapshotUUID string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.sourceVols[volumeUUID] = true
	b.sourceSnaps[snapshotUUID] = volumeUUID
}

// Sync ends the first copy of a syncing volume: its next VolumeStatus
// reports replaying.
func (b *Backend) Sync(volumeUUID string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.vol(volumeUUID).syncNow = true
}

// AutoSync makes every syncing volume report replaying on its next
// VolumeStatus, as if Sync were called after every start and resume.
func (b *Backend) AutoSync(on bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.autoSync = on
}

// DeleteDelay makes a deleted target still exist for n more VolumeStatus
// calls (default 0: gone at once).
func (b *Backend) DeleteDelay(n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.deleteDelay = n
}

// SnapshotDelay makes an added snapshot report pending for n SnapshotStatus
// calls before ready (default 0: the first SnapshotStatus reports ready).
func (b *Backend) SnapshotDelay(n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.snapshotDelay = n
}

// SetReplication forces what VolumeStatus observes for volumeUUID (for
// example State failed with Description "split-brain"). Later calls move on
// from it as from any other state.
func (b *Backend) SetReplication(volumeUUID string, rep ports.VolumeReplication) {
	b.mu.Lock()
	defer b.mu.Unlock()
	v := b.vol(volumeUUID)
	v.rep = rep
	if rep.State == ports.ReplicationReplaying {
		v.synced = true
	}
}

// Replication returns the volume's state without counting a call or
// moving the simulation on.
func (b *Backend) Replication(volumeUUID string) ports.VolumeReplication {
	b.mu.Lock()
	defer b.mu.Unlock()
	if v := b.vols[volumeUUID]; v != nil {
		return v.rep
	}
	return ports.VolumeReplication{State: ports.ReplicationAbsent}
}

// SetSnapshot forces what SnapshotStatus observes for snapshotUUID.
func (b *Backend) SetSnapshot(volumeUUID, snapshotUUID string, rep ports.SnapshotReplication) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.snaps[snapshotUUID] = &snapState{volume: volumeUUID, rep: rep}
}

// SetEnvironmentHealth forces what EnvironmentStatus reports for envID
// until the next PrepareEnvironment or TeardownEnvironment.
func (b *Backend) SetEnvironmentHealth(envID string, h ports.EnvironmentHealth) {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.envs[envID]
	if e == nil {
		e = &envState{}
		b.envs[envID] = e
	}
	e.health = &h
}

// Prepared reports whether envID is prepared (and not torn down).
func (b *Backend) Prepared(envID string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.envs[envID]
	return e != nil && e.prepared
}

// SetLeftovers scripts what DestroyVolume of volumeUUID reports it could
// not clean up.
func (b *Backend) SetLeftovers(volumeUUID string, leftovers ...string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.leftovers[volumeUUID] = leftovers
}

// SetInfo replaces what Info returns.
func (b *Backend) SetInfo(info ports.Info) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.info = info
}

// SetNow sets the time source for LastSyncTime (time.Now by default).
func (b *Backend) SetNow(now func() time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.now = now
}

// FailNext makes the next call of method return err. Several FailNext
// calls queue up.
func (b *Backend) FailNext(method string, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failNext[method] = append(b.failNext[method], err)
}

// FailAlways makes every call of method return err, until cleared with nil.
func (b *Backend) FailAlways(method string, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if err == nil {
		delete(b.failAlways, method)
		return
	}
	b.failAlways[method] = err
}

// Block holds every call of method, once counted and logged, until release
// is called or the call's ctx ends (the call then returns ctx's error).
func (b *Backend) Block(method string) (release func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	gate := make(chan struct{})
	b.gates[method] = gate
	var once sync.Once
	return func() {
		once.Do(func() {
			b.mu.Lock()
			defer b.mu.Unlock()
			if b.gates[method] == gate {
				delete(b.gates, method)
			}
			close(gate)
		})
	}
}

// Blocked returns how many calls of method Block is holding right now.
func (b *Backend) Blocked(method string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.blocked[method]
}

// Calls returns how many times method was called (failed calls included).
func (b *Backend) Calls(method string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.calls[method]
}

// CallLog returns every call in order as "Method subject", the subject
// being the environment ID, volume UUID or snapshot UUID ("Info" alone).
func (b *Backend) CallLog() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.log)
}

// enter records a call, holds it while blocked, and returns the error it
// must fail with: ctx's, then a FailNext one, then a FailAlways one.
func (b *Backend) enter(ctx context.Context, method, subject string) error {
	b.mu.Lock()
	b.calls[method]++
	entry := method
	if subject != "" {
		entry += " " + subject
	}
	b.log = append(b.log, entry)
	gate := b.gates[method]
	if gate != nil {
		b.blocked[method]++
	}
	b.mu.Unlock()

	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
		}
		b.mu.Lock()
		b.blocked[method]--
		b.mu.Unlock()
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if errs := b.failNext[method]; len(errs) > 0 {
		b.failNext[method] = errs[1:]
		return errs[0]
	}
	return b.failAlways[method]
}

// vol returns the state of volumeUUID, creating an absent one. Callers hold
// mu.
func (b *Backend) vol(volumeUUID string) *volState {
	v := b.vols[volumeUUID]
	if v == nil {
		v = &volState{rep: ports.VolumeReplication{State: ports.ReplicationAbsent}, deleting: -1}
		b.vols[volumeUUID] = v
	}
	return v
}

// resume restarts replay of a paused or failed volume. Callers hold mu.
func (b *Backend) resume(v *volState) {
	switch v.rep.State {
	case ports.ReplicationPaused:
		if v.synced {
			v.rep.State = ports.ReplicationReplaying
			return
		}
	case ports.ReplicationFailed:
		v.synced = false
	default:
		return
	}
	v.rep.State = ports.ReplicationSyncing
	v.rep.Progress, v.rep.Description = 0, ""
	v.syncNow = v.syncNow || b.autoSync
}
