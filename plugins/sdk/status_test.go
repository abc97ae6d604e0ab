package sdk_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cdmdr/mirror/plugins/sdk"
	"github.com/cdmdr/mirror/plugins/sdk/memstorage"
	"github.com/cdmdr/mirror/plugins/sdk/plugintest"
)

// failing is a backend whose every method fails with err.
type failing struct{ err error }

func (f failing) Info(context.Context) (sdk.Info, error)                    { return sdk.Info{}, f.err }
func (f failing) PrepareEnvironment(context.Context, sdk.Environment) error { return f.err }
func (f failing) EnvironmentStatus(context.Context, sdk.Environment) (sdk.EnvironmentHealth, error) {
	return sdk.EnvironmentHealth{}, f.err
}
func (f failing) TeardownEnvironment(context.Context, sdk.Environment, bool) (sdk.CleanupReport, error) {
	return sdk.CleanupReport{}, f.err
}
func (f failing) ReleaseEnvironment(context.Context, sdk.Environment) error { return f.err }
func (f failing) StartVolume(context.Context, sdk.Volume) error             { return f.err }
func (f failing) VolumeStatus(context.Context, sdk.Volume) (sdk.VolumeReplication, error) {
	return sdk.VolumeReplication{}, f.err
}
func (f failing) VolumeStatuses(context.Context, sdk.Environment, []sdk.Volume) ([]sdk.VolumeReplication, error) {
	return nil, f.err
}
func (f failing) PauseVolume(context.Context, sdk.Volume) error  { return f.err }
func (f failing) ResumeVolume(context.Context, sdk.Volume) error { return f.err }
func (f failing) StopVolume(context.Context, sdk.Volume) (sdk.CleanupReport, error) {
	return sdk.CleanupReport{}, f.err
}
func (f failing) DeleteTarget(context.Context, sdk.Volume) error { return f.err }
func (f failing) DestroyVolume(context.Context, sdk.Volume) (sdk.CleanupReport, error) {
	return sdk.CleanupReport{}, f.err
}
func (f failing) AddSnapshot(context.Context, sdk.Snapshot) error    { return f.err }
func (f failing) RemoveSnapshot(context.Context, sdk.Snapshot) error { return f.err }
func (f failing) SnapshotStatus(context.Context, sdk.Snapshot) (sdk.SnapshotReplication, error) {
	return sdk.SnapshotReplication{}, f.err
}
func (f failing) FindLeftovers(context.Context, sdk.LeftoverQuery) ([]sdk.Leftover, error) {
	return nil, f.err
}

// calls calls every method of b once, in a fixed order.
func calls(ctx context.Context, b sdk.Backend) map[string]error {
	var env sdk.Environment
	var vol sdk.Volume
	var snap sdk.Snapshot
	out := map[string]error{}
	_, out["Info"] = b.Info(ctx)
	out["PrepareEnvironment"] = b.PrepareEnvironment(ctx, env)
	_, out["EnvironmentStatus"] = b.EnvironmentStatus(ctx, env)
	_, out["TeardownEnvironment"] = b.TeardownEnvironment(ctx, env, false)
	out["StartVolume"] = b.StartVolume(ctx, vol)
	_, out["VolumeStatus"] = b.VolumeStatus(ctx, vol)
	_, out["VolumeStatuses"] = b.VolumeStatuses(ctx, env, []sdk.Volume{vol})
	out["PauseVolume"] = b.PauseVolume(ctx, vol)
	out["ResumeVolume"] = b.ResumeVolume(ctx, vol)
	_, out["StopVolume"] = b.StopVolume(ctx, vol)
	out["DeleteTarget"] = b.DeleteTarget(ctx, vol)
	_, out["DestroyVolume"] = b.DestroyVolume(ctx, vol)
	out["AddSnapshot"] = b.AddSnapshot(ctx, snap)
	out["RemoveSnapshot"] = b.RemoveSnapshot(ctx, snap)
	_, out["SnapshotStatus"] = b.SnapshotStatus(ctx, snap)
	_, out["FindLeftovers"] = b.FindLeftovers(ctx, sdk.LeftoverQuery{})
	return out
}

// TestErrorsOverGRPC: each error the daemon acts on survives the trip
// from plugin to daemon, for errors.Is and with its message unchanged.
func TestErrorsOverGRPC(t *testing.T) {
	kinds := []error{sdk.ErrNotFound, sdk.ErrPrecondition, sdk.ErrInProgress, sdk.ErrRetryable,
		context.Canceled, context.DeadlineExceeded}
	all := append(kinds, nil)
	for _, kind := range all {
		name := "plain"
		if kind != nil {
			name = kind.Error()
		}
		t.Run(name, func(t *testing.T) {
			err := errors.New("rbd: mirror image enable volume-1: pool \"volumes\" not peered; peer it first\nsecond line é")
			if kind != nil {
				err = fmt.Errorf("enable mirroring on volume-1: %w", kind)
			}
			client, _ := plugintest.ServeGRPC(t, failing{err: err})
			for method, got := range calls(t.Context(), client) {
				if got == nil || got.Error() != err.Error() {
					t.Errorf("%s: error %q, want the message %q", method, got, err)
				}
				var remote *sdk.RemoteError
				if !errors.As(got, &remote) {
					t.Errorf("%s: error %T, want a *sdk.RemoteError", method, got)
				}
				for _, other := range kinds {
					if errors.Is(got, other) != (other == kind) {
						t.Errorf("%s: errors.Is(%q, %v) = %v, want %v", method, got, other, !(other == kind), other == kind)
					}
				}
			}
		})
	}
}

// TestPluginDied: a call to a plugin that is gone is ErrRetryable, and
// returns at once.
func TestPluginDied(t *testing.T) {
	client, stop := plugintest.ServeGRPC(t, memstorage.New())
	if _, err := client.Info(t.Context()); err != nil {
		t.Fatalf("Info before the plugin died: %v", err)
	}
	stop()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	for method, err := range calls(ctx, client) {
		if !errors.Is(err, sdk.ErrRetryable) {
			t.Errorf("%s on a dead plugin = %v, want ErrRetryable", method, err)
		}
	}
}

// TestCancelOverGRPC: a daemon-side ctx that ends comes back as its own
// error, not a plugin's.
func TestCancelOverGRPC(t *testing.T) {
	client, _ := plugintest.ServeGRPC(t, memstorage.New())
	ctx, cancel := context.WithTimeout(t.Context(), time.Nanosecond)
	defer cancel()
	<-ctx.Done()
	if _, err := client.Info(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Info with an expired ctx = %v, want DeadlineExceeded", err)
	}
}
