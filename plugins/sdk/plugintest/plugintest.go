// Package plugintest is the conformance kit for storage plugins: one suite
// that checks a backend honours the sdk.Backend contract, which every
// plugin must pass, the vendors' as much as ours.
//
// A vendor writes a Harness (a backend, a pair of storages it can prepare,
// a volume and a snapshot that exist on the source) and runs the suite
// three ways from its tests: in-process with Run, through go-plugin's real
// gRPC shim with RunGRPC, and against the built plugin executable with
// RunBinary, which is what mirrord loads:
//
//	func TestConformance(t *testing.T) {
//		plugintest.RunGRPC(t, func(t *testing.T) plugintest.Harness {
//			return newHarness(t) // a fresh environment and volume
//		})
//	}
//
// Each subtest gets a fresh harness and, when it ends, destroys the volume
// and tears the environment down.
package plugintest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// Harness is one subtest's fixture: the backend under test and things
// that exist on its source storage.
type Harness interface {
	// Backend returns the backend under test.
	Backend() sdk.Backend
	// Environment returns a pair of storages the backend can prepare, of
	// a type it serves, not prepared yet. The suite prepares and tears it
	// down.
	Environment() sdk.Environment
	// Volume returns a volume of Environment that exists on the source and
	// is not replicated.
	Volume() sdk.Volume
	// Snapshot returns a snapshot of Volume that exists on the source.
	Snapshot() sdk.Snapshot
	// Timeout bounds each wait for a state the storage reaches on its own
	// (the first copy done, a snapshot ready, a target deleted), and each
	// cleanup.
	Timeout() time.Duration
}

// Run checks that the harnesses' backend honours the sdk.Backend
// contract. newHarness is called once per subtest. Features a backend
// does not offer (Info's Capabilities) are not checked.
func Run(t *testing.T, newHarness func(t *testing.T) Harness) {
	t.Helper()
	tests := []struct {
		name string
		run  func(t *testing.T, f *fixture)
	}{
		{"Info", testInfo},
		{"Environment", testEnvironment},
		{"StartNeedsEnvironment", testStartNeedsEnvironment},
		{"VolumeLifecycle", testVolumeLifecycle},
		{"NotReplicated", testNotReplicated},
		{"DeleteTarget", testDeleteTarget},
		{"TeardownWaitsForVolumes", testTeardownRefused},
		{"Destroy", testDestroy},
		{"Snapshots", testSnapshots},
		{"CancelledContext", testCancelled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			f := &fixture{h: h, be: h.Backend(), env: h.Environment(), vol: h.Volume()}
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), h.Timeout())
				defer cancel()
				if _, err := f.be.DestroyVolume(ctx, f.vol); err != nil {
					t.Errorf("cleanup: DestroyVolume: %v", err)
				}
				if err := f.be.TeardownEnvironment(ctx, f.env); err != nil {
					t.Errorf("cleanup: TeardownEnvironment after DestroyVolume: %v", err)
				}
			})
			info, err := f.be.Info(t.Context())
			if err != nil {
				t.Fatalf("Info: %v", err)
			}
			f.caps = info.Capabilities
			tc.run(t, f)
		})
	}
}

type fixture struct {
	h    Harness
	be   sdk.Backend
	env  sdk.Environment
	vol  sdk.Volume
	caps sdk.Capabilities
}

// twice calls op twice: every method is idempotent.
func twice(t *testing.T, what string, op func() error) {
	t.Helper()
	for i := range 2 {
		if err := op(); err != nil {
			t.Fatalf("%s (call %d): %v", what, i+1, err)
		}
	}
}

func (f *fixture) prepare(t *testing.T) {
	t.Helper()
	if err := f.be.PrepareEnvironment(t.Context(), f.env); err != nil {
		t.Fatalf("PrepareEnvironment: %v", err)
	}
}

func (f *fixture) start(t *testing.T) {
	t.Helper()
	f.prepare(t)
	twice(t, "StartVolume", func() error { return f.be.StartVolume(t.Context(), f.vol) })
}

