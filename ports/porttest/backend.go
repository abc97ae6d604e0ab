package porttest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cdmdr/mirror/ports"
)

// BackendHarness is one subtest's fixture for a storage backend: the
// backend and things that exist on its source storage. The plugin
// conformance kit mirrors it.
type BackendHarness interface {
	// Backend returns the backend under test.
	Backend() ports.StorageBackend
	// Environment returns a pair of storages the backend can prepare.
	Environment() ports.Environment
	// Volume returns a volume of Environment that exists on the source and
	// is not replicated yet.
	Volume() ports.Volume
	// Snapshot returns a snapshot of Volume that exists on the source.
	Snapshot() ports.Snapshot
	// Settle runs between two polls for a state the storage reaches on
	// its own (sync done, target deleted): a real backend sleeps, a
	// simulator may move on.
	Settle()
	// Timeout bounds each wait for such a state.
	Timeout() time.Duration
}

// RunBackend checks that backends honour the ports.StorageBackend
// contract. newHarness is called once per subtest, which cleans up after
// itself: it destroys the volume and tears the environment down.
func RunBackend(t *testing.T, newHarness func(t *testing.T) BackendHarness) {
	t.Helper()
	tests := []struct {
		name string
		run  func(t *testing.T, f *backendFixture)
	}{
		{"Info", testBackendInfo},
		{"Environment", testBackendEnvironment},
		{"VolumeLifecycle", testBackendVolumeLifecycle},
		{"NotReplicated", testBackendNotReplicated},
		{"DeleteTarget", testBackendDeleteTarget},
		{"TeardownWaitsForVolumes", testBackendTeardownRefused},
		{"Destroy", testBackendDestroy},
		{"Snapshots", testBackendSnapshots},
		{"CancelledContext", testBackendCancelled},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			f := &backendFixture{h: h, be: h.Backend(), env: h.Environment(), vol: h.Volume()}
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), h.Timeout())
				defer cancel()
				if _, err := f.be.DestroyVolume(ctx, f.vol); err != nil {
					t.Logf("cleanup: destroy volume: %v", err)
				}
				if err := f.be.TeardownEnvironment(ctx, f.env); err != nil {
					t.Logf("cleanup: teardown environment: %v", err)
				}
			})
			tc.run(t, f)
		})
	}
}

type backendFixture struct {
	h   BackendHarness
	be  ports.StorageBackend
	env ports.Environment
	vol ports.Volume
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

func (f *backendFixture) prepare(t *testing.T) {
	t.Helper()
	if err := f.be.PrepareEnvironment(t.Context(), f.env); err != nil {
		t.Fatalf("PrepareEnvironment: %v", err)
	}
}

func (f *backendFixture) start(t *testing.T) {
	t.Helper()
	f.prepare(t)
	twice(t, "StartVolume", func() error { return f.be.StartVolume(t.Context(), f.vol) })
}

func (f *backendFixture) status(t *testing.T) ports.VolumeReplication {
	t.Helper()
	st, err := f.be.VolumeStatus(t.Context(), f.vol)
	if err != nil {
		t.Fatalf("VolumeStatus: %v", err)
	}
	return st
}

// eventually polls the volume's status until ok, within the harness's
// timeout.
func (f *backendFixture) eventually(t *testing.T, what string, ok func(ports.VolumeReplication) bool) ports.VolumeReplication {
	t.Helper()
	deadline := time.Now().Add(f.h.Timeout())
	for {
		st := f.status(t)
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("volume not %s within %v; last status %+v", what, f.h.Timeout(), st)
		}
		f.h.Settle()
	}
}

func replaying(st ports.VolumeReplication) bool {
	return st.State == ports.ReplicationReplaying && st.TargetExists
}

func testBackendInfo(t *testing.T, f *backendFixture) {
	for range 2 {
		info, err := f.be.Info(t.Context())
		if err != nil {
			t.Fatalf("Info: %v", err)
		}
		if info.Name == "" || len(info.StorageTypes) == 0 {
			t.Fatalf("Info = %+v, want a name and at least one storage type", info)
		}
	}
}

