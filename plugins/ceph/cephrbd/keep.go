package cephrbd

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/ceph/go-ceph/rados"
	"github.com/ceph/go-ceph/rbd"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// On the day the source storage is lost, the target copy is the last
// one. A stop (and a destroy that may not delete it) keeps it: a
// complete copy is made a standalone writable image on the target alone,
// and what is left on the lost source (mirroring still enabled there) is
// recorded on the target pool (leftover_records.go).

// stopWithoutSource is StopVolume with the source unreachable (srcErr): a
// complete copy is kept, an incomplete one cannot be.
func (b *Backend) stopWithoutSource(ctx context.Context, vol sdk.Volume, v *volConns, srcErr error) (sdk.CleanupReport, error) {
	b.log.Warn("stop without the source", "env", vol.Environment.ID, "image", v.name, "err", srcErr)
	dst, err := inspect(ctx, v.dstIO, v.name, true)
	if err != nil {
		return sdk.CleanupReport{}, fmt.Errorf("read the copy %s on storage %s: %w", v.spec, v.dst.key(), err)
	}
	missing, err := b.keepCopy(ctx, vol, v, dst)
	if err != nil {
		return sdk.CleanupReport{}, err
	}
	if missing != "" {
		return sdk.CleanupReport{}, fmt.Errorf("%v; there is no complete copy to keep: the copy %s on storage %s is not complete (%s); "+
			"stop_and_delete or destroy remove it: %w", srcErr, v.spec, v.dst.key(), missing, sdk.ErrPrecondition)
	}
	l, err := b.recordOnce(ctx, v.dstIO, vol.Environment.ID, v.name, stopLeftover(v, time.Now()))
	if err != nil {
		return sdk.CleanupReport{}, err
	}
	return sdk.CleanupReport{Leftovers: []string{leftoverLine(l)}}, nil
}

// keepCopy makes a complete target copy a standalone writable image
// without the source: rbd-mirror's replayer stopped here, the copy
// force-promoted, its mirroring disabled, its pause and hold lifted,
// then verified (verifyKeptAlone, which fences an rbd-mirror stuck on
// the lost source). missing, when not "", says why the copy cannot be
// kept (none, or incomplete); nothing is changed then.
func (b *Backend) keepCopy(ctx context.Context, vol sdk.Volume, v *volConns, dst imageInfo) (missing string, err error) {
	switch {
	case !dst.exists:
		return "there is no copy on the target", nil
	case dst.mirror.State == rbd.MirrorImageDisabling:
		return "rbd-mirror is deleting it", nil
	case hasSyncPoint(dst.snaps):
		return "rbd-mirror's image sync is still copying it", nil
	case dst.following():
		cs, err := b.copyWithoutSource(ctx, vol, v, dst)
		if err != nil {
			return "", err
		}
		if !cs.done {
			return cs.missing, nil
		}
		if missing, err := b.promoteAlone(ctx, vol, v, dst); missing != "" || err != nil {
			return missing, err
		}
	}
	// Promoted (now or by an earlier call), or already standalone.
	if dst.mirror.State != rbd.MirrorImageDisabled {
		if err := withImage(ctx, v.dstIO, v.name, func(img *rbd.Image) error { return img.MirrorDisable(false) }); err != nil {
			return "", fmt.Errorf("disable mirroring of the promoted copy %s on storage %s: %w", v.spec, v.dst.key(), err)
		}
	}
	if err := setPaused(ctx, v.dstIO, vol.Environment.ID, v.name, false, v.spec); err != nil {
		return "", err
	}
	if _, _, err := holdCopy(ctx, v.dstIO, v.name, false); err != nil {
		return "", err
	}
	if err := b.verifyKeptAlone(ctx, vol, v); err != nil {
		return "", fmt.Errorf("the kept copy %s on storage %s is not a standalone writable image: %w", v.spec, v.dst.key(), err)
	}
	b.log.Info("copy kept without the source", "env", vol.Environment.ID, "image", v.name)
	return "", nil
}

// copyWithoutSource tells whether a following copy holds a complete
// first copy from the target alone. Snapshot mode: a complete
// non-primary mirror snapshot (firstCopy reads only the copy). Journal
// mode: no sync point (checked by the caller) and rbd-mirror replays it,
// as its replayer here says or, from any host, the target site's own
// mirror status ("replaying" only once the image sync is over).
func (b *Backend) copyWithoutSource(ctx context.Context, vol sdk.Volume, v *volConns, dst imageInfo) (copyState, error) {
	cs, err := b.firstCopy(ctx, vol, v, imageInfo{}, dst)
	if err != nil || cs.done || dst.mode == rbd.ImageMirrorModeSnapshot {
		return cs, err
	}
	if ls, ok := localStatus(dst); ok && strings.HasPrefix(ls.Description, "replaying") {
		return copyState{done: true, progress: 100}, nil
	}
	return cs, nil
}

// localStatus is the target site's own status of its copy (the entry
// without a mirror uuid), which the target's rbd-mirror writes.
func localStatus(in imageInfo) (rbd.SiteMirrorImageStatus, bool) {
	if !in.statusOK {
		return rbd.SiteMirrorImageStatus{}, false
	}
	for _, s := range in.status.SiteStatuses {
		if s.MirrorUUID == "" {
			return s, true
		}
	}
	return rbd.SiteMirrorImageStatus{}, false
}

