package nfsfile

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/cdmdr/mirror/plugins/nfs/agentproto"
	"github.com/cdmdr/mirror/plugins/nfs/deltasync"
)

// copyHandle is a volume's copy held open (and locked) by this host's
// sync loop.
type copyHandle struct{ c *deltasync.Copy }

// copyStatus is what the plugin reports of a copy.
type copyStatus struct {
	complete bool // a first copy completed: the target holds a whole sync
	progress int
	lastSync time.Time
	size     int64
}

// syncResult is what one sync did.
type syncResult struct {
	firstCopy bool
	changed   uint64
	bytes     int64
	duration  time.Duration
}

func openCopy(tgt target, uuid string) (*copyHandle, error) {
	c, err := deltasync.Open(tgt.dir, volumeName(uuid), deltasync.Options{BlockSize: tgt.blockSize})
	if err != nil {
		return nil, err
	}
	return &copyHandle{c}, nil
}

func (h *copyHandle) sync(ctx context.Context, src agentproto.Source) (syncResult, error) {
	res, err := h.c.Sync(ctx, src)
	return syncResult{firstCopy: res.FirstCopy, changed: res.BlocksChanged, bytes: res.BytesReceived, duration: res.Duration}, err
}

func (h *copyHandle) status() copyStatus { return statusOf(h.c.Status()) }

func (h *copyHandle) copyTo(dst string) error {
	_, err := h.c.CopyTo(dst)
	return err
}

func (h *copyHandle) close() { _ = h.c.Close() }

func statusOf(s deltasync.Status) copyStatus {
	return copyStatus{complete: s.FirstCopyDone, progress: int(s.Progress), lastSync: s.LastSync, size: s.Size}
}

// peekCopy reads a copy's status without taking its lock: another host's
// loop may hold it.
func peekCopy(tgt target, uuid string) (copyStatus, error) {
	s, err := deltasync.ReadStatus(tgt.dir, volumeName(uuid))
	if errors.Is(err, os.ErrNotExist) {
		return copyStatus{}, nil // no sync has begun
	}
	return statusOf(s), err
}

// keepStandalone leaves the copy as a plain file, its sync state gone.
func keepStandalone(tgt target, uuid string) error {
	_, err := deltasync.KeepStandalone(tgt.dir, volumeName(uuid))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	return err
}

// removeCopy deletes the copy and its sync state.
func removeCopy(tgt target, uuid string) error {
	return deltasync.Remove(tgt.dir, volumeName(uuid))
}
