package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strconv"
	"syscall"
	"time"

	"github.com/ceph/go-ceph/rados"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// opTimeout bounds each librados call against the monitors and OSDs, so
// an unreachable cluster fails a call instead of hanging it.
const opTimeout = 10 * time.Second

// cachedConn is one cached connection and what it was made from.
type cachedConn struct {
	fingerprint [32]byte
	conn        *rados.Conn
}

// side is a storage with its parsed metadata and files.
type side struct {
	s     sdk.Storage
	m     meta
	files storageFiles
}

func (sd side) key() string { return storageKey(sd.s) }

// side parses a storage's metadata and writes its files.
func (b *Backend) side(s sdk.Storage) (side, error) {
	m, err := parseMeta(s)
	if err != nil {
		return side{}, err
	}
	f, err := b.writeStorageFiles(s, m)
	if err != nil {
		return side{}, err
	}
	return side{s: s, m: m, files: f}, nil
}

// conn returns a connection to sd's cluster as its client (admin false)
// or its admin client (admin true), cached per storage and user.
func (b *Backend) conn(ctx context.Context, sd side, admin bool) (*rados.Conn, error) {
	user, keyring, secret := sd.m.Client, sd.files.Keyring, sd.m.Keyring
	if admin {
		user, keyring, secret = sd.m.AdminClient, sd.files.AdminKeyring, sd.m.AdminKeyring
	}
	cacheKey := sd.key() + "/" + user
	fp := sha256.Sum256([]byte(sd.m.Conf + "\x00" + secret))
	b.mu.Lock()
	if c, ok := b.conns[cacheKey]; ok {
		if c.fingerprint == fp {
			b.mu.Unlock()
			return c.conn, nil
		}
		delete(b.conns, cacheKey)
		go c.conn.Shutdown()
	}
	b.mu.Unlock()

	conn, err := call(ctx, func() (*rados.Conn, error) {
		conn, err := rados.NewConnWithClusterAndUser(sd.key(), "client."+user)
		if err != nil {
			return nil, fmt.Errorf("new connection: %w", err)
		}
		if err := conn.ReadConfigFile(sd.files.Conf); err != nil {
			conn.Shutdown()
			return nil, fmt.Errorf("read %s: %w", sd.files.Conf, err)
		}
		secs := strconv.Itoa(int(opTimeout / time.Second))
		for _, o := range [][2]string{
			{"keyring", keyring},
			{"rados_mon_op_timeout", secs},
			{"rados_osd_op_timeout", "30"},
			{"client_mount_timeout", secs},
			// Our short-lived clients need no admin socket of their own,
			// whatever the cluster's conf says.
			{"admin_socket", ""},
		} {
			if err := conn.SetConfigOption(o[0], o[1]); err != nil {
				conn.Shutdown()
				return nil, fmt.Errorf("set %s: %w", o[0], err)
			}
		}
		if err := conn.Connect(); err != nil {
			conn.Shutdown()
			return nil, err
		}
		return conn, nil
	})
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		return nil, fmt.Errorf("connect to storage %s as client.%s: %w: %w", sd.key(), user, err, sdk.ErrRetryable)
	}
	b.mu.Lock()
	if c, ok := b.conns[cacheKey]; ok && c.fingerprint == fp {
		b.mu.Unlock()
		conn.Shutdown()
		return c.conn, nil
	}
	b.conns[cacheKey] = cachedConn{fingerprint: fp, conn: conn}
	b.mu.Unlock()
	return conn, nil
}

// dropConn forgets a cached connection (after it failed), so the next
// call connects again.
func (b *Backend) dropConn(sd side, admin bool) {
	user := sd.m.Client
	if admin {
		user = sd.m.AdminClient
	}
	b.mu.Lock()
	c, ok := b.conns[sd.key()+"/"+user]
	delete(b.conns, sd.key()+"/"+user)
	b.mu.Unlock()
	if ok {
		go c.conn.Shutdown()
	}
}

// ioctx opens sd's pool.
func (b *Backend) ioctx(ctx context.Context, sd side, admin bool) (*rados.IOContext, error) {
	conn, err := b.conn(ctx, sd, admin)
	if err != nil {
		return nil, err
	}
	io, err := call(ctx, func() (*rados.IOContext, error) { return conn.OpenIOContext(sd.m.Pool) })
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		if errors.Is(err, rados.ErrNotFound) {
			return nil, fmt.Errorf("pool %s does not exist on storage %s: %w", sd.m.Pool, sd.key(), sdk.ErrPrecondition)
		}
		b.dropConn(sd, admin)
		return nil, fmt.Errorf("open pool %s on storage %s: %w", sd.m.Pool, sd.key(), err)
	}
	return io, nil
}

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
