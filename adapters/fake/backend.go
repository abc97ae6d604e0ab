package fake

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cdmdr/mirror/plugins/sdk/memstorage"
	"github.com/cdmdr/mirror/ports"
)

var _ ports.StorageBackend = (*Backend)(nil)

// Backend is the daemon's scripted storage backend: memstorage, the SDK's
// in-memory storage (the one model of a storage in the repository, which
// passes the conformance kit), under a layer of scripting for tests.
//
// Volumes and snapshots must exist on the source (AddSourceVolume,
// AddSourceSnapshot) before they can be replicated. A started volume's
// first copy (and a full resync) is held, so the volume is syncing, until
// Sync lets it complete (AutoSync: every copy completes at once), or a
// StopVolume comes: a stop lets the copy complete first, so that a test
// stopping an initializing volume needs no Sync. To see a stop wait for
// the copy (ErrInProgress, as memstorage and a real storage answer while
// it runs), hold it with HoldFirstCopy, which neither Sync nor a stop
// releases. The layer
// adds: a deleted target that still exists for DeleteDelay more
// VolumeStatus (or VolumeStatuses) calls, an added snapshot pending for SnapshotDelay
// SnapshotStatus calls, forced environment health and destroy leftovers,
// scripted kept recovery points (SetKept) and unintended replicas
// (SetUnintended), failures (FailNext, FailAlways), calls held (Block), and a record of
// every call (Calls, CallLog). Method names in these helpers are the Go
// method names, e.g. "StartVolume".
type Backend struct {
	mem *memstorage.Backend

	mu   sync.Mutex
	info ports.Info
	// now is the storage's clock (how far copies got, sync times); atomic,
	// since memstorage reads it while the fake may hold mu.
	now atomic.Pointer[func() time.Time]

	autoSync bool
	held     map[string]func() // our holds of first copies, released by Sync, by volume UUID
	syncNext map[string]bool   // Sync came before the copy started: do not hold it

	deleteDelay   int
	deleting      map[string]int // VolumeStatus calls still showing a deleted target
	snapshotDelay int
	snapWait      map[string]int // SnapshotStatus calls still reporting pending
	health        map[string]ports.EnvironmentHealth
	unintended    map[string][]string        // by environment ID, added to every EnvironmentStatus
	kept          map[string]ports.KeptPoint // by volume UUID, in every report of the volume
	leftovers     map[string][]string
	reports       map[string][]string // "Method subject" → leftovers a successful call reports

	failNext   map[string][]error
	failAlways map[string]error
	gates      map[string]chan struct{}
	blocked    map[string]int
	calls      map[string]int
	log        []string
}

// NewBackend returns a backend serving the given storage types, by default
// "openstack.storage.type.ceph" so the specification's examples route to it.
func NewBackend(types ...string) *Backend {
	if len(types) == 0 {
		types = []string{"openstack.storage.type.ceph"}
	}
	b := &Backend{
		info: ports.Info{
			Name:         "fake",
			Version:      "0.0.0",
			StorageTypes: types,
			Capabilities: ports.Capabilities{Pause: true, KeepTargetStop: true, Snapshots: true,
				SnapshotModes: []string{"journal", "snapshot"}},
		},
		held:       map[string]func(){},
		syncNext:   map[string]bool{},
		deleting:   map[string]int{},
		snapWait:   map[string]int{},
		health:     map[string]ports.EnvironmentHealth{},
		unintended: map[string][]string{},
		kept:       map[string]ports.KeptPoint{},
		leftovers:  map[string][]string{},
		reports:    map[string][]string{},
		failNext:   map[string][]error{},
		failAlways: map[string]error{},
		gates:      map[string]chan struct{}{},
		blocked:    map[string]int{},
		calls:      map[string]int{},
	}
	b.SetNow(time.Now)
	b.mem = memstorage.New(memstorage.Types(types...), memstorage.Clock(func() time.Time { return (*b.now.Load())() }))
	return b
}

