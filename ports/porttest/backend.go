package porttest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cdmdr/mirror/plugins/sdk"
	"github.com/cdmdr/mirror/plugins/sdk/plugintest"
	"github.com/cdmdr/mirror/ports"
)

// BackendHarness is one subtest's fixture for a storage backend: the
// backend and things that exist on its source storage.
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
	// Settle runs before each look at a state the storage reaches on its
	// own (sync done, target deleted): a real backend does nothing, a
	// simulator may move on.
	Settle()
	// Timeout bounds each wait for such a state.
	Timeout() time.Duration
}

// RunBackend checks that a ports.StorageBackend honours its contract. The
// contract is the plugin SDK's sdk.Backend in the daemon's types, so this
// runs the SDK's conformance kit (plugintest.Run) through an adapter: one
// suite for the fakes, the plugin host's wrapper and every plugin.
func RunBackend(t *testing.T, newHarness func(t *testing.T) BackendHarness) {
	t.Helper()
	plugintest.Run(t, func(t *testing.T) plugintest.Harness { return sdkHarness{newHarness(t)} })
}

type sdkHarness struct{ h BackendHarness }

func (s sdkHarness) Backend() sdk.Backend         { return sdkBackend{s.h.Backend(), s.h.Settle} }
func (s sdkHarness) Environment() sdk.Environment { return envToSDK(s.h.Environment()) }
func (s sdkHarness) Volume() sdk.Volume           { return volToSDK(s.h.Volume()) }
func (s sdkHarness) Snapshot() sdk.Snapshot       { return snapToSDK(s.h.Snapshot()) }
func (s sdkHarness) Timeout() time.Duration       { return s.h.Timeout() }

// sdkBackend presents a ports.StorageBackend as an sdk.Backend.
type sdkBackend struct {
	b      ports.StorageBackend
	settle func()
}

func (a sdkBackend) Info(ctx context.Context) (sdk.Info, error) {
	i, err := a.b.Info(ctx)
	return sdk.Info{Name: i.Name, Version: i.Version, StorageTypes: i.StorageTypes, Capabilities: sdk.Capabilities{
		Pause: i.Capabilities.Pause, KeepTargetStop: i.Capabilities.KeepTargetStop,
		Snapshots: i.Capabilities.Snapshots, SnapshotModes: i.Capabilities.SnapshotModes,
	}}, toSDKErr(err)
}

func (a sdkBackend) PrepareEnvironment(ctx context.Context, e sdk.Environment) error {
	return toSDKErr(a.b.PrepareEnvironment(ctx, envFromSDK(e)))
}

func (a sdkBackend) EnvironmentStatus(ctx context.Context, e sdk.Environment) (sdk.EnvironmentHealth, error) {
	h, err := a.b.EnvironmentStatus(ctx, envFromSDK(e))
	return sdk.EnvironmentHealth{Ready: h.Ready, Description: h.Description}, toSDKErr(err)
}

func (a sdkBackend) TeardownEnvironment(ctx context.Context, e sdk.Environment) error {
	return toSDKErr(a.b.TeardownEnvironment(ctx, envFromSDK(e)))
}

func (a sdkBackend) StartVolume(ctx context.Context, v sdk.Volume) error {
	return toSDKErr(a.b.StartVolume(ctx, volFromSDK(v)))
}

func (a sdkBackend) VolumeStatus(ctx context.Context, v sdk.Volume) (sdk.VolumeReplication, error) {
	a.settle()
	r, err := a.b.VolumeStatus(ctx, volFromSDK(v))
	return sdk.VolumeReplication{State: sdk.ReplicationState(r.State), TargetExists: r.TargetExists, Progress: r.Progress,
		LastSyncTime: r.LastSyncTime, Lag: r.Lag, Description: r.Description}, toSDKErr(err)
}

func (a sdkBackend) PauseVolume(ctx context.Context, v sdk.Volume) error {
	return toSDKErr(a.b.PauseVolume(ctx, volFromSDK(v)))
}

func (a sdkBackend) ResumeVolume(ctx context.Context, v sdk.Volume) error {
	return toSDKErr(a.b.ResumeVolume(ctx, volFromSDK(v)))
}