func (f *fixture) status(t *testing.T) sdk.VolumeReplication {
	t.Helper()
	st, err := f.be.VolumeStatus(t.Context(), f.vol)
	if err != nil {
		t.Fatalf("VolumeStatus: %v", err)
	}
	return st
}

// eventually polls the volume's status until ok, within the harness's
// timeout.
func (f *fixture) eventually(t *testing.T, what string, ok func(sdk.VolumeReplication) bool) sdk.VolumeReplication {
	t.Helper()
	var st sdk.VolumeReplication
	if !poll(t, f.h.Timeout(), func() bool { st = f.status(t); return ok(st) }) {
		t.Fatalf("volume not %s within %v; last status %+v", what, f.h.Timeout(), st)
	}
	return st
}

// poll calls done until it returns true or timeout passes, backing off
// from 10ms to 1s between calls: quick for a simulator, gentle on a real
// storage.
func poll(t *testing.T, timeout time.Duration, done func() bool) bool {
	t.Helper()
	deadline := time.Now().Add(timeout)
	wait := 10 * time.Millisecond
	for {
		if done() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-time.After(wait):
		case <-t.Context().Done():
			return false
		}
		wait = min(2*wait, time.Second)
	}
}

// stop stops the volume, calling again while the backend answers
// ErrInProgress (its first copy still running) within the harness's
// timeout, and then once more, which must succeed too.
func (f *fixture) stop(t *testing.T) {
	t.Helper()
	var err error
	done := poll(t, f.h.Timeout(), func() bool {
		err = f.be.StopVolume(t.Context(), f.vol)
		if errors.Is(err, sdk.ErrInProgress) {
			// A stop that waits for the copy has ended nothing yet.
			if st := f.status(t); st.State == sdk.ReplicationAbsent {
				t.Fatalf("StopVolume = %v, yet the volume is no longer replicated: %+v", err, st)
			}
			return false
		}
		return true
	})
	if !done {
		t.Fatalf("StopVolume still in progress after %v: %v", f.h.Timeout(), err)
	}
	if err != nil {
		t.Fatalf("StopVolume: %v", err)
	}
	if err := f.be.StopVolume(t.Context(), f.vol); err != nil {
		t.Fatalf("StopVolume (again, once stopped): %v", err)
	}
}

func replaying(st sdk.VolumeReplication) bool {
	return st.State == sdk.ReplicationReplaying && st.TargetExists
}

func testInfo(t *testing.T, f *fixture) {
	for range 2 {
		info, err := f.be.Info(t.Context())
		if err != nil {
			t.Fatalf("Info: %v", err)
		}
		if info.Name == "" || info.Version == "" || len(info.StorageTypes) == 0 {
			t.Fatalf("Info = %+v, want a name, a version and at least one storage type", info)
		}
		for _, s := range []sdk.Storage{f.env.Source, f.env.Target} {
			if !slices.Contains(info.StorageTypes, s.Type) {
				t.Fatalf("the harness's storage %d is of type %q, which the backend does not serve (%q)",
					s.StorageID, s.Type, info.StorageTypes)
			}
		}
	}
}

func testEnvironment(t *testing.T, f *fixture) {
	ctx := t.Context()
	if err := f.be.TeardownEnvironment(ctx, f.env); err != nil {
		t.Fatalf("TeardownEnvironment of an environment never prepared: %v", err)
	}
	twice(t, "PrepareEnvironment", func() error { return f.be.PrepareEnvironment(ctx, f.env) })
	h, err := f.be.EnvironmentStatus(ctx, f.env)
	if err != nil || !h.Ready {
		t.Fatalf("EnvironmentStatus after Prepare = %+v, %v; want ready", h, err)
	}
	twice(t, "TeardownEnvironment", func() error { return f.be.TeardownEnvironment(ctx, f.env) })
	h, err = f.be.EnvironmentStatus(ctx, f.env)
	if err != nil || h.Ready {
		t.Fatalf("EnvironmentStatus after Teardown = %+v, %v; want not ready", h, err)
	}
}

