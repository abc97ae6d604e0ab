package memstorage_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cdmdr/mirror/plugins/sdk"
	"github.com/cdmdr/mirror/plugins/sdk/memstorage"
	"github.com/cdmdr/mirror/plugins/sdk/plugintest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// storageIDs numbers the storages of every harness, so each subtest has
// an environment of its own.
var storageIDs atomic.Uint64

type harness struct {
	b    sdk.Backend
	env  sdk.Environment
	vol  sdk.Volume
	snap sdk.Snapshot
	// hold holds the volume's first copy and cut cuts the source: in the
	// same process through the backend, over the wire through the files
	// the metadata names.
	hold func(t *testing.T) (release func())
	cut  func(t *testing.T) (restore func())
}

func (h *harness) HoldFirstCopy(t *testing.T) (release func()) { return h.hold(t) }
func (h *harness) CutSource(t *testing.T) (restore func())     { return h.cut(t) }

func (h *harness) Backend() sdk.Backend         { return h.b }
func (h *harness) Environment() sdk.Environment { return h.env }
func (h *harness) Volume() sdk.Volume           { return h.vol }
func (h *harness) Snapshot() sdk.Snapshot       { return h.snap }
func (h *harness) Timeout() time.Duration       { return 5 * time.Second }

// newEnvironment returns a pair of fresh storages of memstorage's default
// type; the source's metadata is sourceMetadata.
func newHarness(b sdk.Backend, sourceMetadata func(vol, snap string) json.RawMessage) *harness {
	src, dst := storageIDs.Add(1), storageIDs.Add(1)
	volUUID, snapUUID := plugintest.NewUUID(), plugintest.NewUUID()
	storage := func(cluster, id uint64) sdk.Storage {
		return sdk.Storage{ClusterID: cluster, StorageID: id, Type: memstorage.DefaultType, BackendName: "memory"}
	}
	env := sdk.Environment{ID: fmt.Sprintf("storage.%d.%d", src, dst), Source: storage(1, src), Target: storage(2, dst)}
	if sourceMetadata != nil {
		env.Source.Metadata = sourceMetadata(volUUID, snapUUID)
	}
	vol := sdk.Volume{Environment: env, ClusterID: 1, VolumeID: src, VolumeUUID: volUUID}
	return &harness{b: b, env: env, vol: vol, snap: sdk.Snapshot{
		Volume: vol, SnapshotID: src, SnapshotUUID: snapUUID, SnapshotName: "snapshot-" + snapUUID,
	}}
}

// added is a harness whose source volume and snapshot were added with
// AddSourceSnapshot, and whose first copy is held with HoldFirstCopy.
func added(t *testing.T) plugintest.Harness {
	b := memstorage.New()
	h := newHarness(b, nil)
	b.AddSourceSnapshot(h.vol.VolumeUUID, h.snap.SnapshotUUID)
	h.hold = func(*testing.T) func() { return b.HoldFirstCopy(h.vol.VolumeUUID) }
	h.cut = func(*testing.T) func() { return b.CutStorage(h.env.Source) }
	return h
}

// listed is a harness whose source volume and snapshot are listed in the
// source storage's metadata, whose first copy is held and whose source is
// cut by files the metadata names, as a harness over the wire does it.
func listed(t *testing.T) plugintest.Harness {
	dir := t.TempDir()
	holdFile := memstorage.HoldFile(filepath.Join(dir, "hold"))
	cutFile := memstorage.CutFile(filepath.Join(dir, "cut"))
	h := newHarness(memstorage.New(memstorage.AutoSource()), func(vol, snap string) json.RawMessage {
		return listing(vol, snap, string(holdFile), string(cutFile))
	})
	h.hold = func(t *testing.T) func() {
		release, err := holdFile.Hold()
		if err != nil {
			t.Fatal(err)
		}
		return release
	}
	h.cut = func(t *testing.T) func() {
		restore, err := cutFile.Cut()
		if err != nil {
			t.Fatal(err)
		}
		return restore
	}
	return h
}

func listing(vol, snap, holdFile, cutFile string) json.RawMessage {
	return json.RawMessage(fmt.Sprintf(`{"pool": "volumes", "volumes": [%q], "snapshots": {%q: %q}, "hold_first_copy": %q, "cut_file": %q}`,
		vol, snap, vol, holdFile, cutFile))
}

func TestConformance(t *testing.T) { plugintest.Run(t, added) }

func TestConformanceGRPC(t *testing.T) { plugintest.RunGRPC(t, added) }

func TestConformanceMetadataSource(t *testing.T) { plugintest.RunGRPC(t, listed) }

