package cephrbd

/*
#cgo LDFLAGS: -lrbd
#include <errno.h>
#include <stdlib.h>
#include <rbd/librbd.h>
*/
import "C"

import (
	"fmt"
	"strings"
	"syscall"
	"unsafe"

	"github.com/ceph/go-ceph/rados"
	"github.com/ceph/go-ceph/rbd"
)

// mirrorSnapshot is one snapshot of the mirror namespace, as librbd sees
// it. go-ceph v0.28 does not expose rbd_snap_get_mirror_namespace, and
// only it tells whether a non-primary snapshot was copied completely.
type mirrorSnapshot struct {
	id               uint64
	name             string
	nonPrimary       bool
	complete         bool
	lastCopiedObject uint64
}

// mirrorSnapPrefix starts the name of every snapshot of the mirror
// namespace (".mirror.primary.*", ".mirror.non_primary.*").
const mirrorSnapPrefix = ".mirror."

// syncPointPrefix starts the name of the snapshot rbd-mirror uses as the
// sync point of a journal-mode image sync; the copy carries it until the
// sync ends.
const syncPointPrefix = ".rbd-mirror."

// mirrorSnapshots lists the image's mirror-namespace snapshots, oldest
// first.
func mirrorSnapshots(io *rados.IOContext, name string, snaps []rbd.SnapInfo) ([]mirrorSnapshot, error) {
	var out []mirrorSnapshot
	var ids []rbd.SnapInfo
	for _, s := range snaps {
		if strings.HasPrefix(s.Name, mirrorSnapPrefix) {
			ids = append(ids, s)
		}
	}
	if len(ids) == 0 {
		return nil, nil
	}
	cName := C.CString(name)
	defer C.free(unsafe.Pointer(cName))
	var img C.rbd_image_t
	if ret := C.rbd_open_read_only(C.rados_ioctx_t(io.Pointer()), cName, &img, nil); ret < 0 {
		return nil, fmt.Errorf("open %s: %w", name, syscall.Errno(-ret))
	}
	defer C.rbd_close(img)
	for _, s := range ids {
		var ns C.rbd_snap_mirror_namespace_t
		ret := C.rbd_snap_get_mirror_namespace(img, C.uint64_t(s.Id), &ns, C.size_t(unsafe.Sizeof(ns)))
		if ret == -C.ENOENT || ret == -C.EINVAL {
			continue // removed meanwhile, or not of the mirror namespace after all
		}
		if ret < 0 {
			return nil, fmt.Errorf("read mirror snapshot %s of %s: %w", s.Name, name, syscall.Errno(-ret))
		}
		out = append(out, mirrorSnapshot{
			id:               s.Id,
			name:             s.Name,
			nonPrimary:       ns.state == C.RBD_SNAP_MIRROR_STATE_NON_PRIMARY || ns.state == C.RBD_SNAP_MIRROR_STATE_NON_PRIMARY_DEMOTED,
			complete:         bool(ns.complete),
			lastCopiedObject: uint64(ns.last_copied_object_number),
		})
		C.rbd_snap_mirror_namespace_cleanup(&ns, C.size_t(unsafe.Sizeof(ns)))
	}
	return out, nil
}