func testStartNeedsEnvironment(t *testing.T, f *fixture) {
	if err := f.be.StartVolume(t.Context(), f.vol); !errors.Is(err, sdk.ErrPrecondition) {
		t.Fatalf("StartVolume in an environment not prepared = %v, want ErrPrecondition", err)
	}
	if st := f.status(t); st.State != sdk.ReplicationAbsent {
		t.Fatalf("status after a refused start = %+v, want absent", st)
	}
}

func testVolumeLifecycle(t *testing.T, f *fixture) {
	ctx := t.Context()
	if st := f.status(t); st.State != sdk.ReplicationAbsent {
		t.Fatalf("status before start = %+v, want absent", st)
	}
	f.start(t)
	if st := f.status(t); st.State == sdk.ReplicationAbsent {
		t.Fatalf("status right after start = %+v, want replication set up", st)
	}
	f.eventually(t, "replaying", replaying)

	if f.caps.Pause {
		twice(t, "PauseVolume", func() error { return f.be.PauseVolume(ctx, f.vol) })
		if st := f.status(t); st.State != sdk.ReplicationPaused || !st.TargetExists {
			t.Fatalf("status after pause = %+v, want paused", st)
		}
		twice(t, "ResumeVolume", func() error { return f.be.ResumeVolume(ctx, f.vol) })
		f.eventually(t, "replaying after resume", replaying)

		// Start also resumes a paused volume.
		if err := f.be.PauseVolume(ctx, f.vol); err != nil {
			t.Fatalf("PauseVolume: %v", err)
		}
		if err := f.be.StartVolume(ctx, f.vol); err != nil {
			t.Fatalf("StartVolume of a paused volume: %v", err)
		}
		f.eventually(t, "replaying after start of a paused volume", replaying)
	}

	f.stop(t)
	st := f.status(t)
	if st.State != sdk.ReplicationAbsent {
		t.Fatalf("status after stop = %+v, want absent", st)
	}
	if f.caps.KeepTargetStop && !st.TargetExists {
		t.Fatalf("status after stop = %+v, want the target kept (Capabilities.KeepTargetStop)", st)
	}
}

func testNotReplicated(t *testing.T, f *fixture) {
	ctx := t.Context()
	f.prepare(t)
	missing := f.vol
	missing.VolumeUUID = NewUUID()
	if err := f.be.StartVolume(ctx, missing); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("StartVolume of a volume missing on the source = %v, want ErrNotFound", err)
	}
	for _, v := range []sdk.Volume{missing, f.vol} {
		st, err := f.be.VolumeStatus(ctx, v)
		if err != nil || st.State != sdk.ReplicationAbsent {
			t.Fatalf("VolumeStatus of volume %s never started = %+v, %v; want absent", v.VolumeUUID, st, err)
		}
	}
	if f.caps.Pause {
		if err := f.be.PauseVolume(ctx, f.vol); !errors.Is(err, sdk.ErrNotFound) {
			t.Fatalf("PauseVolume of a volume not replicated = %v, want ErrNotFound", err)
		}
		if err := f.be.ResumeVolume(ctx, f.vol); !errors.Is(err, sdk.ErrNotFound) {
			t.Fatalf("ResumeVolume of a volume not replicated = %v, want ErrNotFound", err)
		}
	}
	for _, v := range []sdk.Volume{missing, f.vol} {
		if err := f.be.StopVolume(ctx, v); err != nil {
			t.Fatalf("StopVolume of volume %s not replicated = %v, want nil", v.VolumeUUID, err)
		}
		if err := f.be.DeleteTarget(ctx, v); err != nil {
			t.Fatalf("DeleteTarget of volume %s not replicated = %v, want nil", v.VolumeUUID, err)
		}
		if _, err := f.be.DestroyVolume(ctx, v); err != nil {
			t.Fatalf("DestroyVolume of volume %s not replicated = %v, want nil", v.VolumeUUID, err)
		}
	}
	if st := f.status(t); st.State != sdk.ReplicationAbsent {
		t.Fatalf("status after stop, delete and destroy of a volume never started = %+v, want absent", st)
	}
}

