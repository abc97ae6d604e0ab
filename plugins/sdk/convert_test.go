package sdk_test

import (
	"context"
	"encoding/json"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/cdmdr/mirror/plugins/sdk"
	"github.com/cdmdr/mirror/plugins/sdk/plugintest"
)

// recorder returns fixed answers and keeps what each method received.
type recorder struct {
	mu   sync.Mutex
	got  map[string]any
	info sdk.Info
	env  sdk.EnvironmentHealth
	rep  sdk.VolumeReplication
	reps []sdk.VolumeReplication
	dr   sdk.CleanupReport
	lo   []sdk.Leftover
	snap sdk.SnapshotReplication
}

func (r *recorder) keep(method string, arg any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got[method] = arg
}

func (r *recorder) Info(context.Context) (sdk.Info, error) { r.keep("Info", nil); return r.info, nil }
func (r *recorder) PrepareEnvironment(_ context.Context, e sdk.Environment) error {
	r.keep("PrepareEnvironment", e)
	return nil
}
func (r *recorder) EnvironmentStatus(_ context.Context, e sdk.Environment) (sdk.EnvironmentHealth, error) {
	r.keep("EnvironmentStatus", e)
	return r.env, nil
}

// teardown is what TeardownEnvironment received.
type teardown struct {
	env   sdk.Environment
	force bool
}

func (r *recorder) TeardownEnvironment(_ context.Context, e sdk.Environment, force bool) (sdk.CleanupReport, error) {
	r.keep("TeardownEnvironment", teardown{e, force})
	return r.dr, nil
}
func (r *recorder) ReleaseEnvironment(_ context.Context, e sdk.Environment) error {
	r.keep("ReleaseEnvironment", e)
	return nil
}
func (r *recorder) StartVolume(_ context.Context, v sdk.Volume) error {
	r.keep("StartVolume", v)
	return nil
}
func (r *recorder) VolumeStatus(_ context.Context, v sdk.Volume) (sdk.VolumeReplication, error) {
	r.keep("VolumeStatus", v)
	return r.rep, nil
}

// volumeStatuses is what VolumeStatuses received.
type volumeStatuses struct {
	env  sdk.Environment
	vols []sdk.Volume
}

func (r *recorder) VolumeStatuses(_ context.Context, e sdk.Environment, vols []sdk.Volume) ([]sdk.VolumeReplication, error) {
	r.keep("VolumeStatuses", volumeStatuses{e, vols})
	return r.reps, nil
}
func (r *recorder) PauseVolume(_ context.Context, v sdk.Volume) error {
	r.keep("PauseVolume", v)
	return nil
}
func (r *recorder) ResumeVolume(_ context.Context, v sdk.Volume) error {
	r.keep("ResumeVolume", v)
	return nil
}
func (r *recorder) StopVolume(_ context.Context, v sdk.Volume) (sdk.CleanupReport, error) {
	r.keep("StopVolume", v)
	return r.dr, nil
}
func (r *recorder) DeleteTarget(_ context.Context, v sdk.Volume) error {
	r.keep("DeleteTarget", v)
	return nil
}
func (r *recorder) DestroyVolume(_ context.Context, v sdk.Volume) (sdk.CleanupReport, error) {
	r.keep("DestroyVolume", v)
	return r.dr, nil
}
func (r *recorder) FindLeftovers(_ context.Context, q sdk.LeftoverQuery) ([]sdk.Leftover, error) {
	r.keep("FindLeftovers", q)
	return r.lo, nil
}
func (r *recorder) AddSnapshot(_ context.Context, s sdk.Snapshot) error {
	r.keep("AddSnapshot", s)
	return nil
}
func (r *recorder) RemoveSnapshot(_ context.Context, s sdk.Snapshot) error {
	r.keep("RemoveSnapshot", s)
	return nil
}
func (r *recorder) SnapshotStatus(_ context.Context, s sdk.Snapshot) (sdk.SnapshotReplication, error) {
	r.keep("SnapshotStatus", s)
	return r.snap, nil
}

