package cephrbd

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"strconv"
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

	conn, err := call(ctx, func() (*rados.Conn, error) { return connect(sd, user, keyring) })
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

// connect makes a new connection to sd's cluster as client.user with
// the given keyring file; every librados timeout is set, so that an
// unreachable cluster fails the calls instead of hanging them.
func connect(sd side, user, keyring string) (*rados.Conn, error) {
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
			return nil, errNoPool(sd)
		}
		b.dropConn(sd, admin)
		return nil, fmt.Errorf("open pool %s on storage %s: %w", sd.m.Pool, sd.key(), err)
	}
	return io, nil
}

// errNoPool says that sd's pool does not exist, and what to do.
func errNoPool(sd side) error {
	return fmt.Errorf("pool %s does not exist on storage %s; create it (`ceph osd pool create %s` and `rbd pool init %s`) "+
		"or set the storage's pool to one that exists: %w", sd.m.Pool, sd.key(), sd.m.Pool, sd.m.Pool, sdk.ErrPrecondition)
}