func testDeleteTarget(t *testing.T, f *fixture) {
	ctx := t.Context()
	f.start(t)
	f.eventually(t, "replaying", replaying)
	twice(t, "DeleteTarget", func() error { return f.be.DeleteTarget(ctx, f.vol) })
	f.eventually(t, "gone from the target", func(st sdk.VolumeReplication) bool {
		return st.State == sdk.ReplicationAbsent && !st.TargetExists
	})
	if err := f.be.DeleteTarget(ctx, f.vol); err != nil {
		t.Fatalf("DeleteTarget once gone: %v", err)
	}

	// A standalone copy left by StopVolume is deleted too.
	f.start(t)
	f.eventually(t, "replaying after a restart", replaying)
	f.stop(t)
	if err := f.be.DeleteTarget(ctx, f.vol); err != nil {
		t.Fatalf("DeleteTarget of a stopped volume: %v", err)
	}
	f.eventually(t, "gone from the target after stop", func(st sdk.VolumeReplication) bool {
		return st.State == sdk.ReplicationAbsent && !st.TargetExists
	})
}

func testTeardownRefused(t *testing.T, f *fixture) {
	ctx := t.Context()
	f.start(t)
	if err := f.be.TeardownEnvironment(ctx, f.env); !errors.Is(err, sdk.ErrPrecondition) {
		t.Fatalf("TeardownEnvironment with a replicated volume = %v, want ErrPrecondition", err)
	}
	if h, err := f.be.EnvironmentStatus(ctx, f.env); err != nil || !h.Ready {
		t.Fatalf("a refused teardown changed the environment: %+v, %v", h, err)
	}
	if f.caps.Pause {
		if err := f.be.PauseVolume(ctx, f.vol); err != nil {
			t.Fatalf("PauseVolume: %v", err)
		}
		if err := f.be.TeardownEnvironment(ctx, f.env); !errors.Is(err, sdk.ErrPrecondition) {
			t.Fatalf("TeardownEnvironment with a paused volume = %v, want ErrPrecondition", err)
		}
	}
	f.stop(t)
	if err := f.be.TeardownEnvironment(ctx, f.env); err != nil {
		t.Fatalf("TeardownEnvironment once no volume is replicated: %v", err)
	}
	if h, err := f.be.EnvironmentStatus(ctx, f.env); err != nil || h.Ready {
		t.Fatalf("EnvironmentStatus after Teardown = %+v, %v; want not ready", h, err)
	}
}

func testDestroy(t *testing.T, f *fixture) {
	ctx := t.Context()
	f.start(t)
	for i := range 2 {
		rep, err := f.be.DestroyVolume(ctx, f.vol)
		if err != nil {
			t.Fatalf("DestroyVolume (call %d): %v", i+1, err)
		}
		if len(rep.Leftovers) > 0 {
			t.Logf("DestroyVolume (call %d) leftovers: %q", i+1, rep.Leftovers)
			return
		}
	}
	f.eventually(t, "destroyed on both sides", func(st sdk.VolumeReplication) bool {
		return st.State == sdk.ReplicationAbsent && !st.TargetExists
	})
	// The source volume survives: replication can start again.
	f.start(t)
	f.eventually(t, "replaying after destroy and start", replaying)
}

