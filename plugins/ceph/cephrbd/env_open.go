package cephrbd

import (
	"context"
	"fmt"
	"strings"

	"github.com/ceph/go-ceph/rados"
	"github.com/ceph/go-ceph/rbd"

	"github.com/cdmdr/mirror/plugins/sdk"
)

var rbdGetMirrorSiteName = rbd.GetMirrorSiteName

// envConns is an environment's two sides with connections and pools
// open as each side's most privileged user: its admin when the metadata
// gives one, else its client.
type envConns struct {
	// ctx is the call's: closing after it ended waits for calls it
	// abandoned (releaseAfter).
	ctx              context.Context
	src, dst         side
	srcConn, dstConn *rados.Conn
	srcIO, dstIO     *rados.IOContext
	srcSite, dstSite string
	srcMonHost       string
}

func (e *envConns) close() {
	for _, io := range []*rados.IOContext{e.srcIO, e.dstIO} {
		if io != nil {
			releaseAfter(e.ctx, io.Destroy)
		}
	}
}

// pool is one side's pool, open.
type pool struct {
	s  side
	io *rados.IOContext
}

func (e *envConns) pools() []pool { return []pool{{e.src, e.srcIO}, {e.dst, e.dstIO}} }

func (b *Backend) openEnv(ctx context.Context, env sdk.Environment) (*envConns, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkEnvID(env); err != nil {
		return nil, err
	}
	e := &envConns{ctx: ctx}
	var err error
	if e.src, err = b.side(env.Source); err != nil {
		return nil, err
	}
	if e.dst, err = b.side(env.Target); err != nil {
		return nil, err
	}
	if e.srcConn, err = b.conn(ctx, e.src, true); err != nil {
		return nil, err
	}
	if e.dstConn, err = b.conn(ctx, e.dst, true); err != nil {
		return nil, err
	}
	if e.srcIO, err = b.ioctx(ctx, e.src, true); err != nil {
		return nil, err
	}
	if e.dstIO, err = b.ioctx(ctx, e.dst, true); err != nil {
		e.close()
		return nil, err
	}
	if err := e.readSites(ctx); err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

// readSites reads both clusters' mirror site names and the source's
// monitor addresses.
func (e *envConns) readSites(ctx context.Context) error {
	var err error
	const doing = "read the mirror site name (config-key get rbd/mirror/site_name)"
	if e.srcSite, err = siteName(ctx, e.srcConn); err != nil {
		return denied(fmt.Errorf("mirror site name of storage %s: %w", e.src.key(), err),
			e.src, true, roleSource, doing, "mon 'profile rbd-mirror-peer'")
	}
	if e.dstSite, err = siteName(ctx, e.dstConn); err != nil {
		return denied(fmt.Errorf("mirror site name of storage %s: %w", e.dst.key(), err),
			e.dst, true, roleTarget, doing, "mon 'profile rbd-mirror'")
	}
	if e.srcMonHost, err = e.srcConn.GetConfigOption("mon_host"); err != nil {
		return fmt.Errorf("mon_host of storage %s: %w", e.src.key(), err)
	}
	return nil
}

// siteName is a cluster's mirror site name (its fsid unless set).
func siteName(ctx context.Context, conn *rados.Conn) (string, error) {
	return call(ctx, func() (string, error) {
		s, err := rbdGetMirrorSiteName(conn)
		return strings.Trim(s, "\x00"), err
	})
}

// peers finds our peer (the source) among the target pool's peers; a
// peer that pulls from elsewhere is returned as foreign.
func (e *envConns) peers(ctx context.Context) (ours *rbd.MirrorPeerSite, foreign *rbd.MirrorPeerSite, err error) {
	list, err := call(ctx, func() ([]*rbd.MirrorPeerSite, error) { return rbd.ListMirrorPeerSite(e.dstIO) })
	if err != nil {
		return nil, nil, denied(fmt.Errorf("list mirror peers of pool %s on storage %s: %w", e.dst.m.Pool, e.dst.key(), err),
			e.dst, true, roleTarget, "list the mirror peers of pool "+e.dst.m.Pool, "osd '"+osdCaps(e.dst.m.Pool)+"'")
	}
	for _, p := range list {
		if p.Direction == rbd.MirrorPeerDirectionTx {
			continue // registered by an rbd-mirror that pulls from this pool
		}
		if e.isSource(ctx, p) {
			ours = p
		} else if foreign == nil {
			foreign = p
		}
	}
	return ours, foreign, nil
}

// isSource says whether the target pool's peer p is the source cluster:
// by its site name, or by the monitors it was given.
func (e *envConns) isSource(ctx context.Context, p *rbd.MirrorPeerSite) bool {
	if p.SiteName == e.srcSite {
		return true
	}
	attrs, _ := call(ctx, func() (map[string]string, error) { return rbd.GetAttributesMirrorPeerSite(e.dstIO, p.UUID) })
	return attrs["mon_host"] != "" && attrs["mon_host"] == e.srcMonHost
}

// mirrorMode reads a pool's mirror mode.
func mirrorMode(ctx context.Context, p pool) (rbd.MirrorMode, error) {
	mode, err := call(ctx, func() (rbd.MirrorMode, error) { return rbd.GetMirrorMode(p.io) })
	if err != nil {
		return mode, fmt.Errorf("mirror mode of pool %s on storage %s: %w", p.s.m.Pool, p.s.key(), err)
	}
	return mode, nil
}