func (a sdkBackend) StopVolume(ctx context.Context, v sdk.Volume) error {
	return toSDKErr(a.b.StopVolume(ctx, volFromSDK(v)))
}

func (a sdkBackend) DeleteTarget(ctx context.Context, v sdk.Volume) error {
	return toSDKErr(a.b.DeleteTarget(ctx, volFromSDK(v)))
}

func (a sdkBackend) DestroyVolume(ctx context.Context, v sdk.Volume) (sdk.DestroyReport, error) {
	r, err := a.b.DestroyVolume(ctx, volFromSDK(v))
	return sdk.DestroyReport{Leftovers: r.Leftovers}, toSDKErr(err)
}

func (a sdkBackend) AddSnapshot(ctx context.Context, s sdk.Snapshot) error {
	return toSDKErr(a.b.AddSnapshot(ctx, snapFromSDK(s)))
}

func (a sdkBackend) RemoveSnapshot(ctx context.Context, s sdk.Snapshot) error {
	return toSDKErr(a.b.RemoveSnapshot(ctx, snapFromSDK(s)))
}

func (a sdkBackend) SnapshotStatus(ctx context.Context, s sdk.Snapshot) (sdk.SnapshotReplication, error) {
	a.settle()
	r, err := a.b.SnapshotStatus(ctx, snapFromSDK(s))
	return sdk.SnapshotReplication{State: sdk.SnapshotState(r.State), Description: r.Description}, toSDKErr(err)
}

// toSDKErr keeps err and adds the SDK sentinel its ports sentinel stands
// for, so the kit's errors.Is checks see the same kinds.
func toSDKErr(err error) error {
	for _, m := range []struct{ p, s error }{
		{ports.ErrNotFound, sdk.ErrNotFound}, {ports.ErrPrecondition, sdk.ErrPrecondition},
		{ports.ErrInProgress, sdk.ErrInProgress}, {ports.ErrRetryable, sdk.ErrRetryable},
	} {
		if errors.Is(err, m.p) {
			return fmt.Errorf("%w (%w)", err, m.s)
		}
	}
	return err
}

func storageToSDK(s ports.Storage) sdk.Storage {
	return sdk.Storage{ClusterID: s.ClusterID, StorageID: s.StorageID, Type: s.Type, BackendName: s.BackendName, Metadata: s.Metadata}
}

func storageFromSDK(s sdk.Storage) ports.Storage {
	return ports.Storage{ClusterID: s.ClusterID, StorageID: s.StorageID, Type: s.Type, BackendName: s.BackendName, Metadata: s.Metadata}
}

func envToSDK(e ports.Environment) sdk.Environment {
	return sdk.Environment{ID: e.ID, Source: storageToSDK(e.Source), Target: storageToSDK(e.Target)}
}

func envFromSDK(e sdk.Environment) ports.Environment {
	return ports.Environment{ID: e.ID, Source: storageFromSDK(e.Source), Target: storageFromSDK(e.Target)}
}

func volToSDK(v ports.Volume) sdk.Volume {
	return sdk.Volume{Environment: envToSDK(v.Environment), ClusterID: v.ClusterID, VolumeID: v.VolumeID, VolumeUUID: v.VolumeUUID}
}

func volFromSDK(v sdk.Volume) ports.Volume {
	return ports.Volume{Environment: envFromSDK(v.Environment), ClusterID: v.ClusterID, VolumeID: v.VolumeID, VolumeUUID: v.VolumeUUID}
}

func snapToSDK(s ports.Snapshot) sdk.Snapshot {
	return sdk.Snapshot{Volume: volToSDK(s.Volume), SnapshotID: s.SnapshotID, SnapshotUUID: s.SnapshotUUID, SnapshotName: s.SnapshotName}
}

func snapFromSDK(s sdk.Snapshot) ports.Snapshot {
	return ports.Snapshot{Volume: volFromSDK(s.Volume), SnapshotID: s.SnapshotID, SnapshotUUID: s.SnapshotUUID, SnapshotName: s.SnapshotName}
}