func testSnapshots(t *testing.T, f *fixture) {
	if !f.caps.Snapshots {
		t.Skip("the backend does not offer snapshots (Capabilities.Snapshots)")
	}
	ctx := t.Context()
	snap := f.h.Snapshot()
	f.start(t)
	snapStatus := func() sdk.SnapshotReplication {
		t.Helper()
		st, err := f.be.SnapshotStatus(ctx, snap)
		if err != nil {
			t.Fatalf("SnapshotStatus: %v", err)
		}
		return st
	}
	if st := snapStatus(); st.State != sdk.SnapshotAbsent {
		t.Fatalf("snapshot status before add = %+v, want absent", st)
	}
	twice(t, "AddSnapshot", func() error { return f.be.AddSnapshot(ctx, snap) })
	var st sdk.SnapshotReplication
	ready := poll(t, f.h.Timeout(), func() bool {
		st = snapStatus()
		if st.State != sdk.SnapshotPending && st.State != sdk.SnapshotReady {
			t.Fatalf("snapshot status after add = %+v, want pending or ready", st)
		}
		return st.State == sdk.SnapshotReady
	})
	if !ready {
		t.Fatalf("snapshot not ready within %v; last status %+v", f.h.Timeout(), st)
	}
	twice(t, "RemoveSnapshot", func() error { return f.be.RemoveSnapshot(ctx, snap) })
	if st := snapStatus(); st.State != sdk.SnapshotAbsent {
		t.Fatalf("snapshot status after remove = %+v, want absent", st)
	}

	missing := snap
	missing.SnapshotUUID = NewUUID()
	missing.SnapshotName = "snapshot-" + missing.SnapshotUUID
	if err := f.be.AddSnapshot(ctx, missing); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("AddSnapshot of a snapshot missing on the source = %v, want ErrNotFound", err)
	}
	if st, err := f.be.SnapshotStatus(ctx, missing); err != nil || st.State != sdk.SnapshotAbsent {
		t.Fatalf("SnapshotStatus of a snapshot missing on the source = %+v, %v; want absent", st, err)
	}
	if err := f.be.RemoveSnapshot(ctx, missing); err != nil {
		t.Fatalf("RemoveSnapshot of a missing snapshot = %v, want nil", err)
	}
}

// promptly bounds how long a call with a cancelled ctx may take.
const promptly = time.Second

func testCancelled(t *testing.T, f *fixture) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	snap := f.h.Snapshot()
	calls := []struct {
		method string
		call   func() error
	}{
		{"Info", func() error { _, err := f.be.Info(ctx); return err }},
		{"PrepareEnvironment", func() error { return f.be.PrepareEnvironment(ctx, f.env) }},
		{"EnvironmentStatus", func() error { _, err := f.be.EnvironmentStatus(ctx, f.env); return err }},
		{"TeardownEnvironment", func() error { return f.be.TeardownEnvironment(ctx, f.env) }},
		{"StartVolume", func() error { return f.be.StartVolume(ctx, f.vol) }},
		{"VolumeStatus", func() error { _, err := f.be.VolumeStatus(ctx, f.vol); return err }},
		{"PauseVolume", func() error { return f.be.PauseVolume(ctx, f.vol) }},
		{"ResumeVolume", func() error { return f.be.ResumeVolume(ctx, f.vol) }},
		{"StopVolume", func() error { return f.be.StopVolume(ctx, f.vol) }},
		{"DeleteTarget", func() error { return f.be.DeleteTarget(ctx, f.vol) }},
		{"DestroyVolume", func() error { _, err := f.be.DestroyVolume(ctx, f.vol); return err }},
		{"AddSnapshot", func() error { return f.be.AddSnapshot(ctx, snap) }},
		{"RemoveSnapshot", func() error { return f.be.RemoveSnapshot(ctx, snap) }},
		{"SnapshotStatus", func() error { _, err := f.be.SnapshotStatus(ctx, snap); return err }},
	}
	for _, c := range calls {
		begin := time.Now()
		err := c.call()
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled ctx = %v, want an error wrapping context.Canceled", c.method, err)
		}
		if d := time.Since(begin); d > promptly {
			t.Errorf("%s with a cancelled ctx took %v, want at most %v", c.method, d, promptly)
		}
	}
	// What the cancelled calls left behind, a later call resumes from.
	f.start(t)
	f.eventually(t, "replaying after cancelled calls", replaying)
	if f.caps.Snapshots {
		if err := f.be.AddSnapshot(t.Context(), snap); err != nil {
			t.Fatalf("AddSnapshot after cancelled calls: %v", err)
		}
	}
	f.stop(t)
	if err := f.be.TeardownEnvironment(t.Context(), f.env); err != nil {
		t.Fatalf("TeardownEnvironment: %v", err)
	}
}

// NewUUID returns a random RFC 4122 version 4 UUID, for harnesses to
// name volumes and snapshots, and for the suite to name ones that exist
// nowhere.
func NewUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
