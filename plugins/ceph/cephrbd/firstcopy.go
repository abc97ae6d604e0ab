package cephrbd

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"syscall"

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

// firstCopy looks at the target copy (dst, as inspect read it) of a
// volume whose source image is mirrored. A copy already promoted (a stop
// that got that far, or a split brain) is done: there is nothing more to
// wait for. A copy without mirroring is one rbd-mirror is still creating.
func (b *Backend) firstCopy(ctx context.Context, vol sdk.Volume, v *volConns, src, dst imageInfo) (copyState, error) {
	switch {
	case !dst.exists:
		return copyState{progress: 0, missing: "rbd-mirror has not created it yet"}, nil
	case dst.mirror.State != rbd.MirrorImageEnabled:
		return copyState{progress: 0, missing: "rbd-mirror is still creating it"}, nil
	case dst.mirror.Primary:
		return copyState{done: true, progress: 100}, nil
	case dst.mode == rbd.ImageMirrorModeSnapshot:
		return b.snapshotCopy(ctx, v, dst)
	}
	// Journal mode: the copy carries rbd-mirror's sync point until the
	// image sync ends, and the replayer is named after the global image id,
	// not the image, until it replays.
	for _, s := range dst.snaps {
		if strings.HasPrefix(s.Name, syncPointPrefix) {
			return copyState{progress: -1, missing: "rbd-mirror's image sync is still copying it"}, nil
		}
	}
	// A copy seen done stays done under its image id: a restarted
	// rbd-mirror bootstraps it again (without an image sync, replaying
	// from the commit position) and names its replayer after the global
	// id meanwhile; that is no first copy starting over.
	if _, ok := b.copied.Load(dst.id); ok {
		return copyState{done: true, progress: 100}, nil
	}
	if _, err := b.replayer(ctx, vol, v); err == nil {
		b.copied.Store(dst.id, true)
		return copyState{done: true, progress: 100}, nil
	}
	// None of our rbd-mirror daemons runs it (yet): the cluster's mirror
	// status, which any rbd-mirror writes but lags up to 30 s, says
	// "replaying" only once the image sync is over.
	if rs, ok := remoteStatus(src); ok && remoteReplaying(rs) {
		b.copied.Store(dst.id, true)
		return copyState{done: true, progress: 100}, nil
	}
	return copyState{progress: -1, missing: "rbd-mirror has not finished bootstrapping it"}, nil
}

// snapshotCopy: in snapshot mode the first copy is done once a
// non-primary mirror snapshot is complete. A copy seen done stays done
// (until rbd-mirror re-creates it, under a new image id), which spares
// the status poll a second open of the image.
func (b *Backend) snapshotCopy(ctx context.Context, v *volConns, dst imageInfo) (copyState, error) {
	if _, ok := b.copied.Load(dst.id); ok {
		return copyState{done: true, progress: 100}, nil
	}
	ms, err := call(ctx, func() ([]mirrorSnapshot, error) { return mirrorSnapshots(v.dstIO, v.name, dst.snaps) })
	if errors.Is(err, syscall.ENOENT) {
		return copyState{progress: 0, missing: "rbd-mirror is re-creating it"}, nil
	}
	if err != nil {
		return copyState{}, fmt.Errorf("read the copy %s on storage %s: %w", v.spec, v.dst.key(), err)
	}
	cs := copyState{progress: 0, missing: "rbd-mirror has not begun the first mirror snapshot"}
	for _, s := range ms {
		if !s.nonPrimary {
			continue
		}
		if s.complete {
			b.copied.Store(dst.id, true)
			return copyState{done: true, progress: 100}, nil
		}
		if dst.objects > 0 {
			cs.progress = int(min(s.lastCopiedObject*100/dst.objects, 99))
		}
		cs.missing = fmt.Sprintf("the first mirror snapshot is %d%% copied", cs.progress)
	}
	return cs, nil
}
