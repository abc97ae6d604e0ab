package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ceph/go-ceph/rados"
	"github.com/ceph/go-ceph/rbd"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// copyState is how far the target copy is from holding a complete first
// copy: the point from which a stop can keep it as a usable image.
type copyState struct {
	done     bool
	progress int    // 0-100; -1 when Ceph does not say
	missing  string // what is still missing, when not done
}

// firstCopy looks at the target copy of a volume whose source image is
// mirrored. A copy already promoted (a stop that got that far, or a split
// brain) is done: there is nothing more to wait for. A copy without
// mirroring is one rbd-mirror is still creating.
func (b *Backend) firstCopy(ctx context.Context, vol sdk.Volume, v *volConns, dst imageInfo) (copyState, error) {
	if !dst.exists {
		return copyState{progress: 0, missing: "rbd-mirror has not created it yet"}, nil
	}
	if dst.mirror.State != rbd.MirrorImageEnabled {
		return copyState{progress: 0, missing: "rbd-mirror is still creating it"}, nil
	}
	if dst.mirror.Primary {
		return copyState{done: true, progress: 100}, nil
	}
	cs, err := call(ctx, func() (copyState, error) { return inspectCopy(v.dstIO, v.name, dst.mode) })
	if errors.Is(err, rbd.ErrNotFound) {
		return copyState{progress: 0, missing: "rbd-mirror is re-creating it"}, nil
	}
	if err != nil {
		return cs, fmt.Errorf("read the copy %s on storage %s: %w", v.spec, v.dst.key(), err)
	}
	if cs.done && dst.mode == rbd.ImageMirrorModeJournal {
		// The image sync is over once rbd-mirror replays the journal; until
		// then its replayer is named after the global image id, not the
		// image, and the copy may not carry the sync point yet.
		sctx, cancel := context.WithTimeout(ctx, asokTimeout)
		_, _, err := replayerOf(sctx, b.clusterAsoks(vol.Environment.ID), v.spec)
		cancel()
		if err != nil {
			return copyState{progress: -1, missing: "rbd-mirror has not finished bootstrapping it"}, nil
		}
	}
	return cs, nil
}

// inspectCopy reads the copy's snapshots: in snapshot mode a complete
// non-primary mirror snapshot, in journal mode no sync point left.
func inspectCopy(io *rados.IOContext, name string, mode rbd.ImageMirrorMode) (copyState, error) {
	img, err := rbd.OpenImageReadOnly(io, name, rbd.NoSnapshot)
	if err != nil {
		return copyState{}, err
	}
	defer img.Close()
	snaps, err := img.GetSnapshotNames()
	if err != nil {
		return copyState{}, err
	}
	if mode == rbd.ImageMirrorModeJournal {
		for _, s := range snaps {
			if strings.HasPrefix(s.Name, syncPointPrefix) {
				return copyState{progress: -1, missing: "rbd-mirror's image sync is still copying it"}, nil
			}
		}
		return copyState{done: true, progress: 100}, nil
	}
	ms, err := mirrorSnapshots(io, name, snaps)
	if err != nil {
		return copyState{}, err
	}
	cs := copyState{progress: 0, missing: "rbd-mirror has not begun the first mirror snapshot"}
	for _, s := range ms {
		if !s.nonPrimary {
			continue
		}
		if s.complete {
			return copyState{done: true, progress: 100}, nil
		}
		if info, err := img.Stat(); err == nil && info.Num_objs > 0 {
			cs.progress = int(min(s.lastCopiedObject*100/info.Num_objs, 99))
		}
		cs.missing = fmt.Sprintf("the first mirror snapshot is %d%% copied", cs.progress)
	}
	return cs, nil
}
