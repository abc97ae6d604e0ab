package nfsfile

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// Cinder's NFS driver names a snapshot's file volume-{uuid}.{snapshot
// uuid}: its presence on the source says the snapshot exists. The
// recovery point is the target copy as of the first sync that begins
// after AddSnapshot, copied (reflinked where the file system can) to
// volume-{uuid}.snapshot-{snapshot uuid} in the target directory.
func sourceSnapshotName(snap sdk.Snapshot) string {
	return volumeName(snap.Volume.VolumeUUID) + "." + snap.SnapshotUUID
}

// AddSnapshot implements sdk.Backend.
func (b *Backend) AddSnapshot(ctx context.Context, snap sdk.Snapshot) error {
	vol := snap.Volume
	what := fmt.Sprintf("snapshot %s of %s", snap.SnapshotUUID, volumeName(vol.VolumeUUID))
	if err := ctx.Err(); err != nil {
		return err
	}
	tgt, err := parseTarget(vol.Environment.Target)
	if err != nil {
		return fmt.Errorf("add %s: %w", what, err)
	}
	var rec replication
	found, err := readJSON(replicationPath(tgt.dir, vol.VolumeUUID), &rec)
	if err != nil {
		return fmt.Errorf("add %s: %w", what, err)
	}
	if !found {
		return fmt.Errorf("add %s: the volume is not replicated into %s: %w", what, tgt.dir, sdk.ErrPrecondition)
	}
	if ok, _ := exists(pointRecordPath(tgt.dir, vol.VolumeUUID, snap.SnapshotUUID)); ok {
		return nil
	}
	if err := b.probeSource(ctx, vol, sourceSnapshotName(snap)); err != nil {
		return fmt.Errorf("add %s: %w", what, err)
	}
	p := point{SnapshotID: snap.SnapshotID, Asked: b.now().UTC()}
	if err := writeJSON(pointRecordPath(tgt.dir, vol.VolumeUUID, snap.SnapshotUUID), p); err != nil {
		return fmt.Errorf("add %s: %w", what, err)
	}
	if r := b.runnerOf(vol.VolumeUUID); r != nil {
		r.poke() // the next sync makes the point: no need to wait an interval
	}
	return nil
}

// RemoveSnapshot implements sdk.Backend: the recovery point and its
// record go. The source's snapshot is Cinder's, not the plugin's.
func (b *Backend) RemoveSnapshot(ctx context.Context, snap sdk.Snapshot) error {
	vol := snap.Volume
	if err := ctx.Err(); err != nil {
		return err
	}
	tgt, err := parseTarget(vol.Environment.Target)
	if err != nil {
		return fmt.Errorf("remove snapshot %s: %w", snap.SnapshotUUID, err)
	}
	if err := removeDurably(filepath.Join(tgt.dir, pointName(vol.VolumeUUID, snap.SnapshotUUID))); err != nil {
		return fmt.Errorf("remove snapshot %s: %w", snap.SnapshotUUID, err)
	}
	if err := removeDurably(pointRecordPath(tgt.dir, vol.VolumeUUID, snap.SnapshotUUID)); err != nil {
		return fmt.Errorf("remove snapshot %s: %w", snap.SnapshotUUID, err)
	}
	return nil
}

// SnapshotStatus implements sdk.Backend: pending until the recovery
// point is complete on the target, then ready.
func (b *Backend) SnapshotStatus(ctx context.Context, snap sdk.Snapshot) (sdk.SnapshotReplication, error) {
	vol := snap.Volume
	if err := ctx.Err(); err != nil {
		return sdk.SnapshotReplication{}, err
	}
	tgt, err := parseTarget(vol.Environment.Target)
	if err != nil {
		return sdk.SnapshotReplication{}, fmt.Errorf("status of snapshot %s: %w", snap.SnapshotUUID, err)
	}
	var p point
	found, err := readJSON(pointRecordPath(tgt.dir, vol.VolumeUUID, snap.SnapshotUUID), &p)
	if err != nil {
		return sdk.SnapshotReplication{}, fmt.Errorf("status of snapshot %s: %w", snap.SnapshotUUID, err)
	}
	switch {
	case !found:
		return sdk.SnapshotReplication{State: sdk.SnapshotAbsent}, nil
	case p.Made.IsZero():
		return sdk.SnapshotReplication{State: sdk.SnapshotPending, Description: "waiting for the next complete sync of the volume"}, nil
	}
	return sdk.SnapshotReplication{State: sdk.SnapshotReady,
		Description: fmt.Sprintf("recovery point %s, the volume as synced at %s", filepath.Join(tgt.dir, pointName(vol.VolumeUUID, snap.SnapshotUUID)), p.Of.Format("2006-01-02T15:04:05Z07:00"))}, nil
}