func testBackendEnvironment(t *testing.T, f *backendFixture) {
	ctx := t.Context()
	// Tearing down what was never prepared succeeds.
	if err := f.be.TeardownEnvironment(ctx, f.env); err != nil {
		t.Fatalf("TeardownEnvironment before Prepare: %v", err)
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

func testBackendVolumeLifecycle(t *testing.T, f *backendFixture) {
	ctx := t.Context()
	if st := f.status(t); st.State != ports.ReplicationAbsent {
		t.Fatalf("status before start = %+v, want absent", st)
	}
	f.start(t)
	if st := f.status(t); st.State == ports.ReplicationAbsent {
		t.Fatalf("status right after start = %+v, want replication set up", st)
	}
	f.eventually(t, "replaying", replaying)

	twice(t, "PauseVolume", func() error { return f.be.PauseVolume(ctx, f.vol) })
	if st := f.status(t); st.State != ports.ReplicationPaused || !st.TargetExists {
		t.Fatalf("status after pause = %+v, want paused", st)
	}
	twice(t, "ResumeVolume", func() error { return f.be.ResumeVolume(ctx, f.vol) })
	f.eventually(t, "replaying after resume", replaying)

	// Start also resumes a paused volume.
	if err := f.be.PauseVolume(ctx, f.vol); err != nil {
		t.Fatal(err)
	}
	if err := f.be.StartVolume(ctx, f.vol); err != nil {
		t.Fatalf("StartVolume of a paused volume: %v", err)
	}
	f.eventually(t, "replaying after start of a paused volume", replaying)

	twice(t, "StopVolume", func() error { return f.be.StopVolume(ctx, f.vol) })
	if st := f.status(t); st.State != ports.ReplicationAbsent || !st.TargetExists {
		t.Fatalf("status after stop = %+v, want absent with the target kept", st)
	}
}

func testBackendNotReplicated(t *testing.T, f *backendFixture) {
	ctx := t.Context()
	f.prepare(t)
	missing := f.vol
	missing.VolumeUUID = newUUID()
	if err := f.be.StartVolume(ctx, missing); !errors.Is(err, ports.ErrNotFound) {
		t.Fatalf("StartVolume of a volume missing on the source = %v, want ErrNotFound", err)
	}
	if st := f.status(t); st.State != ports.ReplicationAbsent {
		t.Fatalf("status of a volume never started = %+v, want absent", st)
	}
	if err := f.be.PauseVolume(ctx, f.vol); !errors.Is(err, ports.ErrNotFound) {
		t.Fatalf("PauseVolume of a volume not replicated = %v, want ErrNotFound", err)
	}
	if err := f.be.ResumeVolume(ctx, f.vol); !errors.Is(err, ports.ErrNotFound) {
		t.Fatalf("ResumeVolume of a volume not replicated = %v, want ErrNotFound", err)
	}
	if err := f.be.StopVolume(ctx, f.vol); err != nil {
		t.Fatalf("StopVolume of a volume not replicated = %v, want nil", err)
	}
}

func testBackendDeleteTarget(t *testing.T, f *backendFixture) {
	ctx := t.Context()
	f.start(t)
	f.eventually(t, "replaying", replaying)
	twice(t, "DeleteTarget", func() error { return f.be.DeleteTarget(ctx, f.vol) })
	f.eventually(t, "gone from the target", func(st ports.VolumeReplication) bool {
		return st.State == ports.ReplicationAbsent && !st.TargetExists
	})
	if err := f.be.DeleteTarget(ctx, f.vol); err != nil {
		t.Fatalf("DeleteTarget once gone: %v", err)
	}
}

func testBackendTeardownRefused(t *testing.T, f *backendFixture) {
	ctx := t.Context()
	f.start(t)
	if err := f.be.TeardownEnvironment(ctx, f.env); !errors.Is(err, ports.ErrPrecondition) {
		t.Fatalf("TeardownEnvironment with a replicated volume = %v, want ErrPrecondition", err)
	}
	if h, err := f.be.EnvironmentStatus(ctx, f.env); err != nil || !h.Ready {
		t.Fatalf("a refused teardown changed the environment: %+v, %v", h, err)
	}
	if err := f.be.PauseVolume(ctx, f.vol); err != nil {
		t.Fatal(err)
	}
	if err := f.be.TeardownEnvironment(ctx, f.env); !errors.Is(err, ports.ErrPrecondition) {
		t.Fatalf("TeardownEnvironment with a paused volume = %v, want ErrPrecondition", err)
	}
	if err := f.be.StopVolume(ctx, f.vol); err != nil {
		t.Fatal(err)
	}
	if err := f.be.TeardownEnvironment(ctx, f.env); err != nil {
		t.Fatalf("TeardownEnvironment once no volume is replicated: %v", err)
	}
}

func testBackendDestroy(t *testing.T, f *backendFixture) {
	ctx := t.Context()
	f.start(t)
	for i := range 2 {
		rep, err := f.be.DestroyVolume(ctx, f.vol)
		if err != nil {
			t.Fatalf("DestroyVolume (call %d): %v", i+1, err)
		}
		if len(rep.Leftovers) > 0 {
			t.Logf("DestroyVolume leftovers: %q", rep.Leftovers)
			return
		}
	}
	f.eventually(t, "destroyed on both sides", func(st ports.VolumeReplication) bool {
		return st.State == ports.ReplicationAbsent && !st.TargetExists
	})
	// The source volume survives: replication can start again.
	f.start(t)
}

func testBackendSnapshots(t *testing.T, f *backendFixture) {
	ctx := t.Context()
	snap := f.h.Snapshot()
	f.start(t)
	snapStatus := func() ports.SnapshotReplication {
		t.Helper()
		st, err := f.be.SnapshotStatus(ctx, snap)
		if err != nil {
			t.Fatalf("SnapshotStatus: %v", err)
		}
		return st
	}
	if st := snapStatus(); st.State != ports.SnapshotAbsent {
		t.Fatalf("snapshot status before add = %+v, want absent", st)
	}
	twice(t, "AddSnapshot", func() error { return f.be.AddSnapshot(ctx, snap) })
	deadline := time.Now().Add(f.h.Timeout())
	for {
		st := snapStatus()
		if st.State == ports.SnapshotReady {
			break
		}
		if st.State != ports.SnapshotPending || time.Now().After(deadline) {
			t.Fatalf("snapshot status after add = %+v, want pending then ready within %v", st, f.h.Timeout())
		}
		f.h.Settle()
	}
	twice(t, "RemoveSnapshot", func() error { return f.be.RemoveSnapshot(ctx, snap) })
	if st := snapStatus(); st.State != ports.SnapshotAbsent {
		t.Fatalf("snapshot status after remove = %+v, want absent", st)
	}

	missing := snap
	missing.SnapshotUUID = newUUID()
	missing.SnapshotName = "snapshot-" + missing.SnapshotUUID
	if err := f.be.AddSnapshot(ctx, missing); !errors.Is(err, ports.ErrNotFound) {
		t.Fatalf("AddSnapshot of a snapshot missing on the source = %v, want ErrNotFound", err)
	}
	if err := f.be.RemoveSnapshot(ctx, missing); err != nil {
		t.Fatalf("RemoveSnapshot of a missing snapshot = %v, want nil", err)
	}
}

func testBackendCancelled(t *testing.T, f *backendFixture) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	snap := f.h.Snapshot()
	calls := map[string]func() error{
		"Info":                func() error { _, err := f.be.Info(ctx); return err },
		"PrepareEnvironment":  func() error { return f.be.PrepareEnvironment(ctx, f.env) },
		"EnvironmentStatus":   func() error { _, err := f.be.EnvironmentStatus(ctx, f.env); return err },
		"TeardownEnvironment": func() error { return f.be.TeardownEnvironment(ctx, f.env) },
		"StartVolume":         func() error { return f.be.StartVolume(ctx, f.vol) },
		"VolumeStatus":        func() error { _, err := f.be.VolumeStatus(ctx, f.vol); return err },
		"PauseVolume":         func() error { return f.be.PauseVolume(ctx, f.vol) },
		"ResumeVolume":        func() error { return f.be.ResumeVolume(ctx, f.vol) },
		"StopVolume":          func() error { return f.be.StopVolume(ctx, f.vol) },
		"DeleteTarget":        func() error { return f.be.DeleteTarget(ctx, f.vol) },
		"DestroyVolume":       func() error { _, err := f.be.DestroyVolume(ctx, f.vol); return err },
		"AddSnapshot":         func() error { return f.be.AddSnapshot(ctx, snap) },
		"RemoveSnapshot":      func() error { return f.be.RemoveSnapshot(ctx, snap) },
		"SnapshotStatus":      func() error { _, err := f.be.SnapshotStatus(ctx, snap); return err },
	}
	for method, call := range calls {
		begin := time.Now()
		err := call()
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled ctx = %v, want context.Canceled", method, err)
		}
		if d := time.Since(begin); d > time.Second {
			t.Errorf("%s with a cancelled ctx took %v", method, d)
		}
	}
	// What the cancelled calls left behind, a later call resumes from.
	f.start(t)
	f.eventually(t, "replaying after cancelled calls", replaying)
	if err := f.be.AddSnapshot(t.Context(), snap); err != nil {
		t.Fatalf("AddSnapshot after cancelled calls: %v", err)
	}
	if err := f.be.StopVolume(t.Context(), f.vol); err != nil {
		t.Fatal(err)
	}
	if err := f.be.TeardownEnvironment(t.Context(), f.env); err != nil {
		t.Fatal(err)
	}
}
