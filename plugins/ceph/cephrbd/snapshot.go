package cephrbd

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"syscall"

	"github.com/ceph/go-ceph/rados"
	"github.com/ceph/go-ceph/rbd"

	"github.com/cdmdr/mirror/plugins/sdk"
)

func snapName(s sdk.Snapshot) string { return "snapshot-" + s.SnapshotUUID }

func hasSnapshot(img *rbd.Image, name string) (bool, error) {
	snaps, err := img.GetSnapshotNames()
	if err != nil {
		return false, err
	}
	for _, s := range snaps {
		if s.Name == name {
			return true, nil
		}
	}
	return false, nil
}

func checkSnap(s sdk.Snapshot) error {
	if !uuidPattern.MatchString(s.SnapshotUUID) {
		return fmt.Errorf("snapshot uuid %q cannot name a snapshot: %w", s.SnapshotUUID, sdk.ErrPrecondition)
	}
	return nil
}

// openSnap opens the volume of snapshot s and names the snapshot; the
// caller closes the connections.
func (b *Backend) openSnap(ctx context.Context, s sdk.Snapshot) (*volConns, string, error) {
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	if err := checkSnap(s); err != nil {
		return nil, "", err
	}
	v, err := b.openVol(ctx, s.Volume)
	if err != nil {
		return nil, "", err
	}
	return v, snapName(s), nil
}

// AddSnapshot implements sdk.Backend: protect the snapshot on the primary.
func (b *Backend) AddSnapshot(ctx context.Context, s sdk.Snapshot) (err error) {
	defer func() { err = explainDenied(err, s.Volume.Environment, false) }()
	v, name, err := b.openSnap(ctx, s)
	if err != nil {
		return err
	}
	defer v.close()
	if err := v.protectOnSource(ctx, name); err != nil {
		return err
	}
	// A ship environment's loop ships it (ship_volume.go).
	b.wakeShip(s.Volume.Environment.ID)
	// A paused copy must not change, so no mirror snapshot now: the
	// recovery point reaches the copy with the one ResumeVolume takes (in
	// journal mode, with the journal's replay, which the pause holds back
	// alike).
	paused, err := isPaused(ctx, v.dstIO, s.Volume.Environment.ID, v.name)
	if err != nil {
		return fmt.Errorf("read whether %s is paused: %w", v.spec, err)
	}
	if paused {
		return nil
	}
	return v.sendToCopy(ctx, name)
}