// SetNow sets the storage's clock (time.Now by default), e.g. a test's
// fake clock, so sync times read as the test's time.
func (b *Backend) SetNow(now func() time.Time) { b.now.Store(&now) }

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
	delete(b.health, env.ID)
	b.mu.Unlock()
	return b.mem.PrepareEnvironment(ctx, env)
}

// EnvironmentStatus implements ports.StorageBackend.
func (b *Backend) EnvironmentStatus(ctx context.Context, env ports.Environment) (ports.EnvironmentHealth, error) {
	if err := b.enter(ctx, "EnvironmentStatus", env.ID); err != nil {
		return ports.EnvironmentHealth{}, err
	}
	b.mu.Lock()
	h, forced := b.health[env.ID]
	unintended := slices.Clone(b.unintended[env.ID])
	b.mu.Unlock()
	if !forced {
		var err error
		if h, err = b.mem.EnvironmentStatus(ctx, env); err != nil {
			return h, err
		}
	}
	h.Unintended = append(slices.Clone(h.Unintended), unintended...)
	return h, nil
}

// TeardownEnvironment implements ports.StorageBackend. A forced call is
// logged as "TeardownEnvironment <env ID> force".
func (b *Backend) TeardownEnvironment(ctx context.Context, env ports.Environment, force bool) (ports.CleanupReport, error) {
	subject := env.ID
	if force {
		subject += " force"
	}
	if err := b.enter(ctx, "TeardownEnvironment", subject); err != nil {
		return ports.CleanupReport{}, err
	}
	rep, err := b.mem.TeardownEnvironment(ctx, env, force)
	if err != nil {
		return rep, err
	}
	b.mu.Lock()
	delete(b.health, env.ID)
	rep.Leftovers = append(rep.Leftovers, b.reports["TeardownEnvironment "+subject]...)
	b.mu.Unlock()
	return rep, nil
}

// ReleaseEnvironment implements ports.StorageBackend: the call is logged
// (tests check who released what); memstorage runs nothing per host.
func (b *Backend) ReleaseEnvironment(ctx context.Context, env ports.Environment) error {
	if err := b.enter(ctx, "ReleaseEnvironment", env.ID); err != nil {
		return err
	}
	return b.mem.ReleaseEnvironment(ctx, env)
}

// StartVolume implements ports.StorageBackend. It needs the environment
// prepared (ErrPrecondition otherwise), like a real pool without mirroring
// enabled would.
func (b *Backend) StartVolume(ctx context.Context, vol ports.Volume) error {
	if err := b.enter(ctx, "StartVolume", vol.VolumeUUID); err != nil {
		return err
	}
	b.holdCopy(vol.VolumeUUID)
	if err := b.mem.StartVolume(ctx, vol); err != nil {
		return err
	}
	b.mu.Lock()
	delete(b.deleting, vol.VolumeUUID)
	b.mu.Unlock()
	return nil
}