func TestAutoSource(t *testing.T) {
	ctx := t.Context()
	b := memstorage.New(memstorage.AutoSource(), memstorage.Types("openstack.storage.type.a", "openstack.storage.type.b"))
	info, err := b.Info(ctx)
	if err != nil || len(info.StorageTypes) != 2 || info.Name != memstorage.Name {
		t.Fatalf("Info = %+v, %v", info, err)
	}
	h := newHarness(b, nil)
	if err := b.PrepareEnvironment(ctx, h.env); err != nil {
		t.Fatal(err)
	}
	// Any volume and snapshot exists on a source that lists none.
	if err := b.StartVolume(ctx, h.vol); err != nil {
		t.Fatalf("StartVolume with AutoSource: %v", err)
	}
	if err := b.AddSnapshot(ctx, h.snap); err != nil {
		t.Fatalf("AddSnapshot with AutoSource: %v", err)
	}
	// A removed snapshot is gone from the source.
	if err := b.RemoveSnapshot(ctx, h.snap); err != nil {
		t.Fatal(err)
	}
	if err := b.AddSnapshot(ctx, h.snap); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("AddSnapshot of a removed snapshot = %v, want ErrNotFound", err)
	}

	// Without AutoSource, nothing exists on a source that lists nothing.
	plain := memstorage.New()
	if err := plain.PrepareEnvironment(ctx, h.env); err != nil {
		t.Fatal(err)
	}
	if err := plain.StartVolume(ctx, h.vol); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("StartVolume without a source volume = %v, want ErrNotFound", err)
	}
}

func TestBadMetadata(t *testing.T) {
	b := memstorage.New()
	h := newHarness(b, func(string, string) json.RawMessage { return json.RawMessage(`{"volumes": "keyring-secret"}`) })
	err := b.StartVolume(t.Context(), h.vol)
	if !errors.Is(err, sdk.ErrPrecondition) {
		t.Fatalf("StartVolume with unreadable metadata = %v, want ErrPrecondition", err)
	}
	if msg := err.Error(); strings.Contains(msg, "keyring-secret") {
		t.Fatalf("the error quotes the metadata: %s", msg)
	}
}

// clock is a settable time source.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// started returns a backend on clk whose first copies take copyTime, and
// a volume of it just started.
func started(t *testing.T, clk *clock, copyTime time.Duration) (*memstorage.Backend, sdk.Volume) {
	t.Helper()
	b := memstorage.New(memstorage.Clock(clk.Now), memstorage.CopyTime(copyTime))
	h := newHarness(b, nil)
	b.AddSourceVolume(h.vol.VolumeUUID)
	if err := b.PrepareEnvironment(t.Context(), h.env); err != nil {
		t.Fatal(err)
	}
	if err := b.StartVolume(t.Context(), h.vol); err != nil {
		t.Fatal(err)
	}
	return b, h.vol
}

func wantStatus(t *testing.T, b *memstorage.Backend, vol sdk.Volume, want sdk.VolumeReplication) {
	t.Helper()
	if got, err := b.VolumeStatus(t.Context(), vol); err != nil || got != want {
		t.Fatalf("VolumeStatus = %+v, %v; want %+v", got, err, want)
	}
}

// TestCopyTakesTime: the first copy runs for CopyTime, not counting the
// time it is paused.
func TestCopyTakesTime(t *testing.T) {
	ctx := t.Context()
	clk := &clock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	b, vol := started(t, clk, 10*time.Second)
	wantStatus(t, b, vol, sdk.VolumeReplication{State: sdk.ReplicationSyncing, TargetExists: true})
	clk.Add(4 * time.Second)
	wantStatus(t, b, vol, sdk.VolumeReplication{State: sdk.ReplicationSyncing, TargetExists: true, Progress: 40})
	if err := b.PauseVolume(ctx, vol); err != nil {
		t.Fatal(err)
	}
	clk.Add(time.Hour)
	wantStatus(t, b, vol, sdk.VolumeReplication{State: sdk.ReplicationPaused, TargetExists: true})
	if err := b.ResumeVolume(ctx, vol); err != nil {
		t.Fatal(err)
	}
	clk.Add(3 * time.Second)
	wantStatus(t, b, vol, sdk.VolumeReplication{State: sdk.ReplicationSyncing, TargetExists: true, Progress: 70})
	clk.Add(3 * time.Second)
	done := clk.Now()
	clk.Add(time.Second)
	wantStatus(t, b, vol, sdk.VolumeReplication{State: sdk.ReplicationReplaying, TargetExists: true, Progress: 100,
		Lag: "0 entries", LastSyncTime: done})
}

