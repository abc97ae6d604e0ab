package cephrbd

/*
#cgo LDFLAGS: -lrbd
#include <errno.h>
#include <stdlib.h>
#include <rbd/librbd.h>
*/
import "C"

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"unsafe"

	"github.com/ceph/go-ceph/rados"
	"github.com/ceph/go-ceph/rbd"
)

// What every host must know of an environment lives in its target pool's
// RBD pool metadata, where any mirrord host reads it: the prepared
// marker, the paused images, the rbd-mirror instances the plugin ran.
// The state directory keeps only what belongs to one host. Every key
// starts with metaPrefix, is one per environment or per image, and holds
// JSON without secrets. rbd-mirror does not replicate pool metadata, so
// the target pool's facts stay the target's.
const metaPrefix = "mirror."

func preparedKey(envID string) string { return metaPrefix + "prepared." + envID }

// pausedPrefix starts the keys of envID's paused images; "" for every
// environment's.
func pausedPrefix(envID string) string {
	if envID == "" {
		return metaPrefix + "paused."
	}
	return metaPrefix + "paused." + envID + "."
}

func pausedKey(envID, image string) string { return pausedPrefix(envID) + image }

// instancePrefix starts the keys of the rbd-mirror instances recorded
// for envID; "" for every environment's.
func instancePrefix(envID string) string {
	if envID == "" {
		return metaPrefix + "rbd-mirror."
	}
	return metaPrefix + "rbd-mirror." + envID + "."
}

func instanceKey(envID, id string) string { return instancePrefix(envID) + id }

// getPoolMeta reads one key; ok is false when it is not set.
func getPoolMeta(io *rados.IOContext, key string) (value string, ok bool, err error) {
	v, err := rbd.GetPoolMetadata(io, key)
	if errors.Is(err, rbd.ErrNotFound) || isErrno(err, syscall.ENOENT) {
		return "", false, nil
	}
	if err != nil {
		return "", false, err
	}
	return v, true, nil
}

func setPoolMeta(io *rados.IOContext, key, value string) error {
	return rbd.SetPoolMetadata(io, key, value)
}

// removePoolMeta removes one key; a missing one is fine.
func removePoolMeta(io *rados.IOContext, key string) error {
	err := rbd.RemovePoolMetadata(io, key)
	if errors.Is(err, rbd.ErrNotFound) || isErrno(err, syscall.ENOENT) {
		return nil
	}
	return err
}

// metaListChunk is how many keys one rbd_pool_metadata_list call returns
// at most.
const metaListChunk = 64

// listPoolMeta returns the keys starting with prefix and their values.
// go-ceph v0.28 lacks rbd_pool_metadata_list, hence the cgo.
func listPoolMeta(io *rados.IOContext, prefix string) (map[string]string, error) {
	out := map[string]string{}
	for start := prefix; ; {
		keys, vals, err := poolMetaChunk(io, start)
		if err != nil {
			return nil, err
		}
		for i, k := range keys {
			if !strings.HasPrefix(k, prefix) {
				return out, nil // keys come sorted: past the prefix
			}
			out[k] = vals[i]
		}
		if len(keys) < metaListChunk {
			return out, nil
		}
		start = keys[len(keys)-1]
	}
}

// poolMetaChunk lists up to metaListChunk keys after start.
func poolMetaChunk(io *rados.IOContext, start string) (keys, vals []string, err error) {
	cStart := C.CString(start)
	defer C.free(unsafe.Pointer(cStart))
	keyLen, valLen := C.size_t(4096), C.size_t(64<<10)
	for range 4 {
		kBuf, vBuf := make([]byte, keyLen), make([]byte, valLen)
		ret := C.rbd_pool_metadata_list(C.rados_ioctx_t(io.Pointer()), cStart, C.uint64_t(metaListChunk),
			(*C.char)(unsafe.Pointer(&kBuf[0])), &keyLen, (*C.char)(unsafe.Pointer(&vBuf[0])), &valLen)
		if ret == -C.ERANGE {
			continue // keyLen and valLen now say what is needed
		}
		if ret < 0 {
			return nil, nil, fmt.Errorf("list pool metadata: %w", syscall.Errno(-ret))
		}
		keys, vals = splitNul(kBuf[:keyLen]), splitNul(vBuf[:valLen])
		if len(keys) != len(vals) {
			return nil, nil, fmt.Errorf("list pool metadata: %d keys but %d values", len(keys), len(vals))
		}
		return keys, vals, nil
	}
	return nil, nil, fmt.Errorf("list pool metadata: %w", syscall.ERANGE)
}

// splitNul splits a buffer of NUL-terminated strings.
func splitNul(b []byte) []string {
	var out []string
	for len(b) > 0 {
		i := strings.IndexByte(string(b), 0)
		if i < 0 {
			out = append(out, string(b))
			break
		}
		out = append(out, string(b[:i]))
		b = b[i+1:]
	}
	return out
}