// VolumeStatus implements ports.StorageBackend. A deleted target counts
// down its DeleteDelay here.
func (b *Backend) VolumeStatus(ctx context.Context, vol ports.Volume) (ports.VolumeReplication, error) {
	if err := b.enter(ctx, "VolumeStatus", vol.VolumeUUID); err != nil {
		return ports.VolumeReplication{}, err
	}
	rep, err := b.mem.VolumeStatus(ctx, vol)
	if err != nil {
		return rep, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.deleting[vol.VolumeUUID] > 0 {
		b.deleting[vol.VolumeUUID]--
		rep.TargetExists = true
	}
	if k, ok := b.kept[vol.VolumeUUID]; ok {
		rep.Kept = k
	}
	return rep, nil
}

// VolumeStatuses implements ports.StorageBackend: what VolumeStatus
// would say of each volume, deleted targets counting down their
// DeleteDelay as there. The call log says "VolumeStatuses <env ID> <n>",
// n the number of volumes asked; FailNext, FailAlways and Block name it
// "VolumeStatuses".
func (b *Backend) VolumeStatuses(ctx context.Context, env ports.Environment, vols []ports.Volume) ([]ports.VolumeReplication, error) {
	if err := b.enter(ctx, "VolumeStatuses", fmt.Sprintf("%s %d", env.ID, len(vols))); err != nil {
		return nil, err
	}
	reps, err := b.mem.VolumeStatuses(ctx, env, vols)
	if err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, vol := range vols {
		if b.deleting[vol.VolumeUUID] > 0 {
			b.deleting[vol.VolumeUUID]--
			reps[i].TargetExists = true
		}
		if k, ok := b.kept[vol.VolumeUUID]; ok {
			reps[i].Kept = k
		}
	}
	return reps, nil
}

// PauseVolume implements ports.StorageBackend.
func (b *Backend) PauseVolume(ctx context.Context, vol ports.Volume) error {
	if err := b.enter(ctx, "PauseVolume", vol.VolumeUUID); err != nil {
		return err
	}
	return b.mem.PauseVolume(ctx, vol)
}

// ResumeVolume implements ports.StorageBackend. A failed volume restarts
// with a full resync, as Ceph does after a split brain.
func (b *Backend) ResumeVolume(ctx context.Context, vol ports.Volume) error {
	if err := b.enter(ctx, "ResumeVolume", vol.VolumeUUID); err != nil {
		return err
	}
	b.holdCopy(vol.VolumeUUID)
	return b.mem.ResumeVolume(ctx, vol)
}

// StopVolume implements ports.StorageBackend. It lets a first copy held
// for want of Sync complete first.
func (b *Backend) StopVolume(ctx context.Context, vol ports.Volume) (ports.CleanupReport, error) {
	if err := b.enter(ctx, "StopVolume", vol.VolumeUUID); err != nil {
		return ports.CleanupReport{}, err
	}
	b.releaseCopy(vol.VolumeUUID)
	rep, err := b.mem.StopVolume(ctx, vol)
	if err != nil {
		return rep, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	rep.Leftovers = append(rep.Leftovers, b.reports["StopVolume "+vol.VolumeUUID]...)
	return rep, nil
}

// DeleteTarget implements ports.StorageBackend. The target still shows
// for DeleteDelay VolumeStatus calls.
func (b *Backend) DeleteTarget(ctx context.Context, vol ports.Volume) error {
	if err := b.enter(ctx, "DeleteTarget", vol.VolumeUUID); err != nil {
		return err
	}
	had := b.mem.Replication(vol.VolumeUUID).TargetExists
	if err := b.mem.DeleteTarget(ctx, vol); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if had && b.deleting[vol.VolumeUUID] == 0 {
		b.deleting[vol.VolumeUUID] = b.deleteDelay
	}
	return nil
}

// DestroyVolume implements ports.StorageBackend. It reports the leftovers
// scripted with SetLeftovers.
func (b *Backend) DestroyVolume(ctx context.Context, vol ports.Volume) (ports.CleanupReport, error) {
	if err := b.enter(ctx, "DestroyVolume", vol.VolumeUUID); err != nil {
		return ports.CleanupReport{}, err
	}
	rep, err := b.mem.DestroyVolume(ctx, vol)
	if err != nil {
		return rep, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.deleting, vol.VolumeUUID)
	rep.Leftovers = append(rep.Leftovers, b.leftovers[vol.VolumeUUID]...)
	return rep, nil
}

// AddSnapshot implements ports.StorageBackend.
func (b *Backend) AddSnapshot(ctx context.Context, snap ports.Snapshot) error {
	if err := b.enter(ctx, "AddSnapshot", snap.SnapshotUUID); err != nil {
		return err
	}
	before, _ := b.mem.SnapshotStatus(context.WithoutCancel(ctx), snap)
	if err := b.mem.AddSnapshot(ctx, snap); err != nil {
		return err
	}
	if before.State == ports.SnapshotAbsent {
		b.mu.Lock()
		b.snapWait[snap.SnapshotUUID] = b.snapshotDelay
		b.mu.Unlock()
	}
	return nil
}

// RemoveSnapshot implements ports.StorageBackend. The snapshot is gone
// from the source too, so adding it again is ErrNotFound.
func (b *Backend) RemoveSnapshot(ctx context.Context, snap ports.Snapshot) error {
	if err := b.enter(ctx, "RemoveSnapshot", snap.SnapshotUUID); err != nil {
		return err
	}
	if err := b.mem.RemoveSnapshot(ctx, snap); err != nil {
		return err
	}
	b.mu.Lock()
	delete(b.snapWait, snap.SnapshotUUID)
	b.mu.Unlock()
	return nil
}

// FindLeftovers implements ports.StorageBackend.
func (b *Backend) FindLeftovers(ctx context.Context, q ports.LeftoverQuery) ([]ports.Leftover, error) {
	if err := b.enter(ctx, "FindLeftovers", fmt.Sprintf("%d.%d", q.Storage.ClusterID, q.Storage.StorageID)); err != nil {
		return nil, err
	}
	return b.mem.FindLeftovers(ctx, q)
}

// SnapshotStatus implements ports.StorageBackend. An added snapshot counts
// down its SnapshotDelay here.
func (b *Backend) SnapshotStatus(ctx context.Context, snap ports.Snapshot) (ports.SnapshotReplication, error) {
	if err := b.enter(ctx, "SnapshotStatus", snap.SnapshotUUID); err != nil {
		return ports.SnapshotReplication{}, err
	}
	rep, err := b.mem.SnapshotStatus(ctx, snap)
	if err != nil || rep.State == ports.SnapshotAbsent {
		return rep, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.snapWait[snap.SnapshotUUID] > 0 {
		b.snapWait[snap.SnapshotUUID]--
		return ports.SnapshotReplication{State: ports.SnapshotPending, Description: "copying to the target"}, nil
	}
	return rep, nil
}

// CutStorage makes the storage unreachable, as a lost site's is, until
// restore is called (memstorage.Backend.CutStorage).
func (b *Backend) CutStorage(s ports.Storage) (restore func()) { return b.mem.CutStorage(s) }

// AddSourceVolume makes volumeUUID exist on the source storage.
func (b *Backend) AddSourceVolume(volumeUUID string) { b.mem.AddSourceVolume(volumeUUID) }

// AddSourceSnapshot makes snapshotUUID of volumeUUID exist on the source
// storage (and the volume too).
func (b *Backend) AddSourceSnapshot(volumeUUID, snapshotUUID string) {
	b.mem.AddSourceSnapshot(volumeUUID, snapshotUUID)
}

// Sync lets the volume's running first copy (or resync) complete: its
// next VolumeStatus reports replaying. Called before the copy starts, it
// lets that copy complete at once. A later resync is held again.
func (b *Backend) Sync(volumeUUID string) {
	if !b.releaseCopy(volumeUUID) {
		b.mu.Lock()
		b.syncNext[volumeUUID] = true
		b.mu.Unlock()
	}
}

// releaseCopy releases our hold of the volume's copy, if there is one.
func (b *Backend) releaseCopy(volumeUUID string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	release, ok := b.held[volumeUUID]
	if ok {
		delete(b.held, volumeUUID)
		release()
	}
	return ok
}

// AutoSync makes every first copy and resync complete at once, as if Sync
// were called after every start and resume.
func (b *Backend) AutoSync(on bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.autoSync = on
	if on {
		for uuid, release := range b.held {
			delete(b.held, uuid)
			release()
		}
	}
}

// HoldFirstCopy keeps the volume's first copy from completing, whatever
// Sync and AutoSync say, until release is called.
func (b *Backend) HoldFirstCopy(volumeUUID string) (release func()) {
	return b.mem.HoldFirstCopy(volumeUUID)
}

// holdCopy holds the copy a start or resume of the volume may begin,
// unless Sync or AutoSync let it complete.
func (b *Backend) holdCopy(volumeUUID string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.autoSync:
	case b.syncNext[volumeUUID]:
		delete(b.syncNext, volumeUUID)
	case b.held[volumeUUID] == nil:
		b.held[volumeUUID] = b.mem.HoldFirstCopy(volumeUUID)
	}
}

// DeleteDelay makes a deleted target still exist for n more VolumeStatus
// calls, or VolumeStatuses calls asking about it (default 0: gone at
// once).
func (b *Backend) DeleteDelay(n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.deleteDelay = n
}

// SnapshotDelay makes an added snapshot report pending for n SnapshotStatus
// calls before the storage's own answer (default 0: ready at the first
// SnapshotStatus once the volume's first copy is complete).
func (b *Backend) SnapshotDelay(n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.snapshotDelay = n
}

// SetReplication forces what the storage reports for volumeUUID (for
// example State failed with Description "split-brain"). Later calls move
// on from it as from any other state.
func (b *Backend) SetReplication(volumeUUID string, rep ports.VolumeReplication) {
	b.mem.SetReplication(volumeUUID, rep)
}

// Replication returns the volume's state without counting a call or
// moving a DeleteDelay on.
func (b *Backend) Replication(volumeUUID string) ports.VolumeReplication {
	rep := b.mem.Replication(volumeUUID)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.deleting[volumeUUID] > 0 {
		rep.TargetExists = true
	}
	return rep
}

// SetEnvironmentHealth forces what EnvironmentStatus reports for envID
// until the next PrepareEnvironment or TeardownEnvironment.
func (b *Backend) SetEnvironmentHealth(envID string, h ports.EnvironmentHealth) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.health[envID] = h
}

// SetUnintended scripts the replicas EnvironmentStatus of envID reports
// that no volume asked for (EnvironmentHealth.Unintended), added to what
// it reports anyway, until set again (none: clear).
func (b *Backend) SetUnintended(envID string, replicas ...string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(replicas) == 0 {
		delete(b.unintended, envID)
		return
	}
	b.unintended[envID] = slices.Clone(replicas)
}

// SetKept scripts the recovery point VolumeStatus and VolumeStatuses
// report kept for volumeUUID (VolumeReplication.Kept) in place of the
// storage's own, until set again (a KeptPoint without a Name: the
// storage's own again).
func (b *Backend) SetKept(volumeUUID string, k ports.KeptPoint) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if k.Name == "" {
		delete(b.kept, volumeUUID)
		return
	}
	b.kept[volumeUUID] = k
}

// Prepared reports whether envID is prepared (and not torn down).
func (b *Backend) Prepared(envID string) bool {
	h, err := b.mem.EnvironmentStatus(context.Background(), ports.Environment{ID: envID})
	return err == nil && h.Ready
}

// SetLeftovers scripts what DestroyVolume of volumeUUID reports it could
// not clean up.
func (b *Backend) SetLeftovers(volumeUUID string, leftovers ...string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.leftovers[volumeUUID] = leftovers
}

// SetReport scripts the leftovers a successful StopVolume (subject: the
// volume UUID) or TeardownEnvironment (subject: the environment ID, with
// " force" for a forced call, as CallLog shows it) reports, as a plugin
// does when one storage is unreachable.
func (b *Backend) SetReport(method, subject string, leftovers ...string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.reports[method+" "+subject] = leftovers
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
// being the environment ID, volume UUID or snapshot UUID ("Info" alone;
// "VolumeStatuses <env ID> <number of volumes>").
func (b *Backend) CallLog() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.log)
}

// DropCallLog forgets the calls recorded so far (CallLog), so a long
// benchmark's heap measures the daemon, not this record; Calls counts on.
func (b *Backend) DropCallLog() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.log = nil
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
