package cephrbd

import (
	"context"
	"fmt"
	"strings"

	"github.com/ceph/go-ceph/rados"
	"github.com/ceph/go-ceph/rbd"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// A ship environment's status and teardown: no rbd-mirror, no peer, no
// mirroring to look at; its ship loop and its records instead.

// shipEnvStatus is EnvironmentStatus of a prepared ship environment
// whose pools answered the preflight: ready while its loop runs here.
func (b *Backend) shipEnvStatus(ctx context.Context, env sdk.Environment, e *envConns) (sdk.EnvironmentHealth, error) {
	unintended, err := b.shipUnintended(ctx, env.ID, e)
	if err != nil {
		return sdk.EnvironmentHealth{}, err
	}
	if b.shipLoopOf(env.ID) == nil {
		return sdk.EnvironmentHealth{Description: fmt.Sprintf("the ship loop of environment %s does not run on this host (PrepareEnvironment starts it)", env.ID),
			Unintended: unintended}, nil
	}
	return sdk.EnvironmentHealth{Ready: true, Description: "served by the ship path: the plugin ships each volume by snapshot diffs, ship loop running",
		Unintended: unintended}, nil
}

// shipUnintended lists the ship copies in the target pool made from this
// environment's source pool that no environment's record accounts for.
func (b *Backend) shipUnintended(ctx context.Context, envID string, e *envConns) ([]string, error) {
	recorded, err := call(ctx, func() (map[string]string, error) { return listPoolMeta(e.dstIO, shipRecordPrefix("")) })
	if err != nil {
		return nil, fmt.Errorf("read the shipped images of pool %s on storage %s: %w", e.dst.m.Pool, e.dst.key(), err)
	}
	held := map[string]bool{}
	for k := range recorded {
		if _, image, ok := lastDot(strings.TrimPrefix(k, shipRecordPrefix(""))); ok {
			held[image] = true
		}
	}
	fsid, err := e.srcConn.GetFSID()
	if err != nil {
		return nil, fmt.Errorf("fsid of storage %s: %w", e.src.key(), err)
	}
	fsid = strings.Trim(fsid, "\x00")
	names, err := call(ctx, func() ([]string, error) { return rbd.GetImageNames(e.dstIO) })
	if err != nil {
		return nil, fmt.Errorf("list the images of pool %s on storage %s: %w", e.dst.m.Pool, e.dst.key(), err)
	}
	var out []string
	scanned := 0
	for _, name := range names {
		if held[name] {
			continue
		}
		if scanned++; scanned > unintendedScanLimit || len(out) >= unintendedReportLimit {
			out = append(out, fmt.Sprintf("only part of pool %s on storage %s was looked at (`mirrord leftovers` lists them all)", e.dst.m.Pool, e.dst.key()))
			break
		}
		origin, err := call(ctx, func() (shipOrigin, error) {
			o, _, err := shipMarkOf(e.dstIO, name)
			return o, err
		})
		if err != nil || origin.FSID != fsid || origin.Pool != e.src.m.Pool {
			continue
		}
		spec := e.dst.m.Pool + "/" + name
		out = append(out, fmt.Sprintf("image %s on storage %s: a ship copy of %s/%s on storage %s that no volume of environment %s (nor another) ships. %s",
			spec, e.dst.key(), e.src.m.Pool, name, e.src.key(), envID,
			remedy("no volume of any environment replicates "+name+" from storage "+e.src.key()+" any more.", "rbd snap purge "+spec, "rbd rm "+spec)))
	}
	return out, nil
}

// shipMarkOf reads an image's ship mark by name, opening it read-only;
// ok is false without one.
func shipMarkOf(io *rados.IOContext, name string) (shipOrigin, bool, error) {
	img, err := rbd.OpenImageReadOnly(io, name, rbd.NoSnapshot)
	if shipNotFound(err) {
		return shipOrigin{}, false, nil
	}
	if err != nil {
		return shipOrigin{}, false, err
	}
	defer img.Close()
	return readMark(img)
}

// teardownShip tears a ship environment down: refused while it ships
// volumes (unless force); then its loop stopped, its records removed,
// and, with force, the source points of the volumes it still shipped.
func (b *Backend) teardownShip(ctx context.Context, env sdk.Environment, e *envConns, force bool) (sdk.CleanupReport, error) {
	var rep sdk.CleanupReport
	images, err := shipRecords(ctx, e.dstIO, env.ID)
	if err != nil {
		return rep, err
	}
	if len(images) > 0 && !force {
		var names []string
		for _, n := range images {
			names = append(names, fmt.Sprintf("%s/%s on storage %s", e.dst.m.Pool, n, e.dst.key()))
		}
		return rep, refuseWhileMirrored(env, names)
	}
	if err := b.stopShipLoop(ctx, env.ID); err != nil {
		return rep, err
	}
	if len(images) > 0 && e.srcIO != nil {
		src, err1 := b.shipSide(ctx, e.src, e.srcIO)
		dst, err2 := b.shipSide(ctx, e.dst, e.dstIO)
		for _, n := range images {
			err := err1
			if err == nil {
				err = err2
			}
			if err == nil {
				_, err = ShipForget(ctx, src, dst, n)
			}
			if err != nil {
				rep.Leftovers = append(rep.Leftovers, fmt.Sprintf("ship points of %s/%s on storage %s: %v", e.src.m.Pool, n, e.src.key(), err))
			}
		}
	}
	for _, n := range images {
		rep.Leftovers = append(rep.Leftovers, fmt.Sprintf("image %s/%s on storage %s: the ship copy of a volume still shipped when environment %s was torn down by force",
			e.dst.m.Pool, n, e.dst.key(), env.ID))
		if err := setShipRecord(ctx, e.dstIO, env.ID, n, nil); err != nil {
			return rep, err
		}
	}
	if err := removeEnvRecords(ctx, e, env.ID); err != nil {
		return rep, err
	}
	return rep, b.removeEnvFiles(env.ID, e)
}