// TestValuesOverGRPC: every field of every request and answer crosses the
// wire unchanged.
func TestValuesOverGRPC(t *testing.T) {
	ctx := t.Context()
	r := &recorder{
		got: map[string]any{},
		info: sdk.Info{Name: "ceph-rbd", Version: "1.2.3", StorageTypes: []string{"openstack.storage.type.ceph", "x"},
			Capabilities: sdk.Capabilities{Pause: true, KeepTargetStop: true, Snapshots: true, SnapshotModes: []string{"journal", "snapshot"}, VolumesFollowEnvironment: true,
				PairingOnTargetOnly: true}},
		env: sdk.EnvironmentHealth{Ready: true, Description: "peered", Unintended: []string{"image volumes/volume-2 on storage 14"}},
		rep: sdk.VolumeReplication{State: sdk.ReplicationFailed, TargetExists: true, Progress: 42,
			LastSyncTime: time.Date(2026, 5, 6, 7, 8, 9, 123456789, time.UTC), Lag: "12 entries", Description: "split-brain",
			Kept: sdk.KeptPoint{Name: "image volumes/volume-1.kept", Taken: time.Date(2026, 5, 6, 7, 0, 0, 5, time.UTC)}},
		reps: []sdk.VolumeReplication{
			{State: sdk.ReplicationReplaying, TargetExists: true, Progress: 100,
				LastSyncTime: time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC), Lag: "0 entries"},
			{State: sdk.ReplicationAbsent},
			{State: sdk.ReplicationSyncing, TargetExists: true, Progress: 7},
		},
		dr: sdk.CleanupReport{Leftovers: []string{"image volume-1 on storage 14: unreachable", "snapshot s"}},
		lo: []sdk.Leftover{{Kind: "copy", Name: "image volumes/volume-1", Description: "kept: the source was unreachable", Remedy: "rbd rm volumes/volume-1"},
			{Kind: "pairing", Name: "peer p"}},
		snap: sdk.SnapshotReplication{State: sdk.SnapshotPending, Description: "copying"},
	}
	client, _ := plugintest.ServeGRPC(t, r)

	env := sdk.Environment{
		ID: "storage.13.14",
		Source: sdk.Storage{ClusterID: 5, StorageID: 13, Type: "openstack.storage.type.ceph", BackendName: "ceph",
			Metadata: json.RawMessage(`{"pool":"volumes","keyring":"k","unknown":{"kept":true}}`)},
		Target: sdk.Storage{ClusterID: 6, StorageID: 14, Type: "openstack.storage.type.ceph", BackendName: "ceph-dr",
			Metadata: json.RawMessage(`{"pool":"volumes-dr"}`)},
	}
	vol := sdk.Volume{Environment: env, ClusterID: 5, VolumeID: 7, VolumeUUID: "bae4c30d-3119-4870-807e-0e1a9fcbf185",
		SourceAgent: sdk.Agent{IP: "192.168.137.101", Port: 8080}}
	vols := []sdk.Volume{vol, vol, vol}
	vols[1].VolumeID, vols[1].VolumeUUID = 8, "6f0e"
	vols[2].ClusterID, vols[2].VolumeID, vols[2].VolumeUUID = 0, 9, "" // zero fields stay zero
	vols[2].SourceAgent = sdk.Agent{}
	snap := sdk.Snapshot{Volume: vol, SnapshotID: 9, SnapshotUUID: "0b1c", SnapshotName: "snapshot-0b1c"}

	check := func(what string, got, want any) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %#v\nwant %#v", what, got, want)
		}
	}
	info, err := client.Info(ctx)
	check("Info", err, nil)
	check("Info", info, r.info)
	h, err := client.EnvironmentStatus(ctx, env)
	check("EnvironmentStatus", err, nil)
	check("EnvironmentStatus", h, r.env)
	rep, err := client.VolumeStatus(ctx, vol)
	check("VolumeStatus", err, nil)
	check("VolumeStatus", rep, r.rep)
	reps, err := client.VolumeStatuses(ctx, env, vols)
	check("VolumeStatuses", err, nil)
	check("VolumeStatuses", reps, r.reps)
	dr, err := client.DestroyVolume(ctx, vol)
	check("DestroyVolume", err, nil)
	check("DestroyVolume", dr, r.dr)
	dr, err = client.StopVolume(ctx, vol)
	check("StopVolume", err, nil)
	check("StopVolume", dr, r.dr)
	dr, err = client.TeardownEnvironment(ctx, env, true)
	check("TeardownEnvironment", err, nil)
	check("TeardownEnvironment", dr, r.dr)
	query := sdk.LeftoverQuery{Storage: env.Target, Environments: []sdk.Environment{env}, Volumes: []sdk.Volume{vol}}
	lo, err := client.FindLeftovers(ctx, query)
	check("FindLeftovers", err, nil)
	check("FindLeftovers", lo, r.lo)
	ss, err := client.SnapshotStatus(ctx, snap)
	check("SnapshotStatus", err, nil)
	check("SnapshotStatus", ss, r.snap)
	for _, err := range []error{
		client.PrepareEnvironment(ctx, env), client.ReleaseEnvironment(ctx, env),
		client.StartVolume(ctx, vol), client.PauseVolume(ctx, vol), client.ResumeVolume(ctx, vol),
		client.DeleteTarget(ctx, vol),
		client.AddSnapshot(ctx, snap), client.RemoveSnapshot(ctx, snap),
	} {
		check("call", err, nil)
	}

	r.mu.Lock()
	defer r.mu.Unlock()
	for method, want := range map[string]any{
		"PrepareEnvironment": env, "EnvironmentStatus": env, "TeardownEnvironment": teardown{env, true}, "ReleaseEnvironment": env,
		"FindLeftovers": query,
		"StartVolume":   vol, "VolumeStatus": vol, "VolumeStatuses": volumeStatuses{env, vols}, "PauseVolume": vol, "ResumeVolume": vol, "StopVolume": vol,
		"DeleteTarget": vol, "DestroyVolume": vol,
		"AddSnapshot": snap, "RemoveSnapshot": snap, "SnapshotStatus": snap,
	} {
		check(method+" received", r.got[method], want)
	}

	// Zero values stay zero: no LastSyncTime, no leftovers; no volumes,
	// no answers.
	r.reps = nil
	r.mu.Unlock()
	reps, err = client.VolumeStatuses(ctx, env, nil)
	r.mu.Lock()
	check("VolumeStatuses of no volumes", err, nil)
	if len(reps) != 0 {
		t.Errorf("VolumeStatuses of no volumes = %+v, want none", reps)
	}

	r.rep = sdk.VolumeReplication{State: sdk.ReplicationAbsent}
	r.mu.Unlock()
	rep, err = client.VolumeStatus(ctx, vol)
	r.mu.Lock()
	check("VolumeStatus", err, nil)
	if !rep.LastSyncTime.IsZero() || rep.State != sdk.ReplicationAbsent {
		t.Errorf("absent VolumeStatus = %+v, want a zero LastSyncTime", rep)
	}
}
