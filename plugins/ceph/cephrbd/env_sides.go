package cephrbd

import (
	"context"
	"fmt"

	"github.com/ceph/go-ceph/rados"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// openEnvSides opens each side of an environment on its own, as admin,
// within reachTimeout each, for a call that must do what the reachable
// side allows (a teardown on the day a site is lost). A side that could
// not be reached has a nil IOContext and its error, wrapping
// errUnreachable; its site name, and the source's monitors, come from
// its conf then (the site name defaults to the fsid), so that our peer is
// still told from others. err is every other failure.
func (b *Backend) openEnvSides(ctx context.Context, env sdk.Environment) (e *envConns, srcErr, dstErr, err error) {
	if err := ctx.Err(); err != nil {
		return nil, nil, nil, err
	}
	if err := checkEnvID(env); err != nil {
		return nil, nil, nil, err
	}
	e = &envConns{ctx: ctx}
	if e.src, err = b.side(env.Source); err != nil {
		return nil, nil, nil, err
	}
	if e.dst, err = b.side(env.Target); err != nil {
		return nil, nil, nil, err
	}
	type opened struct {
		conn *rados.Conn
		io   *rados.IOContext
		site string
		err  error
	}
	open := func(sd side, r role, caps string) opened {
		io, err := b.openSide(ctx, sd, true)
		if err != nil {
			return opened{err: err}
		}
		conn, err := b.conn(ctx, sd, true)
		if err == nil {
			var site string
			if site, err = siteName(ctx, conn); err == nil {
				return opened{conn: conn, io: io, site: site}
			}
		}
		releaseAfter(ctx, io.Destroy)
		err = denied(fmt.Errorf("mirror site name of storage %s: %w", sd.key(), err), sd, true, r,
			"read the mirror site name (config-key get rbd/mirror/site_name)", caps)
		return opened{err: unreachable(ctx, sd, err)}
	}
	// Side by side: a lost site costs reachTimeout once, not twice.
	srcCh := make(chan opened, 1)
	go func() { srcCh <- open(e.src, roleSource, "mon 'profile rbd-mirror-peer'") }()
	d := open(e.dst, roleTarget, "mon 'profile rbd-mirror'")
	s := <-srcCh
	for _, o := range []opened{s, d} {
		if o.err != nil && !isUnreachable(o.err) {
			if s.io != nil {
				releaseAfter(ctx, s.io.Destroy)
			}
			if d.io != nil {
				releaseAfter(ctx, d.io.Destroy)
			}
			return nil, nil, nil, o.err
		}
	}
	e.srcConn, e.srcIO, e.srcSite, srcErr = s.conn, s.io, s.site, s.err
	e.dstConn, e.dstIO, e.dstSite, dstErr = d.conn, d.io, d.site, d.err
	confSrc, err := confOptions(e.src, "fsid", "mon_host")
	if err != nil {
		e.close()
		return nil, nil, nil, err
	}
	e.srcMonHost = confSrc["mon_host"]
	if srcErr != nil {
		e.srcSite = confSrc["fsid"]
	}
	if dstErr != nil {
		confDst, err := confOptions(e.dst, "fsid")
		if err != nil {
			e.close()
			return nil, nil, nil, err
		}
		e.dstSite = confDst["fsid"]
	}
	return e, srcErr, dstErr, nil
}

// confOptions reads options of sd's conf file through librados, without
// connecting.
func confOptions(sd side, names ...string) (map[string]string, error) {
	conn, err := rados.NewConnWithClusterAndUser(sd.key(), "client."+sd.m.Client)
	if err != nil {
		return nil, fmt.Errorf("read the conf of storage %s: %w", sd.key(), err)
	}
	defer conn.Shutdown()
	if err := conn.ReadConfigFile(sd.files.Conf); err != nil {
		return nil, fmt.Errorf("read the conf of storage %s: %w", sd.key(), err)
	}
	out := map[string]string{}
	for _, n := range names {
		if out[n], err = conn.GetConfigOption(n); err != nil {
			return nil, fmt.Errorf("%s of storage %s: %w", n, sd.key(), err)
		}
	}
	return out, nil
}
