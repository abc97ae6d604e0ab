package cephrbd

import (
	"context"
	"errors"
	"syscall"
	"time"

	"github.com/ceph/go-ceph/rados"
)

// call runs f, returning early with ctx's error when ctx ends first (f
// then finishes in the background: librados calls cannot be interrupted,
// and each is bounded by opTimeout).
func call[T any](ctx context.Context, f func() (T, error)) (T, error) {
	var zero T
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	go func() {
		v, err := f()
		ch <- result{v, err}
	}()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}

// abandonedGrace is how long a librados call that call abandoned (its
// caller's context ended) may still run: each is bounded by the
// connection's timeouts (rados_osd_op_timeout 30 s, opTimeout on the
// monitors).
const abandonedGrace = 45 * time.Second

// releaseAfter runs free (an IOContext's Destroy, a connection's
// Shutdown) now; or, when ctx has ended, once abandonedGrace has passed,
// since a call abandoned on what free releases may still run in C, and
// freeing under it crashes the process.
func releaseAfter(ctx context.Context, free func()) {
	if ctx == nil || ctx.Err() == nil {
		free()
		return
	}
	time.AfterFunc(abandonedGrace, free)
}

// do is call for functions without a result.
func do(ctx context.Context, f func() error) error {
	_, err := call(ctx, func() (struct{}, error) { return struct{}{}, f() })
	return err
}

// isErrno says whether a go-ceph error carries the (positive) errno e.
func isErrno(err error, e syscall.Errno) bool {
	var c interface{ ErrorCode() int }
	return errors.As(err, &c) && (c.ErrorCode() == -int(e) || c.ErrorCode() == int(e))
}

// operate runs a write op on object oid and returns the op's own error:
// go-ceph's OperationError does not unwrap, so errors.Is and isErrno
// would not see its errno (EEXIST of an exclusive create, ENOENT of an
// assertion).
func operate(op *rados.WriteOp, io *rados.IOContext, oid string) error {
	err := op.Operate(io, oid, rados.OperationNoFlag)
	var oe rados.OperationError
	if errors.As(err, &oe) && oe.OpError != nil {
		return oe.OpError
	}
	return err
}