// protectOnSource protects the snapshot on the source image.
func (v *volConns) protectOnSource(ctx context.Context, name string) error {
	err := withImage(ctx, v.srcIO, v.name, func(img *rbd.Image) error {
		ok, err := hasSnapshot(img, name)
		if err != nil {
			return err
		}
		if !ok {
			return sdk.ErrNotFound
		}
		sn := img.GetSnapshot(name)
		if p, err := sn.IsProtected(); err != nil || p {
			return err
		}
		return sn.Protect()
	})
	if errors.Is(err, rbd.ErrNotFound) || errors.Is(err, sdk.ErrNotFound) {
		return fmt.Errorf("snapshot %s of %s/%s does not exist on storage %s: %w", name, v.src.m.Pool, v.name, v.src.key(), sdk.ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("protect snapshot %s of %s/%s on storage %s: %w", name, v.src.m.Pool, v.name, v.src.key(), err)
	}
	return nil
}

// sendToCopy takes a mirror snapshot in snapshot mode, where the copy
// learns of snapshots and their protection only at the next mirror
// snapshot: the recovery point does not wait for the schedule. Not when
// the copy has the snapshot protected already.
func (v *volConns) sendToCopy(ctx context.Context, name string) error {
	in, err := inspect(ctx, v.srcIO, v.name, false)
	if err != nil || !in.mirrored() || in.mode != rbd.ImageMirrorModeSnapshot {
		return nil
	}
	if exists, prot, err := snapOn(ctx, v.dstIO, v.name, name); err == nil && exists && prot {
		return nil
	}
	err = withImage(ctx, v.srcIO, v.name, func(img *rbd.Image) error { _, err := img.CreateMirrorSnapshot(); return err })
	if err != nil {
		return fmt.Errorf("take a mirror snapshot of %s/%s on storage %s so the copy gets %s: %w", v.src.m.Pool, v.name, v.src.key(), name, err)
	}
	return nil
}

// snapOn says whether the image in io has the snapshot, and whether it
// is protected there; a missing image has none.
func snapOn(ctx context.Context, io *rados.IOContext, image, name string) (exists, prot bool, err error) {
	err = do(ctx, func() error {
		img, err := rbd.OpenImageReadOnly(io, image, rbd.NoSnapshot)
		if errors.Is(err, rbd.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		defer img.Close()
		if exists, err = hasSnapshot(img, name); err != nil || !exists {
			return err
		}
		prot, err = img.GetSnapshot(name).IsProtected()
		return err
	})
	return exists, prot, err
}

// copiedOn says whether the copy in io holds the data of its snapshot
// name completely. In snapshot mode rbd-mirror creates a sync's user
// snapshots on the copy before it copies their data, and marks the
// non-primary mirror snapshot it creates after them complete once the
// data is there: the snapshot is copied once a complete one follows it.
// A copy without mirror snapshots (journal mode, which replays a snapshot
// after the writes before it; or a copy a stop made standalone) holds
// what it shows.
func copiedOn(ctx context.Context, io *rados.IOContext, image, name string) (bool, error) {
	copied := false
	err := do(ctx, func() error {
		img, err := rbd.OpenImageReadOnly(io, image, rbd.NoSnapshot)
		if err != nil {
			return err
		}
		snaps, err := img.GetSnapshotNames()
		img.Close()
		if err != nil {
			return err
		}
		i := slices.IndexFunc(snaps, func(s rbd.SnapInfo) bool { return s.Name == name })
		if i < 0 {
			return nil
		}
		ms, err := mirrorSnapshots(io, image, snaps)
		if err != nil {
			return err
		}
		copied = len(ms) == 0 || slices.ContainsFunc(ms, func(m mirrorSnapshot) bool {
			return m.nonPrimary && m.complete && m.id > snaps[i].Id
		})
		return nil
	})
	return copied, err
}

// SnapshotStatus implements sdk.Backend: ready once the snapshot is on
// the target copy, protected, so it can be cloned there, with its data
// copied completely.
func (b *Backend) SnapshotStatus(ctx context.Context, s sdk.Snapshot) (sdk.SnapshotReplication, error) {
	var r sdk.SnapshotReplication
	v, name, err := b.openSnap(ctx, s)
	if err != nil {
		return r, err
	}
	defer v.close()
	if ship, err := b.shipEnv(ctx, s.Volume, v); err != nil || ship {
		if err != nil {
			return r, err
		}
		return b.shipSnapshotStatus(ctx, v, name)
	}
	absent, dExists, dProt, err := snapSides(ctx, v, name)
	if err != nil {
		return r, err
	}
	if absent != nil {
		return *absent, nil
	}
	copied := false
	if dExists && dProt {
		if copied, err = copiedOn(ctx, v.dstIO, v.name, name); err != nil {
			return r, fmt.Errorf("read whether snapshot %s of %s on storage %s is copied: %w", name, v.spec, v.dst.key(), err)
		}
	}
	switch {
	case copied:
		r.State = sdk.SnapshotReady
		r.Description = "protected on the target copy; it can be cloned there"
	case dExists && dProt:
		r.State = sdk.SnapshotPending
		r.Description = "protected on the target copy, its data not copied completely yet"
	case dExists:
		r.State = sdk.SnapshotPending
		r.Description = "on the target copy, protection not replayed yet"
	default:
		r.State = sdk.SnapshotPending
		r.Description = "protected on the source, not yet on the target copy"
	}
	return r, nil
}

// RemoveSnapshot implements sdk.Backend: unprotect and remove on the
// source; rbd-mirror removes it from the copy.
func (b *Backend) RemoveSnapshot(ctx context.Context, s sdk.Snapshot) (err error) {
	defer func() { err = explainDenied(err, s.Volume.Environment, false) }()
	v, name, err := b.openSnap(ctx, s)
	if err != nil {
		return err
	}
	defer v.close()
	err = withImage(ctx, v.srcIO, v.name, func(img *rbd.Image) error {
		ok, err := hasSnapshot(img, name)
		if err != nil || !ok {
			return err
		}
		sn := img.GetSnapshot(name)
		if p, err := sn.IsProtected(); err != nil {
			return err
		} else if p {
			if err := sn.Unprotect(); err != nil {
				if isErrno(err, syscall.EBUSY) || isErrno(err, syscall.EEXIST) {
					return fmt.Errorf("%w: %s", sdk.ErrPrecondition, clonesOf(img, name))
				}
				return err
			}
		}
		return sn.Remove()
	})
	if err != nil && !errors.Is(err, rbd.ErrNotFound) {
		return fmt.Errorf("remove snapshot %s of %s/%s on storage %s: %w", name, v.src.m.Pool, v.name, v.src.key(), err)
	}
	// A ship environment's target copy has it as a snapshot of its own.
	if ship, err := b.shipEnv(ctx, s.Volume, v); err != nil || ship {
		if err != nil {
			return err
		}
		return b.removeShipSnapshot(ctx, s.Volume, v, name)
	}
	return nil
}

func clonesOf(img *rbd.Image, snap string) string {
	if err := img.SetSnapshot(snap); err == nil {
		defer img.SetSnapshot(rbd.NoSnapshot)
		if pools, images, err := img.ListChildren(); err == nil && len(images) > 0 {
			var names []string
			for i := range images {
				names = append(names, pools[i]+"/"+images[i])
			}
			return "the snapshot has clones: " + strings.Join(names, ", ") + "; flatten or delete them first"
		}
	}
	return "the snapshot is in use (clones); flatten or delete them first"
}

// snapSides reads a snapshot on the source, then on the target copy.
// absent is the status to report when the source lacks it or has not
// protected it yet (the target is not read then).
func snapSides(ctx context.Context, v *volConns, name string) (absent *sdk.SnapshotReplication, dExists, dProt bool, err error) {
	sExists, sProt, err := snapOn(ctx, v.srcIO, v.name, name)
	if err != nil {
		return nil, false, false, fmt.Errorf("read snapshot %s of %s/%s on storage %s: %w", name, v.src.m.Pool, v.name, v.src.key(), err)
	}
	if !sExists || !sProt {
		r := sdk.SnapshotReplication{State: sdk.SnapshotAbsent}
		if sExists {
			r.Description = "the snapshot exists on the source but is not protected yet"
		}
		return &r, false, false, nil
	}
	dExists, dProt, err = snapOn(ctx, v.dstIO, v.name, name)
	if err != nil {
		return nil, false, false, fmt.Errorf("read snapshot %s of %s on storage %s: %w", name, v.spec, v.dst.key(), err)
	}
	return nil, dExists, dProt, nil
}
