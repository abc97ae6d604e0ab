package fake_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/cdmdr/mirror/adapters/fake"
	"github.com/cdmdr/mirror/plugins/sdk/plugintest"
	"github.com/cdmdr/mirror/ports"
)

var (
	env = ports.Environment{
		ID:     "storage.11.13",
		Source: ports.Storage{ClusterID: 5, StorageID: 11, Type: "openstack.storage.type.ceph", Metadata: json.RawMessage(`{}`)},
		Target: ports.Storage{ClusterID: 6, StorageID: 13, Type: "openstack.storage.type.ceph", Metadata: json.RawMessage(`{}`)},
	}
	vol  = ports.Volume{Environment: env, ClusterID: 5, VolumeID: 7, VolumeUUID: "bae4c30d-3119-4870-807e-0e1a9fcbf185"}
	snap = ports.Snapshot{Volume: vol, SnapshotID: 21, SnapshotUUID: "5e1f0a52-8d0b-4c1e-9a57-0c7f3f0b2a11", SnapshotName: "daily"}
)

// backendHarness is the conformance kit's fixture: every eventual state
// of the suite takes a few polls, as on a real storage.
type backendHarness struct{ b *fake.Backend }

func newBackendHarness(*testing.T) backendHarness {
	b := fake.NewBackend()
	b.AddSourceVolume(vol.VolumeUUID)
	b.AddSourceSnapshot(vol.VolumeUUID, snap.SnapshotUUID)
	b.AutoSync(true)
	b.DeleteDelay(2)
	b.SnapshotDelay(2)
	return backendHarness{b: b}
}

func (h backendHarness) Backend() ports.StorageBackend  { return h.b }
func (h backendHarness) Environment() ports.Environment { return env }
func (h backendHarness) Volume() ports.Volume           { return vol }
func (h backendHarness) Snapshot() ports.Snapshot       { return snap }
func (h backendHarness) Timeout() time.Duration         { return 5 * time.Second }

func (h backendHarness) HoldFirstCopy(*testing.T) (release func()) {
	return h.b.HoldFirstCopy(vol.VolumeUUID)
}

func (h backendHarness) CutSource(*testing.T) (restore func()) {
	return h.b.CutStorage(env.Source)
}

func TestBackendConformance(t *testing.T) {
	plugintest.Run(t, func(t *testing.T) plugintest.Harness { return newBackendHarness(t) })
}

func TestBackendConformanceNoDelays(t *testing.T) {
	plugintest.Run(t, func(t *testing.T) plugintest.Harness {
		h := newBackendHarness(t)
		h.b.DeleteDelay(0)
		h.b.SnapshotDelay(0)
		return h
	})
}

