package pluginhost

import (
	"context"
	"fmt"

	"github.com/cdmdr/mirror/plugins/sdk"
	"github.com/cdmdr/mirror/ports"
)

// backend is a plugin as the daemon's port: each call is bounded by the
// call timeout, goes to the plugin's running process (started again if it
// exited), and its error is mapped to the port's. The port and the SDK
// share the storage contract's types, so values pass through as they
// are. It never logs what it passes: storage metadata holds keyrings.
type backend struct {
	m *managed
}

var _ ports.StorageBackend = (*backend)(nil)

// call runs f against the plugin's process.
func call[T any](b *backend, ctx context.Context, method string, f func(context.Context, sdk.Backend) (T, error)) (T, error) {
	var zero T
	callCtx, cancel := context.WithTimeout(ctx, b.m.host.cfg.CallTimeout)
	defer cancel()
	if err := ctx.Err(); err != nil {
		return zero, b.mapError(ctx, callCtx, method, nil, err)
	}
	inst, err := b.m.get(callCtx)
	if err != nil {
		return zero, b.mapError(ctx, callCtx, method, nil, err)
	}
	v, err := f(callCtx, inst.be)
	if err != nil {
		return zero, b.mapError(ctx, callCtx, method, inst, err)
	}
	return v, nil
}

func do(b *backend, ctx context.Context, method string, f func(context.Context, sdk.Backend) error) error {
	_, err := call(b, ctx, method, func(ctx context.Context, be sdk.Backend) (struct{}, error) {
		return struct{}{}, f(ctx, be)
	})
	return err
}

// invalid is the error for an answer outside the protocol.
func (b *backend) invalid(method, what string) error {
	return &callError{msg: fmt.Sprintf("plugin %s: %s: answered %s", b.m.displayName(), method, what)}
}

func (b *backend) Info(ctx context.Context) (ports.Info, error) {
	return call(b, ctx, "Info", func(ctx context.Context, be sdk.Backend) (ports.Info, error) {
		return be.Info(ctx)
	})
}

func (b *backend) PrepareEnvironment(ctx context.Context, env ports.Environment) error {
	return do(b, ctx, "PrepareEnvironment", func(ctx context.Context, be sdk.Backend) error {
		return be.PrepareEnvironment(ctx, env)
	})
}

func (b *backend) EnvironmentStatus(ctx context.Context, env ports.Environment) (ports.EnvironmentHealth, error) {
	h, err := call(b, ctx, "EnvironmentStatus", func(ctx context.Context, be sdk.Backend) (ports.EnvironmentHealth, error) {
		return be.EnvironmentStatus(ctx, env)
	})
	h.Description = cutText(h.Description)
	for i, u := range h.Unintended {
		h.Unintended[i] = cutText(u)
	}
	return h, err
}

func (b *backend) TeardownEnvironment(ctx context.Context, env ports.Environment, force bool) (ports.CleanupReport, error) {
	return cutReport(call(b, ctx, "TeardownEnvironment", func(ctx context.Context, be sdk.Backend) (ports.CleanupReport, error) {
		return be.TeardownEnvironment(ctx, env, force)
	}))
}

func (b *backend) ReleaseEnvironment(ctx context.Context, env ports.Environment) error {
	return do(b, ctx, "ReleaseEnvironment", func(ctx context.Context, be sdk.Backend) error {
		return be.ReleaseEnvironment(ctx, env)
	})
}

func (b *backend) StartVolume(ctx context.Context, vol ports.Volume) error {
	return do(b, ctx, "StartVolume", func(ctx context.Context, be sdk.Backend) error {
		return be.StartVolume(ctx, vol)
	})
}

func (b *backend) VolumeStatus(ctx context.Context, vol ports.Volume) (ports.VolumeReplication, error) {
	r, err := call(b, ctx, "VolumeStatus", func(ctx context.Context, be sdk.Backend) (ports.VolumeReplication, error) {
		return be.VolumeStatus(ctx, vol)
	})
	if err != nil {
		return r, err
	}
	if what := invalidReplication(r, vol.VolumeUUID); what != "" {
		return ports.VolumeReplication{}, b.invalid("VolumeStatus", what)
	}
	return cutReplication(r), nil
}

// VolumeStatuses is one call, bounded by the call timeout as a whole: a
// plugin built before VolumeStatuses existed is asked VolumeStatus of
// each volume by the SDK's client within it.
func (b *backend) VolumeStatuses(ctx context.Context, env ports.Environment, vols []ports.Volume) ([]ports.VolumeReplication, error) {
	if len(vols) > ports.MaxVolumeStatuses {
		return nil, &callError{msg: fmt.Sprintf("plugin %s: VolumeStatuses: asked about %d volumes at once, at most %d may be",
			b.m.displayName(), len(vols), ports.MaxVolumeStatuses)}
	}
	reps, err := call(b, ctx, "VolumeStatuses", func(ctx context.Context, be sdk.Backend) ([]ports.VolumeReplication, error) {
		return be.VolumeStatuses(ctx, env, vols)
	})
	if err != nil {
		return nil, err
	}
	if len(reps) != len(vols) {
		return nil, b.invalid("VolumeStatuses", fmt.Sprintf("%d replications for %d volumes", len(reps), len(vols)))
	}
	for i, r := range reps {
		if what := invalidReplication(r, vols[i].VolumeUUID); what != "" {
			return nil, b.invalid("VolumeStatuses", what)
		}
		reps[i] = cutReplication(r)
	}
	return reps, nil
}