// hasSyncPoint says whether snaps hold a journal-mode sync point: the
// image sync is not over.
func hasSyncPoint(snaps []rbd.SnapInfo) bool {
	for _, s := range snaps {
		if strings.HasPrefix(s.Name, syncPointPrefix) {
			return true
		}
	}
	return false
}

// promoteAlone stops the copy's replayer where this host runs it (each
// question bounded: an rbd-mirror whose remote hangs may not answer),
// then force-promotes the copy; librbd promotes a snapshot-mode copy to
// its last complete mirror snapshot and refuses (EINVAL) without one.
func (b *Backend) promoteAlone(ctx context.Context, vol sdk.Volume, v *volConns, dst imageInfo) (missing string, err error) {
	v.globalID = dst.mirror.GlobalID
	if asoks, err := b.localAsoks(vol.Environment, v.dst); err == nil {
		for _, name := range v.replayerNames() {
			actx, cancel := context.WithTimeout(ctx, asokTimeout)
			_ = tellAll(actx, asoks, "rbd mirror stop "+name)
			cancel()
		}
	}
	err = withImage(ctx, v.dstIO, v.name, func(img *rbd.Image) error { return img.MirrorPromote(true) })
	if isErrno(err, syscall.EINVAL) && dst.mode == rbd.ImageMirrorModeSnapshot {
		return "it holds no complete mirror snapshot", nil
	}
	if err != nil {
		return "", fmt.Errorf("force-promote %s on storage %s: %w", v.spec, v.dst.key(), err)
	}
	b.log.Info("target copy force-promoted", "env", vol.Environment.ID, "image", v.name)
	return "", nil
}

// stopLeftover is what a stop without the source leaves there.
func stopLeftover(v *volConns, at time.Time) sdk.Leftover {
	when := at.UTC().Format(time.RFC3339)
	return sdk.Leftover{
		Kind: "volume",
		Name: fmt.Sprintf("image %s/%s on storage %s", v.src.m.Pool, v.name, v.src.key()),
		Description: fmt.Sprintf("mirroring is still enabled on this source image: storage %s could not be reached when the volume was stopped at %s, "+
			"so its copy %s on storage %s was force-promoted and kept as a standalone writable image without it", v.src.key(), when, v.spec, v.dst.key()),
		Remedy: fmt.Sprintf("once storage %s is back, run there `rbd mirror image disable %s/%s`; nothing replicates into the kept copy meanwhile. "+
			"If the source image was written after %s, it and the kept copy differ (split brain): compare them before deleting or overwriting either",
			v.src.key(), v.src.m.Pool, v.name, when),
	}
}

// copyLeftover is a replicated copy a destroy could not delete, for why.
func copyLeftover(v *volConns, why, state string) sdk.Leftover {
	return sdk.Leftover{
		Kind:        "copy",
		Name:        fmt.Sprintf("image %s on storage %s", v.spec, v.dst.key()),
		Description: fmt.Sprintf("the volume was destroyed, but this copy was kept: %s; it is %s", why, state),
		Remedy: fmt.Sprintf("it may be the last copy of the volume: check the source image %s/%s on storage %s first; "+
			"then delete the copy with `rbd mirror image disable --force %s && rbd snap purge %s && rbd rm %s` on storage %s, or keep it",
			v.src.m.Pool, v.name, v.src.key(), v.spec, v.spec, v.spec, v.dst.key()),
	}
}

// leftoverLine is a leftover as one line of a CleanupReport.
func leftoverLine(l sdk.Leftover) string {
	return l.Name + ": " + l.Description + ". Remedy: " + l.Remedy
}

// recordOnce records l unless a record of the same kind is there
// already (a call done again keeps the first one's time); it returns the
// record kept.
func (b *Backend) recordOnce(ctx context.Context, io *rados.IOContext, envID, image string, l sdk.Leftover) (sdk.Leftover, error) {
	if old, ok, err := readLeftover(ctx, io, envID, image); err != nil {
		return l, err
	} else if ok && old.Kind == l.Kind {
		return old, nil
	}
	return l, recordLeftover(ctx, io, envID, image, l)
}

// readLeftover reads one record; ok false when there is none (or it
// does not decode).
func readLeftover(ctx context.Context, io *rados.IOContext, envID, image string) (l sdk.Leftover, ok bool, err error) {
	key := leftoverKey(envID, image)
	val, err := call(ctx, func() (string, error) { v, _, err := getPoolMeta(io, key); return v, err })
	if err != nil {
		return l, false, fmt.Errorf("read leftover record %s: %w", key, err)
	}
	if val == "" || json.Unmarshal([]byte(val), &l) != nil {
		return sdk.Leftover{}, false, nil
	}
	return l, true, nil
}

// keptByStop says whether a stop without the source kept the image's
// copy (its record is there): the copy is the user's volume, complete,
// though the source may still be mirrored.
func keptByStop(ctx context.Context, io *rados.IOContext, envID, image string) (bool, error) {
	l, ok, err := readLeftover(ctx, io, envID, image)
	return ok && l.Kind == "volume", err
}