func newStarted(t *testing.T) *fake.Backend {
	t.Helper()
	b := fake.NewBackend()
	b.AddSourceVolume(vol.VolumeUUID)
	if err := b.PrepareEnvironment(t.Context(), env); err != nil {
		t.Fatal(err)
	}
	if err := b.StartVolume(t.Context(), vol); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBackendSyncAndStates(t *testing.T) {
	ctx := t.Context()
	b := newStarted(t)
	for range 3 {
		if st, _ := b.VolumeStatus(ctx, vol); st.State != ports.ReplicationSyncing {
			t.Fatalf("status %v, want syncing until Sync", st.State)
		}
	}
	b.Sync(vol.VolumeUUID)
	if st, _ := b.VolumeStatus(ctx, vol); st.State != ports.ReplicationReplaying || st.Progress != 100 {
		t.Fatalf("status after Sync = %+v, want replaying", st)
	}
	b.SetReplication(vol.VolumeUUID, ports.VolumeReplication{State: ports.ReplicationFailed, TargetExists: true, Description: "split-brain"})
	if st, _ := b.VolumeStatus(ctx, vol); st.State != ports.ReplicationFailed || st.Description != "split-brain" {
		t.Fatalf("forced status = %+v", st)
	}
	_ = b.ResumeVolume(ctx, vol) // a full resync
	if st, _ := b.VolumeStatus(ctx, vol); st.State != ports.ReplicationSyncing {
		t.Fatalf("after resuming a failed volume = %+v, want syncing", st)
	}
}

func TestBackendDeleteDelay(t *testing.T) {
	ctx := t.Context()
	b := newStarted(t)
	b.DeleteDelay(2)
	_ = b.DeleteTarget(ctx, vol)
	var exists []bool
	for range 4 {
		st, _ := b.VolumeStatus(ctx, vol)
		exists = append(exists, st.TargetExists)
	}
	if want := []bool{true, true, false, false}; !slices.Equal(exists, want) {
		t.Fatalf("TargetExists over polls = %v, want %v", exists, want)
	}
}

func TestBackendScripting(t *testing.T) {
	ctx := t.Context()
	b := newStarted(t)
	boom := errors.New("boom")
	b.FailNext("PauseVolume", boom)
	if err := b.PauseVolume(ctx, vol); !errors.Is(err, boom) {
		t.Fatalf("PauseVolume = %v, want boom once", err)
	}
	if err := b.PauseVolume(ctx, vol); err != nil {
		t.Fatalf("second PauseVolume = %v", err)
	}
	b.FailAlways("VolumeStatus", ports.ErrRetryable)
	for range 2 {
		if _, err := b.VolumeStatus(ctx, vol); !errors.Is(err, ports.ErrRetryable) {
			t.Fatalf("VolumeStatus = %v, want ErrRetryable", err)
		}
	}
	b.FailAlways("VolumeStatus", nil)
	if _, err := b.VolumeStatus(ctx, vol); err != nil {
		t.Fatal(err)
	}
	if got := b.Calls("PauseVolume"); got != 2 {
		t.Fatalf("Calls(PauseVolume) = %d, want 2", got)
	}
	want := []string{"PrepareEnvironment storage.11.13", "StartVolume " + vol.VolumeUUID, "PauseVolume " + vol.VolumeUUID}
	if got := b.CallLog(); !slices.Equal(got[:3], want) {
		t.Fatalf("CallLog = %q, want it to start with %q", got, want)
	}
	b.SetLeftovers(vol.VolumeUUID, "target image volume-x in pool volumes")
	if rep, err := b.DestroyVolume(ctx, vol); err != nil || len(rep.Leftovers) != 1 {
		t.Fatalf("DestroyVolume = %+v, %v", rep, err)
	}
	if st := b.Replication(vol.VolumeUUID); st.State != ports.ReplicationAbsent || st.TargetExists {
		t.Fatalf("after destroy = %+v", st)
	}
}

// TestBackendStopDuringFirstCopy: a stop lets a copy waiting for Sync
// complete; a copy held with HoldFirstCopy makes it wait (ErrInProgress),
// changing nothing, as on a real storage.
func TestBackendStopDuringFirstCopy(t *testing.T) {
	ctx := t.Context()
	b := newStarted(t)
	release := b.HoldFirstCopy(vol.VolumeUUID)
	for range 2 {
		if err := reportless(b.StopVolume(ctx, vol)); !errors.Is(err, ports.ErrInProgress) {
			t.Fatalf("StopVolume with the first copy held = %v, want ErrInProgress", err)
		}
		if st := b.Replication(vol.VolumeUUID); st.State != ports.ReplicationSyncing {
			t.Fatalf("after a stop that waits = %+v, want syncing", st)
		}
		b.Sync(vol.VolumeUUID) // does not end a held copy
	}
	release()
	if err := reportless(b.StopVolume(ctx, vol)); err != nil {
		t.Fatalf("StopVolume once released = %v", err)
	}
	if st := b.Replication(vol.VolumeUUID); st.State != ports.ReplicationAbsent || !st.TargetExists {
		t.Fatalf("after StopVolume = %+v, want absent with the target kept", st)
	}
}

func TestBackendBlock(t *testing.T) {
	b := newStarted(t)
	release := b.Block("StopVolume")
	done := make(chan error)
	go func() { done <- reportless(b.StopVolume(context.Background(), vol)) }()
	for b.Blocked("StopVolume") != 1 {
		time.Sleep(time.Millisecond)
	}
	if st := b.Replication(vol.VolumeUUID); st.State == ports.ReplicationAbsent {
		t.Fatal("a blocked StopVolume already acted")
	}
	release()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if st := b.Replication(vol.VolumeUUID); st.State != ports.ReplicationAbsent || !st.TargetExists {
		t.Fatalf("after StopVolume = %+v", st)
	}

	// A blocked call honours its ctx.
	b.Block("StartVolume")
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	if err := b.StartVolume(ctx, vol); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("blocked StartVolume = %v, want the deadline", err)
	}
}