// invalidReplication says what in r the contract does not allow, or "".
func invalidReplication(r ports.VolumeReplication, volumeUUID string) string {
	if !knownState(r.State) {
		return fmt.Sprintf("an unknown replication state %q for volume %s", cutText(string(r.State)), volumeUUID)
	}
	if r.Progress < 0 || r.Progress > 100 {
		// Written as it is into the volume's status, whose readers
		// expect a percentage (docs/contract.md §2.4).
		return fmt.Sprintf("a progress of %d %% for volume %s (not within 0..100)", r.Progress, volumeUUID)
	}
	return ""
}

// cutReplication is r with its texts cut to maxPluginText.
func cutReplication(r ports.VolumeReplication) ports.VolumeReplication {
	r.Description, r.Lag, r.Kept.Name = cutText(r.Description), cutText(r.Lag), cutText(r.Kept.Name)
	return r
}

// knownState says whether s is a replication state of the contract.
func knownState(s ports.ReplicationState) bool {
	switch s {
	case ports.ReplicationAbsent, ports.ReplicationSyncing, ports.ReplicationReplaying, ports.ReplicationPaused, ports.ReplicationFailed:
		return true
	}
	return false
}

func (b *backend) PauseVolume(ctx context.Context, vol ports.Volume) error {
	return do(b, ctx, "PauseVolume", func(ctx context.Context, be sdk.Backend) error {
		return be.PauseVolume(ctx, vol)
	})
}

func (b *backend) ResumeVolume(ctx context.Context, vol ports.Volume) error {
	return do(b, ctx, "ResumeVolume", func(ctx context.Context, be sdk.Backend) error {
		return be.ResumeVolume(ctx, vol)
	})
}

func (b *backend) StopVolume(ctx context.Context, vol ports.Volume) (ports.CleanupReport, error) {
	return cutReport(call(b, ctx, "StopVolume", func(ctx context.Context, be sdk.Backend) (ports.CleanupReport, error) {
		return be.StopVolume(ctx, vol)
	}))
}

func (b *backend) DeleteTarget(ctx context.Context, vol ports.Volume) error {
	return do(b, ctx, "DeleteTarget", func(ctx context.Context, be sdk.Backend) error {
		return be.DeleteTarget(ctx, vol)
	})
}

func (b *backend) DestroyVolume(ctx context.Context, vol ports.Volume) (ports.CleanupReport, error) {
	return cutReport(call(b, ctx, "DestroyVolume", func(ctx context.Context, be sdk.Backend) (ports.CleanupReport, error) {
		return be.DestroyVolume(ctx, vol)
	}))
}

func (b *backend) AddSnapshot(ctx context.Context, snap ports.Snapshot) error {
	return do(b, ctx, "AddSnapshot", func(ctx context.Context, be sdk.Backend) error {
		return be.AddSnapshot(ctx, snap)
	})
}

func (b *backend) RemoveSnapshot(ctx context.Context, snap ports.Snapshot) error {
	return do(b, ctx, "RemoveSnapshot", func(ctx context.Context, be sdk.Backend) error {
		return be.RemoveSnapshot(ctx, snap)
	})
}

func (b *backend) FindLeftovers(ctx context.Context, q ports.LeftoverQuery) ([]ports.Leftover, error) {
	return call(b, ctx, "FindLeftovers", func(ctx context.Context, be sdk.Backend) ([]ports.Leftover, error) {
		return be.FindLeftovers(ctx, q)
	})
}

func (b *backend) SnapshotStatus(ctx context.Context, snap ports.Snapshot) (ports.SnapshotReplication, error) {
	r, err := call(b, ctx, "SnapshotStatus", func(ctx context.Context, be sdk.Backend) (ports.SnapshotReplication, error) {
		return be.SnapshotStatus(ctx, snap)
	})
	if err != nil {
		return r, err
	}
	switch r.State {
	case ports.SnapshotAbsent, ports.SnapshotPending, ports.SnapshotReady:
		r.Description = cutText(r.Description)
		return r, nil
	}
	return ports.SnapshotReplication{}, b.invalid("SnapshotStatus", fmt.Sprintf("an unknown snapshot state %q", cutText(string(r.State))))
}

// cutReport is a cleanup report with each of its texts cut to
// maxPluginText.
func cutReport(r ports.CleanupReport, err error) (ports.CleanupReport, error) {
	for i, l := range r.Leftovers {
		r.Leftovers[i] = cutText(l)
	}
	return r, err
}
