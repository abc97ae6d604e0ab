package cephrbd

import (
	"context"
	"errors"
	"fmt"
	"syscall"

	"github.com/ceph/go-ceph/rados"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// reachTimeout bounds the attempt to reach one storage in a call that
// must not wait for a lost site (stop, teardown): connecting (librados'
// client_mount_timeout is opTimeout), opening the pool and a first read.
// It is no shorter than a librados call's own bound on purpose: taking a
// slow but live source for a lost one would force-promote a copy the
// source still writes to, the split brain the whole care is about; a
// cluster that does not answer one call within opTimeout is the one the
// calls themselves give up on.
const reachTimeout = opTimeout

// errUnreachable marks a storage the call could not reach within
// reachTimeout (or whose calls failed as an unreachable cluster's do).
var errUnreachable = errors.New("unreachable")

// unreachable wraps the error of an attempt to reach sd when it is an
// unreachable cluster's: the attempt's time ran out, or librados gave up
// waiting (ETIMEDOUT) or found no connection. Anything else (a missing
// pool, a refused capability) is the storage answering, and is returned
// as it is: only silence may make a call act without the source.
func unreachable(ctx context.Context, sd side, err error) error {
	if err == nil || ctx.Err() != nil {
		return err
	}
	if !errors.Is(err, context.DeadlineExceeded) && !isErrno(err, syscall.ETIMEDOUT) &&
		!isErrno(err, syscall.ENOTCONN) && !isErrno(err, syscall.ECONNREFUSED) && !isErrno(err, syscall.EHOSTUNREACH) {
		return err
	}
	return fmt.Errorf("storage %s could not be reached within %s (%w): %w", sd.key(), reachTimeout, err, errUnreachable)
}

// openSide opens sd's pool within reachTimeout; an error wraps
// errUnreachable unless the storage answered it. A cached connection is
// kept even when the storage did not answer: shutting it down under the
// calls still waiting on it would leave them waiting for good, while
// kept they end with librados' OSD timeout, or when the storage is back.
func (b *Backend) openSide(ctx context.Context, sd side, admin bool) (*rados.IOContext, error) {
	sctx, cancel := context.WithTimeout(ctx, reachTimeout)
	defer cancel()
	io, err := b.ioctx(sctx, sd, admin)
	if err == nil {
		err = probePool(sctx, io)
		if err != nil {
			io = nil
		}
	}
	return io, unreachable(ctx, sd, err)
}

// probePool reads the pool once (a cached connection opens a pool
// without asking the cluster) to know the storage answers. On an error
// the pool's IOContext is destroyed, once the read has ended: the read
// uses it directly.
func probePool(ctx context.Context, io *rados.IOContext) error {
	done := make(chan error, 1)
	go func() {
		_, _, err := getPoolMeta(io, preparedKey("-"))
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			io.Destroy()
		}
		return err
	case <-ctx.Done():
		go func() {
			<-done
			io.Destroy()
		}()
		return ctx.Err()
	}
}

// openVolSides opens the volume's target pool (an error there ends the
// call: without the target there is nothing to do) and tries its source
// within reachTimeout, reading the source image there. srcErr, wrapping
// errUnreachable, says the source could not be reached (v.srcIO is then
// nil); err is every other failure.
func (b *Backend) openVolSides(ctx context.Context, vol sdk.Volume) (v *volConns, src imageInfo, srcErr, err error) {
	if err := ctx.Err(); err != nil {
		return nil, src, nil, err
	}
	if err := checkEnvID(vol.Environment); err != nil {
		return nil, src, nil, err
	}
	if !uuidPattern.MatchString(vol.VolumeUUID) {
		return nil, src, nil, fmt.Errorf("volume uuid %q cannot name an image: %w", vol.VolumeUUID, sdk.ErrPrecondition)
	}
	v = &volConns{ctx: ctx, name: imageName(vol)}
	if v.src, err = b.side(vol.Environment.Source); err != nil {
		return nil, src, nil, err
	}
	if v.dst, err = b.side(vol.Environment.Target); err != nil {
		return nil, src, nil, err
	}
	v.spec = v.dst.m.Pool + "/" + v.name
	if v.dstIO, err = b.ioctx(ctx, v.dst, false); err != nil {
		return nil, src, nil, err
	}
	srcIO, err := b.openSide(ctx, v.src, false)
	if err == nil {
		sctx, cancel := context.WithTimeout(ctx, reachTimeout)
		src, err = inspect(sctx, srcIO, v.name, true)
		cancel()
		if err != nil {
			releaseAfter(sctx, srcIO.Destroy)
			err = unreachable(ctx, v.src, fmt.Errorf("read image %s/%s: %w", v.src.m.Pool, v.name, err))
		} else {
			v.srcIO = srcIO
		}
	}
	if err != nil && !errors.Is(err, errUnreachable) {
		v.close()
		return nil, src, nil, err
	}
	return v, src, err, nil
}

// isUnreachable says whether err says a storage could not be reached.
func isUnreachable(err error) bool { return errors.Is(err, errUnreachable) }
