package metrics

import (
	"context"
	"errors"
	"time"

	"github.com/cdmdr/mirror/ports"
)

// Backends measures every call into the backends bs routes to: its
// duration by storage type and method, and its errors by class. A storage
// type is served by one plugin at a time, so the storage type names the
// plugin.
func (m *Metrics) Backends(bs ports.Backends) ports.Backends {
	return measuredBackends{m: m, next: bs}
}

type measuredBackends struct {
	m    *Metrics
	next ports.Backends
}

func (mb measuredBackends) For(ctx context.Context, storageType string) (ports.StorageBackend, error) {
	b, err := mb.next.For(ctx, storageType)
	if err != nil {
		return nil, err
	}
	return &measured{m: mb.m, typ: storageType, next: b}, nil
}

// measured is one backend, measured.
type measured struct {
	m    *Metrics
	typ  string
	next ports.StorageBackend
}

var _ ports.StorageBackend = (*measured)(nil)

// errorClass sorts a backend error into a small fixed set, for a label.
func errorClass(err error) string {
	switch {
	case errors.Is(err, ports.ErrInProgress):
		return "in_progress"
	case errors.Is(err, ports.ErrNotFound):
		return "not_found"
	case errors.Is(err, ports.ErrPrecondition):
		return "precondition"
	case errors.Is(err, ports.ErrRetryable):
		return "retryable"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return "other"
}

func (b *measured) observe(method string, began time.Time, err error) {
	b.m.backendTime.WithLabelValues(b.typ, method).Observe(time.Since(began).Seconds())
	if err != nil {
		b.m.backendErrs.WithLabelValues(b.typ, method, errorClass(err)).Inc()
	}
}

// call measures one call returning a value.
func call[T any](b *measured, method string, f func() (T, error)) (T, error) {
	began := time.Now()
	v, err := f()
	b.observe(method, began, err)
	return v, err
}

// do measures one call returning only an error.
func (b *measured) do(method string, f func() error) error {
	began := time.Now()
	err := f()
	b.observe(method, began, err)
	return err
}

func (b *measured) Info(ctx context.Context) (ports.Info, error) {
	return call(b, "Info", func() (ports.Info, error) { return b.next.Info(ctx) })
}

func (b *measured) PrepareEnvironment(ctx context.Context, env ports.Environment) error {
	return b.do("PrepareEnvironment", func() error { return b.next.PrepareEnvironment(ctx, env) })
}

func (b *measured) EnvironmentStatus(ctx context.Context, env ports.Environment) (ports.EnvironmentHealth, error) {
	return call(b, "EnvironmentStatus", func() (ports.EnvironmentHealth, error) { return b.next.EnvironmentStatus(ctx, env) })
}

func (b *measured) TeardownEnvironment(ctx context.Context, env ports.Environment, force bool) (ports.CleanupReport, error) {
	return call(b, "TeardownEnvironment", func() (ports.CleanupReport, error) { return b.next.TeardownEnvironment(ctx, env, force) })
}

func (b *measured) ReleaseEnvironment(ctx context.Context, env ports.Environment) error {
	return b.do("ReleaseEnvironment", func() error { return b.next.ReleaseEnvironment(ctx, env) })
}

func (b *measured) StartVolume(ctx context.Context, vol ports.Volume) error {
	return b.do("StartVolume", func() error { return b.next.StartVolume(ctx, vol) })
}

func (b *measured) VolumeStatus(ctx context.Context, vol ports.Volume) (ports.VolumeReplication, error) {
	return call(b, "VolumeStatus", func() (ports.VolumeReplication, error) { return b.next.VolumeStatus(ctx, vol) })
}

func (b *measured) VolumeStatuses(ctx context.Context, env ports.Environment, vols []ports.Volume) ([]ports.VolumeReplication, error) {
	return call(b, "VolumeStatuses", func() ([]ports.VolumeReplication, error) { return b.next.VolumeStatuses(ctx, env, vols) })
}

func (b *measured) PauseVolume(ctx context.Context, vol ports.Volume) error {
	return b.do("PauseVolume", func() error { return b.next.PauseVolume(ctx, vol) })
}

func (b *measured) ResumeVolume(ctx context.Context, vol ports.Volume) error {
	return b.do("ResumeVolume", func() error { return b.next.ResumeVolume(ctx, vol) })
}

func (b *measured) StopVolume(ctx context.Context, vol ports.Volume) (ports.CleanupReport, error) {
	return call(b, "StopVolume", func() (ports.CleanupReport, error) { return b.next.StopVolume(ctx, vol) })
}

func (b *measured) DeleteTarget(ctx context.Context, vol ports.Volume) error {
	return b.do("DeleteTarget", func() error { return b.next.DeleteTarget(ctx, vol) })
}

func (b *measured) DestroyVolume(ctx context.Context, vol ports.Volume) (ports.CleanupReport, error) {
	return call(b, "DestroyVolume", func() (ports.CleanupReport, error) { return b.next.DestroyVolume(ctx, vol) })
}

func (b *measured) AddSnapshot(ctx context.Context, snap ports.Snapshot) error {
	return b.do("AddSnapshot", func() error { return b.next.AddSnapshot(ctx, snap) })
}

func (b *measured) RemoveSnapshot(ctx context.Context, snap ports.Snapshot) error {
	return b.do("RemoveSnapshot", func() error { return b.next.RemoveSnapshot(ctx, snap) })
}

func (b *measured) SnapshotStatus(ctx context.Context, snap ports.Snapshot) (ports.SnapshotReplication, error) {
	return call(b, "SnapshotStatus", func() (ports.SnapshotReplication, error) { return b.next.SnapshotStatus(ctx, snap) })
}

func (b *measured) FindLeftovers(ctx context.Context, q ports.LeftoverQuery) ([]ports.Leftover, error) {
	return call(b, "FindLeftovers", func() ([]ports.Leftover, error) { return b.next.FindLeftovers(ctx, q) })
}
