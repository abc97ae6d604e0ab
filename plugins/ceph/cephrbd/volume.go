package cephrbd

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/ceph/go-ceph/rados"
	"github.com/ceph/go-ceph/rbd"

	"github.com/cdmdr/mirror/plugins/sdk"
)

func imageName(vol sdk.Volume) string { return "volume-" + vol.VolumeUUID }

var uuidPattern = regexp.MustCompile(`^[0-9A-Za-z-]{1,64}$`)

// volConns is a volume's two pools, opened as each storage's client.
type volConns struct {
	// ctx is the call's: closing after it ended waits for calls it
	// abandoned (releaseAfter).
	ctx          context.Context
	src, dst     side
	srcIO, dstIO *rados.IOContext
	name         string // volume-{uuid}
	spec         string // pool/volume-{uuid} as rbd-mirror names it on the target
	globalID     string // the source image's mirror global id, once read
}

// replayerNames are the names rbd-mirror may give the image's replayer:
// pool/image once bootstrapped, pool/global-id while it bootstraps (in
// journal mode that includes the whole first copy).
func (v *volConns) replayerNames() []string {
	if v.globalID == "" {
		return []string{v.spec}
	}
	return []string{v.spec, v.dst.m.Pool + "/" + v.globalID}
}

func (v *volConns) close() {
	for _, io := range []*rados.IOContext{v.srcIO, v.dstIO} {
		if io != nil {
			releaseAfter(v.ctx, io.Destroy)
		}
	}
}

// openVol checks the volume's names and opens its two pools, as each
// storage's client. The caller closes them.
func (b *Backend) openVol(ctx context.Context, vol sdk.Volume) (*volConns, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkEnvID(vol.Environment); err != nil {
		return nil, err
	}
	if !uuidPattern.MatchString(vol.VolumeUUID) {
		return nil, fmt.Errorf("volume uuid %q cannot name an image: %w", vol.VolumeUUID, sdk.ErrPrecondition)
	}
	v := &volConns{ctx: ctx, name: imageName(vol)}
	var err error
	if v.src, err = b.side(vol.Environment.Source); err != nil {
		return nil, err
	}
	if v.dst, err = b.side(vol.Environment.Target); err != nil {
		return nil, err
	}
	v.spec = v.dst.m.Pool + "/" + v.name
	if v.srcIO, err = b.ioctx(ctx, v.src, false); err != nil {
		return nil, err
	}
	if v.dstIO, err = b.ioctx(ctx, v.dst, false); err != nil {
		v.close()
		return nil, err
	}
	return v, nil
}

// imageInfo is what one side says about the volume's image.
type imageInfo struct {
	exists   bool
	id       string         // the image id: a re-created image has a new one
	snaps    []rbd.SnapInfo // every snapshot, rbd-mirror's included
	objects  uint64         // how many objects the image spans
	mirror   rbd.MirrorImageInfo
	mode     rbd.ImageMirrorMode
	features uint64
	status   rbd.GlobalMirrorImageStatus
	statusOK bool
}

// inspect opens an image read-only just long enough to read its state.
func inspect(ctx context.Context, io *rados.IOContext, name string, withStatus bool) (imageInfo, error) {
	return call(ctx, func() (imageInfo, error) {
		var in imageInfo
		img, err := rbd.OpenImageReadOnly(io, name, rbd.NoSnapshot)
		if errors.Is(err, rbd.ErrNotFound) {
			return in, nil
		}
		if err != nil {
			return in, err
		}
		defer img.Close()
		in.exists = true
		if in.features, err = img.GetFeatures(); err != nil {
			return in, err
		}
		if in.id, err = img.GetId(); err != nil {
			return in, err
		}
		if in.snaps, err = img.GetSnapshotNames(); err != nil {
			return in, err
		}
		if st, err := img.Stat(); err == nil {
			in.objects = st.Num_objs
		}
		mi, err := img.GetMirrorImageInfo()
		if err != nil {
			return in, err
		}
		in.mirror = *mi
		if mi.State == rbd.MirrorImageEnabled {
			if in.mode, err = img.GetImageMirrorMode(); err != nil {
				return in, err
			}
			if withStatus {
				if st, err := img.GetGlobalMirrorStatus(); err == nil {
					in.status, in.statusOK = st, true
				}
			}
		}
		return in, nil
	})
}

// withImage opens an image read-write, runs f, and closes it.
func withImage(ctx context.Context, io *rados.IOContext, name string, f func(*rbd.Image) error) error {
	return do(ctx, func() error {
		img, err := rbd.OpenImage(io, name, rbd.NoSnapshot)
		if err != nil {
			return err
		}
		defer img.Close()
		return f(img)
	})
}

// remoteStatus is the target site's status of a source image.
func remoteStatus(in imageInfo) (rbd.SiteMirrorImageStatus, bool) {
	if !in.statusOK {
		return rbd.SiteMirrorImageStatus{}, false
	}
	for _, s := range in.status.SiteStatuses {
		if s.MirrorUUID != "" {
			return s, true
		}
	}
	return rbd.SiteMirrorImageStatus{}, false
}

// mirrored says whether the image exists with mirroring enabled.
func (in imageInfo) mirrored() bool { return in.exists && in.mirror.State == rbd.MirrorImageEnabled }

// following says whether the image is a non-primary mirror copy: the
// target copy while rbd-mirror replays into it.
func (in imageInfo) following() bool { return in.mirrored() && !in.mirror.Primary }

// remoteFailed says whether the target site's status of an image says
// its replication failed: an error, or a split brain.
func remoteFailed(rs rbd.SiteMirrorImageStatus) bool {
	return rs.State == rbd.MirrorImageStatusStateError || strings.Contains(rs.Description, splitBrainMark)
}

// replayer asks the rbd-mirror daemons this host runs on the target
// cluster about the volume's replayer under its image name; an error
// when none runs it here (callers then read the cluster's mirror status).
func (b *Backend) replayer(ctx context.Context, vol sdk.Volume, v *volConns) (imageReplayerState, error) {
	asoks, err := b.localAsoks(vol.Environment, v.dst)
	if err != nil {
		return imageReplayerState{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, asokTimeout)
	defer cancel()
	st, _, err := replayerOf(ctx, asoks, v.spec)
	return st, err
}

// remoteReplaying says whether the target site's status of an image says
// an rbd-mirror is up and replays it (the status object, which any
// rbd-mirror writes, lags up to 30 s).
func remoteReplaying(rs rbd.SiteMirrorImageStatus) bool {
	return rs.Up && rs.State == rbd.MirrorImageStatusStateReplaying
}