// TestStopWaitsForCopyWithoutStatus: the copy gets on by itself, so a
// stop that waits for it succeeds once it is done, though nothing asked
// for the volume's status in between (the daemon's stop does not).
func TestStopWaitsForCopyWithoutStatus(t *testing.T) {
	ctx := t.Context()
	clk := &clock{now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	b, vol := started(t, clk, 10*time.Second)
	clk.Add(5 * time.Second)
	if err := reportless(b.StopVolume(ctx, vol)); !errors.Is(err, sdk.ErrInProgress) || !strings.Contains(err.Error(), "50%") {
		t.Fatalf("StopVolume half-way through the first copy = %v, want ErrInProgress saying 50%%", err)
	}
	clk.Add(5 * time.Second)
	if err := reportless(b.StopVolume(ctx, vol)); err != nil {
		t.Fatalf("StopVolume once the copy's time is up = %v, want nil", err)
	}
	wantStatus(t, b, vol, sdk.VolumeReplication{State: sdk.ReplicationAbsent, TargetExists: true,
		LastSyncTime: clk.Now()})
}

// TestHoldFile: a first copy does not complete while the file the source
// storage's metadata names exists.
func TestHoldFile(t *testing.T) {
	ctx := t.Context()
	holdFile := memstorage.HoldFile(filepath.Join(t.TempDir(), "hold"))
	b := memstorage.New(memstorage.AutoSource())
	h := newHarness(b, func(vol, snap string) json.RawMessage { return listing(vol, snap, string(holdFile), "") })
	if err := b.PrepareEnvironment(ctx, h.env); err != nil {
		t.Fatal(err)
	}
	release, err := holdFile.Hold()
	if err != nil {
		t.Fatal(err)
	}
	if err := b.StartVolume(ctx, h.vol); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if st, _ := b.VolumeStatus(ctx, h.vol); st.State != sdk.ReplicationSyncing {
			t.Fatalf("VolumeStatus with the hold file present = %+v, want syncing", st)
		}
	}
	release()
	if st, _ := b.VolumeStatus(ctx, h.vol); st.State != sdk.ReplicationReplaying {
		t.Fatalf("VolumeStatus once the hold file is gone = %+v, want replaying", st)
	}
}

func TestBadCopyTime(t *testing.T) {
	b := memstorage.New(memstorage.AutoSource())
	h := newHarness(b, func(string, string) json.RawMessage { return json.RawMessage(`{"copy_time": "soon"}`) })
	if err := b.PrepareEnvironment(t.Context(), h.env); err != nil {
		t.Fatal(err)
	}
	if err := b.StartVolume(t.Context(), h.vol); !errors.Is(err, sdk.ErrPrecondition) {
		t.Fatalf("StartVolume with copy_time %q = %v, want ErrPrecondition", "soon", err)
	}
}

// TestConcurrent: calls for different volumes of one environment may run
// at once.
func TestConcurrent(t *testing.T) {
	ctx := t.Context()
	b := memstorage.New(memstorage.AutoSource())
	env := newHarness(b, nil).env
	if err := b.PrepareEnvironment(ctx, env); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			vol := sdk.Volume{Environment: env, VolumeID: uint64(i), VolumeUUID: plugintest.NewUUID()}
			snap := sdk.Snapshot{Volume: vol, SnapshotUUID: plugintest.NewUUID()}
			for _, op := range []func() error{
				func() error { return b.StartVolume(ctx, vol) },
				func() error { _, err := b.VolumeStatus(ctx, vol); return err }, // the copy is done
				func() error { return b.PauseVolume(ctx, vol) },
				func() error { return b.ResumeVolume(ctx, vol) },
				func() error { return b.AddSnapshot(ctx, snap) },
				func() error { return b.RemoveSnapshot(ctx, snap) },
				func() error { return reportless(b.StopVolume(ctx, vol)) },
			} {
				if err := op(); err != nil {
					t.Error(err)
				}
			}
			_, _ = b.EnvironmentStatus(ctx, env)
			_, _ = b.DestroyVolume(ctx, vol)
		})
	}
	wg.Wait()
	if err := reportless(b.TeardownEnvironment(ctx, env, false)); err != nil {
		t.Fatalf("TeardownEnvironment once every volume is destroyed: %v", err)
	}
}

// TestStopWaitsForFirstCopy: a stop never keeps a partial copy; it lets a
// paused first copy go on and answers ErrInProgress until it is done.
func TestStopWaitsForFirstCopy(t *testing.T) {
	ctx := t.Context()
	b := memstorage.New(memstorage.AutoSource())
	env := newHarness(b, nil).env
	if err := b.PrepareEnvironment(ctx, env); err != nil {
		t.Fatal(err)
	}
	vol := sdk.Volume{Environment: env, VolumeID: 1, VolumeUUID: plugintest.NewUUID()}
	release := b.HoldFirstCopy(vol.VolumeUUID)
	if err := b.StartVolume(ctx, vol); err != nil {
		t.Fatal(err)
	}
	if err := b.PauseVolume(ctx, vol); err != nil {
		t.Fatal(err)
	}
	if err := reportless(b.StopVolume(ctx, vol)); !errors.Is(err, sdk.ErrInProgress) {
		t.Fatalf("StopVolume during the first copy = %v, want ErrInProgress", err)
	}
	if st, _ := b.VolumeStatus(ctx, vol); st.State != sdk.ReplicationSyncing {
		t.Fatalf("status after a stop that waits = %+v, want syncing (the pause gave way)", st)
	}
	release()
	if err := reportless(b.StopVolume(ctx, vol)); err != nil {
		t.Fatalf("StopVolume once the copy is done: %v", err)
	}
	if st, _ := b.VolumeStatus(ctx, vol); st.State != sdk.ReplicationAbsent || !st.TargetExists {
		t.Fatalf("status after stop = %+v, want absent with the target kept", st)
	}
}

func reportless(_ sdk.CleanupReport, err error) error { return err }
