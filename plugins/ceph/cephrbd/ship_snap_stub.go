package cephrbd

// A stand-in for the user snapshot shipping of branch h-ship-snap, with
// its signatures, until that branch is merged: then this file goes.

import (
	"context"
	"fmt"
	"strings"

	"github.com/ceph/go-ceph/rbd"
)

// ShipUserSnapshots ships the source's snapshots named prefix* that the
// target lacks, oldest first, each a target snapshot of the same name.
// This stand-in writes each such snapshot whole into the target's head
// and snapshots it; the next ShipStep copies again what that changed
// (its torn-step refresh). Nothing while the target does not exist yet.
func ShipUserSnapshots(ctx context.Context, src, dst ShipSide, image, prefix string) ([]string, error) {
	tImg, err := rbd.OpenImage(dst.IO, image, rbd.NoSnapshot)
	if shipNotFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("open the target %s: %w", imageSpec(dst, image), err)
	}
	defer tImg.Close()
	if _, ok, err := readMark(tImg); err != nil || !ok {
		return nil, notOurs(dst, image, err)
	}
	sImg, err := rbd.OpenImageReadOnly(src.IO, image, rbd.NoSnapshot)
	if err != nil {
		return nil, fmt.Errorf("open the source %s: %w", imageSpec(src, image), err)
	}
	sSnaps, err := sImg.GetSnapshotNames()
	sImg.Close()
	if err != nil {
		return nil, err
	}
	tSnaps, err := tImg.GetSnapshotNames()
	if err != nil {
		return nil, err
	}
	have := map[string]bool{}
	for _, s := range tSnaps {
		have[s.Name] = true
	}
	var shipped []string
	locked := false
	for _, s := range sSnaps { // by id: oldest first
		if !strings.HasPrefix(s.Name, prefix) || have[s.Name] {
			continue
		}
		if !locked {
			if err := lockShipTarget(tImg, imageSpec(dst, image)); err != nil {
				return shipped, err
			}
			locked = true
		}
		at, err := rbd.OpenImageReadOnly(src.IO, image, s.Name)
		if err != nil {
			return shipped, err
		}
		size, err := at.GetSize()
		if err == nil {
			if cur, _ := tImg.GetSize(); cur != size {
				err = tImg.Resize(size)
			}
		}
		if err == nil {
			c := &shipCopy{ctx: ctx, from: at, to: tImg, size: size}
			if err = c.zeroTarget(); err == nil {
				err = c.run("")
			}
		}
		if err == nil {
			err = tImg.Flush()
		}
		at.Close()
		if err == nil {
			_, err = tImg.CreateSnapshot(s.Name)
		}
		if err != nil {
			return shipped, fmt.Errorf("ship snapshot %s of %s: %w", s.Name, imageSpec(src, image), err)
		}
		shipped = append(shipped, s.Name)
	}
	return shipped, nil
}

// ShipRemoveUserSnapshot removes a snapshot a ShipUserSnapshots made on
// the target; one already gone is fine.
func ShipRemoveUserSnapshot(ctx context.Context, dst ShipSide, image, name string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	img, err := rbd.OpenImage(dst.IO, image, rbd.NoSnapshot)
	if shipNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	defer img.Close()
	sn := img.GetSnapshot(name)
	if p, _ := sn.IsProtected(); p {
		if err := sn.Unprotect(); err != nil {
			return err
		}
	}
	return removeSnap(img, name)
}
