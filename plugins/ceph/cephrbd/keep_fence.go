package cephrbd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/ceph/go-ceph/rados"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// A copy kept without the source must be free for the user to write: no
// exclusive lock of rbd-mirror's left on it. rbd-mirror releases it
// within seconds of the promotion when it runs well. With the source
// frozen it may not: its librados calls to the source never end (its
// connection there sets no OSD timeout), its shared timer thread blocks
// in one once the source's in-flight throttle is full, and the
// replayer's stop waits for that thread; the lock is then held until the
// source is back. So a keep without the source waits keepLockWait for
// the lock, then fences the holder when it is one of the environment's
// own rbd-mirror instances (rbdmirror_instances.go): blocklisted on the
// target cluster, then its lock broken. It can no longer write to the
// kept copy, nor replicate anything to that cluster: its host's
// supervisor replaces the process (rbdmirror_replace.go) rather than
// leaving it to restart its pool replayer itself, which Pacific's
// rbd-mirror sometimes never does. A lock held by anyone else is waited
// for, as before.

// keepLockWait is how long rbd-mirror is left to release the kept copy's
// lock before it is taken for stuck.
const keepLockWait = 10 * time.Second

// exclusiveLockName is the lock librbd's exclusive-lock feature takes on
// an image's header object (RBD_LOCK_NAME).
const exclusiveLockName = "rbd_lock"

// verifyKeptAlone is verifyKept for a copy kept without the source: a
// lock still held after keepLockWait by one of the environment's
// rbd-mirror instances is fenced, then the copy verified again.
func (b *Backend) verifyKeptAlone(ctx context.Context, vol sdk.Volume, v *volConns) error {
	wctx, cancel := context.WithTimeout(ctx, keepLockWait)
	err := verifyKept(wctx, v)
	cancel()
	if err == nil || ctx.Err() != nil || !lockStillHeld(err) {
		return err
	}
	fenced, ferr := b.fenceLockHolder(ctx, vol, v)
	if ferr != nil {
		b.log.Warn("cannot fence the kept copy's lock holder", "env", vol.Environment.ID, "image", v.name, "error", ferr)
	}
	if !fenced {
		b.log.Info("the kept copy's lock is held by no rbd-mirror of the environment: waiting for it",
			"env", vol.Environment.ID, "image", v.name)
	}
	return verifyKept(ctx, v)
}

// lockStillHeld says whether verifyKept gave up while the copy's lock was
// not ours to take: librbd refused it (EROFS, EBUSY), or the wait ran out
// with a call still waiting for it.
func lockStillHeld(err error) bool {
	return isErrno(err, syscall.EROFS) || isErrno(err, syscall.EBUSY) || errors.Is(err, context.DeadlineExceeded)
}

// fenceLockHolder blocklists, on the target cluster, the holder of the
// copy's exclusive lock when it is a recorded rbd-mirror instance of the
// environment, then breaks its lock. fenced says whether it did.
func (b *Backend) fenceLockHolder(ctx context.Context, vol sdk.Volume, v *volConns) (fenced bool, err error) {
	in, err := inspect(ctx, v.dstIO, v.name, false)
	if err != nil || !in.exists {
		return false, err
	}
	header := "rbd_header." + in.id
	info, err := call(ctx, func() (*rados.LockInfo, error) { return v.dstIO.ListLockers(header, exclusiveLockName) })
	if err != nil {
		return false, fmt.Errorf("list the lockers of %s: %w", v.spec, err)
	}
	recs, err := instanceRecords(ctx, v.dstIO, vol.Environment.ID)
	if err != nil {
		return false, err
	}
	for i, client := range info.Clients {
		rec, ok := recordOf(recs, client)
		if !ok || i >= len(info.Cookies) {
			continue
		}
		addr := rec.Addr
		if i < len(info.Addrs) && info.Addrs[i] != "" {
			addr = info.Addrs[i] // the very client holding the lock
		}
		if err := b.fence(ctx, v, rec, addr); err != nil {
			return false, err
		}
		cookie := info.Cookies[i]
		if err := do(ctx, func() error {
			_, err := v.dstIO.BreakLock(header, exclusiveLockName, client, cookie)
			return err
		}); err != nil {
			return false, fmt.Errorf("break the lock of rbd-mirror instance %s on %s: %w", rec.InstanceID, v.spec, err)
		}
		b.log.Warn("rbd-mirror held the kept copy's lock: blocklisted on the target and its lock broken",
			"env", vol.Environment.ID, "image", v.name, "instance", rec.InstanceID, "addr", addr, "host", rec.Host)
		fenced = true
	}
	return fenced, nil
}

// recordOf finds the record of the instance a locker ("client.<id>") is.
func recordOf(recs []instanceRecord, client string) (instanceRecord, bool) {
	id, ok := strings.CutPrefix(client, "client.")
	if !ok {
		return instanceRecord{}, false
	}
	for _, r := range recs {
		if r.InstanceID == id {
			return r, true
		}
	}
	return instanceRecord{}, false
}

// fence blocklists addr, rbd-mirror instance rec's client, on the target
// cluster (as its admin, as blocklistEarlier does), frees the pool's
// leader lock if it held it, and marks the record fenced: the mark is
// what makes its host replace the process.
func (b *Backend) fence(ctx context.Context, v *volConns, rec instanceRecord, addr string) error {
	conn, err := b.conn(ctx, v.dst, true)
	if err != nil {
		return err
	}
	if err := blocklist(ctx, conn, addr); err != nil {
		return fmt.Errorf("blocklist rbd-mirror instance %s (%s) on storage %s: %w", rec.InstanceID, addr, v.dst.key(), err)
	}
	breakLeaderLock(ctx, v.dstIO, rec.InstanceID)
	rec.BlocklistedAt = time.Now().Unix()
	rec.FencedAt = rec.BlocklistedAt
	data, _ := json.Marshal(rec)
	if err := do(ctx, func() error { return setPoolMeta(v.dstIO, instanceKey(rec.Env, rec.InstanceID), string(data)) }); err != nil {
		// Fenced all the same; unmarked, the process is left to
		// restart its pool replayer by itself.
		b.log.Warn("cannot mark the fenced rbd-mirror instance for its host to restart",
			"env", rec.Env, "instance", rec.InstanceID, "host", rec.Host, "error", err)
	}
	return nil
}
