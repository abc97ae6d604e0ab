package cephrbd

import (
	"context"
	"fmt"
	"strings"

	"github.com/ceph/go-ceph/rbd"
	"github.com/ceph/go-ceph/rbd/admin"
)

// addSchedule gives the source image the storage's mirror snapshot
// schedule (snapshot mode), unless it has it already.
func (b *Backend) addSchedule(ctx context.Context, v *volConns) error {
	conn, err := b.conn(ctx, v.src, false)
	if err != nil {
		return err
	}
	level := admin.NewLevelSpec(v.src.m.Pool, "", v.name)
	return do(ctx, func() error {
		ra := admin.NewFromConn(conn).MirrorSnashotSchedule()
		if list, err := ra.List(level); err == nil && v.hasSchedule(list) {
			return nil
		}
		if err := ra.Add(level, admin.Interval(v.src.m.MirrorSnapshotInterval), admin.NoStartTime); err != nil {
			return fmt.Errorf("add mirror snapshot schedule %s to %s/%s on storage %s: %w",
				v.src.m.MirrorSnapshotInterval, v.src.m.Pool, v.name, v.src.key(), err)
		}
		return nil
	})
}

// hasSchedule says whether list holds the storage's interval for the
// volume's image.
func (v *volConns) hasSchedule(list []admin.SnapshotSchedule) bool {
	for _, s := range list {
		if s.Name != v.name && !strings.HasSuffix(s.Name, "/"+v.name) {
			continue
		}
		for _, t := range s.Schedule {
			if string(t.Interval) == v.src.m.MirrorSnapshotInterval {
				return true
			}
		}
	}
	return false
}

// removeSchedule removes the image's snapshot schedule, before mirroring
// is disabled: a schedule left behind would outlive the mirroring. Best
// effort.
func (b *Backend) removeSchedule(ctx context.Context, v *volConns, in imageInfo) {
	if v.src.m.MirrorSnapshotInterval == "" || in.mode != rbd.ImageMirrorModeSnapshot || in.mirror.State != rbd.MirrorImageEnabled {
		return
	}
	conn, err := b.conn(ctx, v.src, false)
	if err != nil {
		return
	}
	_ = do(ctx, func() error {
		return admin.NewFromConn(conn).MirrorSnashotSchedule().Remove(
			admin.NewLevelSpec(v.src.m.Pool, "", v.name), admin.Interval(v.src.m.MirrorSnapshotInterval), admin.NoStartTime)
	})
}
