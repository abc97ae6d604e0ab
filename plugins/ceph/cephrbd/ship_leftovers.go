package cephrbd

import (
	"context"
	"fmt"
	"strings"

	"github.com/ceph/go-ceph/rbd"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// shipImages lists, for FindLeftovers, what the ship path left in the
// pool that nothing accounts for: target images with the ship mark that
// no record of any environment ships and no volume of the query has as
// its target, and ship points (snapshots mirror.ship.*) on images no
// volume of the query has as its source (ShipForget's remedy).
func (p poolScan) shipImages(ctx context.Context) ([]sdk.Leftover, error) {
	recorded, err := call(ctx, func() (map[string]string, error) { return listPoolMeta(p.io, shipRecordPrefix("")) })
	if err != nil {
		return nil, fmt.Errorf("read the shipped images: %w", err)
	}
	shipped := map[string]bool{}
	for k := range recorded {
		if _, image, ok := lastDot(strings.TrimPrefix(k, shipRecordPrefix(""))); ok {
			shipped[image] = true
		}
	}
	names, err := call(ctx, func() ([]string, error) { return rbd.GetImageNames(p.io) })
	if err != nil {
		return nil, fmt.Errorf("list the images: %w", err)
	}
	type found struct {
		origin shipOrigin
		marked bool
		points []string
	}
	var out []sdk.Leftover
	for _, name := range names {
		f, err := call(ctx, func() (found, error) {
			img, err := rbd.OpenImageReadOnly(p.io, name, rbd.NoSnapshot)
			if err != nil {
				return found{}, err
			}
			defer img.Close()
			var f found
			if f.origin, f.marked, err = readMark(img); err != nil {
				return f, err
			}
			snaps, err := img.GetSnapshotNames()
			for _, s := range snaps {
				if strings.HasPrefix(s.Name, shipSnapPrefix) {
					f.points = append(f.points, s.Name)
				}
			}
			return f, err
		})
		if err != nil {
			continue // gone since the list, or not an image to read: nothing of ours
		}
		spec := p.sd.m.Pool + "/" + name
		if f.marked && !shipped[name] && !p.h.targets[name] {
			out = append(out, sdk.Leftover{
				Kind:        "copy",
				Name:        fmt.Sprintf("image %s on storage %s", spec, p.sd.key()),
				Description: fmt.Sprintf("a ship copy of %s that no environment ships any more (no record in the pool's metadata)", f.origin),
				Remedy:      remedy("no mirrord ships "+name+" into storage "+p.sd.key()+" any more, and no one needs this copy.", "rbd snap purge "+spec, "rbd rm "+spec),
			})
			continue
		}
		if !f.marked && len(f.points) > 0 && !p.h.sources[name] {
			var cmds []string
			for _, s := range f.points {
				cmds = append(cmds, "rbd snap rm "+shellQuote(spec+"@"+s))
			}
			out = append(out, sdk.Leftover{
				Kind:        "snapshot",
				Name:        fmt.Sprintf("ship points of image %s on storage %s", spec, p.sd.key()),
				Description: fmt.Sprintf("%d snapshot(s) %s* the ship path took on this source image, which no volume of the daemon ships any more", len(f.points), shipSnapPrefix),
				Remedy:      remedy("no mirrord ships "+name+" from storage "+p.sd.key()+" any more.", cmds...),
			})
		}
	}
	return out, nil
}
