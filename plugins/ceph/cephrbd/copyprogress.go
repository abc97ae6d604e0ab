package cephrbd

/*
#cgo LDFLAGS: -lrados
#include <stdlib.h>
#include <rados/librados.h>
*/
import "C"

import (
	"context"
	"encoding/binary"
	"fmt"
	"syscall"
	"unsafe"

	"github.com/ceph/go-ceph/rados"
	"github.com/ceph/go-ceph/rbd"
)

// Ceph 16's rbd-mirror records a snapshot-mode copy's progress as the
// number of objects copied (objects 0..n-1), in the non-primary mirror
// snapshot's last_copied_object_number, but resumes an interrupted copy
// after object n, as if n were the last copied: object n is never
// copied, and the copy lacks 4 MiB of data for good, with the snapshot
// marked complete. (Journal mode records n-1.) Before it starts an
// rbd-mirror, after the earlier one is blocklisted, the plugin sets every
// incomplete copy's progress back by one object, so the resumed copy
// starts at object n; copying an object again is harmless.

// rewindCopies sets the progress of the target pool's incomplete
// snapshot-mode copies back by one object; it returns how many it set.
func rewindCopies(ctx context.Context, io *rados.IOContext) (int, error) {
	names, err := call(ctx, func() ([]string, error) { return rbd.GetImageNames(io) })
	if err != nil {
		return 0, fmt.Errorf("list the images: %w", err)
	}
	n := 0
	for _, name := range names {
		in, err := inspect(ctx, io, name, false)
		if err != nil {
			return n, err
		}
		if !in.mirrored() || in.mirror.Primary || in.mode != rbd.ImageMirrorModeSnapshot {
			continue
		}
		ms, err := call(ctx, func() ([]mirrorSnapshot, error) { return mirrorSnapshots(io, name, in.snaps) })
		if err != nil {
			return n, err
		}
		for _, s := range ms {
			if !s.nonPrimary || s.complete || s.lastCopiedObject == 0 {
				continue
			}
			if err := do(ctx, func() error { return setCopyProgress(io, "rbd_header."+in.id, s.id, s.lastCopiedObject-1) }); err != nil {
				return n, fmt.Errorf("set back the copy progress of %s: %w", name, err)
			}
			n++
		}
	}
	return n, nil
}

// setCopyProgress calls cls_rbd's mirror_image_snapshot_set_copy_progress
// (go-ceph v0.28 has no object class call): the snapshot stays
// incomplete, with last copied object n.
func setCopyProgress(io *rados.IOContext, header string, snapID, n uint64) error {
	in := make([]byte, 17)
	binary.LittleEndian.PutUint64(in[0:], snapID)
	in[8] = 0 // complete: false
	binary.LittleEndian.PutUint64(in[9:], n)
	cOid, cCls, cMethod := C.CString(header), C.CString("rbd"), C.CString("mirror_image_snapshot_set_copy_progress")
	defer C.free(unsafe.Pointer(cOid))
	defer C.free(unsafe.Pointer(cCls))
	defer C.free(unsafe.Pointer(cMethod))
	cIn := C.CBytes(in)
	defer C.free(cIn)
	if ret := C.rados_exec(C.rados_ioctx_t(io.Pointer()), cOid, cCls, cMethod, (*C.char)(cIn), C.size_t(len(in)), nil, 0); ret < 0 {
		return syscall.Errno(-ret)
	}
	return nil
}