func TestBackendEnvironmentHealth(t *testing.T) {
	ctx := t.Context()
	b := newStarted(t)
	b.SetEnvironmentHealth(env.ID, ports.EnvironmentHealth{Description: "rbd-mirror down"})
	if h, _ := b.EnvironmentStatus(ctx, env); h.Ready || h.Description != "rbd-mirror down" {
		t.Fatalf("forced health = %+v", h)
	}
	_ = b.PrepareEnvironment(ctx, env)
	if h, _ := b.EnvironmentStatus(ctx, env); !h.Ready {
		t.Fatalf("health after prepare = %+v", h)
	}
	if err := reportless(b.TeardownEnvironment(ctx, env, false)); !errors.Is(err, ports.ErrPrecondition) {
		t.Fatalf("teardown = %v, want ErrPrecondition", err)
	}
}

func TestBackends(t *testing.T) {
	ctx := t.Context()
	be := fake.NewBackend()
	bs := fake.NewBackends(map[string]ports.StorageBackend{"openstack.storage.type.ceph": be})
	if got, err := bs.For(ctx, "openstack.storage.type.ceph"); err != nil || got != be {
		t.Fatalf("For(ceph) = %v, %v", got, err)
	}
	if _, err := bs.For(ctx, "openstack.storage.type.lvm"); !errors.Is(err, ports.ErrNoBackend) {
		t.Fatalf("For(lvm) = %v, want ErrNoBackend", err)
	}
	info, _ := be.Info(ctx)
	if !slices.Equal(info.StorageTypes, []string{"openstack.storage.type.ceph"}) {
		t.Fatalf("default storage types %q", info.StorageTypes)
	}
}

// TestBackendVolumeStatuses: the bulk call answers as VolumeStatus would,
// in order, is logged with its count, fails as scripted, and counts a
// deleted target's DeleteDelay down.
func TestBackendVolumeStatuses(t *testing.T) {
	ctx := t.Context()
	b := newStarted(t)
	b.Sync(vol.VolumeUUID)
	other := vol
	other.VolumeUUID = "0c1d4a6e-7f6b-4d8c-9e0f-1a2b3c4d5e6f"
	vols := []ports.Volume{other, vol}
	reps, err := b.VolumeStatuses(ctx, env, vols)
	if err != nil {
		t.Fatal(err)
	}
	if len(reps) != 2 || reps[0].State != ports.ReplicationAbsent || reps[1] != b.Replication(vol.VolumeUUID) ||
		reps[1].State != ports.ReplicationReplaying {
		t.Fatalf("VolumeStatuses = %+v, want absent, then replaying", reps)
	}
	if log := b.CallLog(); log[len(log)-1] != "VolumeStatuses storage.11.13 2" {
		t.Fatalf("CallLog = %q, want it to end with the call and its count", log)
	}
	if b.Calls("VolumeStatuses") != 1 || b.Calls("VolumeStatus") != 0 {
		t.Fatalf("Calls: VolumeStatuses %d, VolumeStatus %d; want 1 and 0", b.Calls("VolumeStatuses"), b.Calls("VolumeStatus"))
	}

	b.FailNext("VolumeStatuses", ports.ErrRetryable)
	if reps, err := b.VolumeStatuses(ctx, env, vols); !errors.Is(err, ports.ErrRetryable) || reps != nil {
		t.Fatalf("VolumeStatuses after FailNext = %+v, %v; want ErrRetryable", reps, err)
	}

	b.DeleteDelay(2)
	_ = b.DeleteTarget(ctx, vol)
	var exists []bool
	for range 3 {
		reps, _ := b.VolumeStatuses(ctx, env, vols)
		exists = append(exists, reps[1].TargetExists)
	}
	if want := []bool{true, true, false}; !slices.Equal(exists, want) {
		t.Fatalf("TargetExists over bulk polls = %v, want %v", exists, want)
	}
}

func reportless(_ ports.CleanupReport, err error) error { return err }
