package cephrbd

import (
	"context"
	"errors"
	"fmt"

	"github.com/ceph/go-ceph/rados"
	"github.com/ceph/go-ceph/rbd"
)

// StartVolume marks the source image it mirror-enables with the
// environment it replicates for, in the image's metadata. rbd-mirror
// copies image metadata to the target, so every copy says which
// environment asked for it: one that names another environment (or none)
// is a replica nobody in this environment asked for (unintended.go).

// markMetaKey is the image metadata key of the mark, as `rbd image-meta`
// names it.
const markMetaKey = "mirror.environment"

// setImageMark marks an open source image.
func setImageMark(img *rbd.Image, envID string) error {
	if v, err := img.GetMetadata(markMetaKey); err == nil && v == envID {
		return nil
	}
	if err := img.SetMetadata(markMetaKey, envID); err != nil {
		return fmt.Errorf("set image metadata %s: %w", markMetaKey, err)
	}
	return nil
}

// markImage marks a source image by name.
func markImage(ctx context.Context, io *rados.IOContext, name, envID string) error {
	return withImage(ctx, io, name, func(img *rbd.Image) error { return setImageMark(img, envID) })
}

// imageMark reads an image's mark without opening the image: librbd
// keeps image metadata in the omap of its header object, under
// "metadata_" and the key. ok is false without a mark.
func imageMark(io *rados.IOContext, imageID string) (envID string, ok bool, err error) {
	key := "metadata_" + markMetaKey
	vals, err := io.GetOmapValues("rbd_header."+imageID, "", key, 1)
	if errors.Is(err, rados.ErrNotFound) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	v, ok := vals[key]
	if !ok {
		return "", false, nil
	}
	// cls_rbd's metadata_set stores the value's bytes as they are.
	return string(v), true, nil
}
