package cephrbd

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/ceph/go-ceph/rados"
	"github.com/ceph/go-ceph/rbd"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// The layout checks refuse, before anything changes, what rbd-mirror
// would serve wrongly: a source pool feeding a second target cluster
// (1:N: every mirror-enabled image of the pool would land on both), and a
// target pool pulling from a second source (N:1 into one pool: rbd-mirror
// takes one rx peer per pool). A new environment in such a layout takes
// the ship path instead (ship_path.go); what is refused here is an
// rbd-mirror environment that would make such a layout itself (one
// prepared earlier, or a pool another rbd-mirror pulls from by hand).

// layoutAdvice1N is what an operator does about a source pool feeding
// two target clusters.
const layoutAdvice1N = "rbd-mirror copies every mirror-enabled image of a pool to every cluster that pulls from it, " +
	"so the volumes of both environments would land on both targets. Give each target set a source pool of its own, " +
	"named the same on its target (for example `dr-x` on both the source and target x), and place the volumes there " +
	"(a Cinder volume type per pool). An environment prepared from now on from this pool into another target cluster " +
	"is served by the plugin's ship path instead (docs/ceph.md, \"Layouts\")"

// wantFeed is the record this environment's prepare would write.
func (e *envConns) wantFeed(envID string) (feed, error) {
	fsid, err := e.dstConn.GetFSID()
	if err != nil {
		return feed{}, fmt.Errorf("fsid of storage %s: %w", e.dst.key(), err)
	}
	return feed{Environment: envID, Target: e.dst.key(), TargetSite: e.dstSite, TargetFSID: strings.Trim(fsid, "\x00"), TargetPool: e.dst.m.Pool}, nil
}

// claimSourcePool makes the source pool this environment's, or refuses
// when it feeds another target cluster: by its record (feedObject), or,
// for a pool set up before the record existed, by the tx peers rbd-mirror
// daemons of other clusters registered on it.
func (b *Backend) claimSourcePool(ctx context.Context, env sdk.Environment, e *envConns) error {
	me, err := e.wantFeed(env.ID)
	if err != nil {
		return err
	}
	held, ok, err := readFeed(ctx, e.srcIO)
	if err != nil {
		return e.deniedOnSource(err, "read object "+feedObject+" of pool "+e.src.m.Pool)
	}
	if !ok {
		others, err := otherTxPeers(ctx, e.srcIO, e.dstSite)
		if err != nil {
			return e.deniedOnSource(fmt.Errorf("pool %s on storage %s: %w", e.src.m.Pool, e.src.key(), err), "list the mirror peers of pool "+e.src.m.Pool)
		}
		if len(others) > 0 {
			return feedRefusal{refuseTxPeers(e.src, me, others, "environment "+env.ID+" would add")}
		}
		if held, err = claimFeed(ctx, e.srcIO, me); err != nil {
			return e.deniedOnSource(fmt.Errorf("pool %s on storage %s: %w", e.src.m.Pool, e.src.key(), err), "create object "+feedObject+" in pool "+e.src.m.Pool)
		}
		if held.Environment == env.ID {
			b.log.Info("source pool claimed", "env", env.ID, "pool", e.src.m.Pool, "source", e.src.key(), "target", e.dst.key())
		}
	}
	if held.Environment != env.ID && !held.sameCluster(me) {
		return feedRefusal{refuseFeed(e.src, held, me, "environment "+env.ID+" would add")}
	}
	return nil
}

// deniedOnSource explains err as denied to the source's user.
func (e *envConns) deniedOnSource(err error, doing string) error {
	return denied(err, e.src, true, roleSource, doing, "")
}

// checkVolumeFeed refuses to enable mirroring on a volume's image while
// its source pool feeds a target cluster other than the environment's
// (a second plan that appeared after the environment was prepared).
// targetSite is the environment's target site as its marker recorded it
// ("" from an old marker: the tx peers are not looked at then).
func (b *Backend) checkVolumeFeed(ctx context.Context, vol sdk.Volume, v *volConns, targetSite string) error {
	conn, err := b.conn(ctx, v.dst, false)
	if err != nil {
		return err
	}
	fsid, err := conn.GetFSID()
	if err != nil {
		return fmt.Errorf("fsid of storage %s: %w", v.dst.key(), err)
	}
	me := feed{Environment: vol.Environment.ID, Target: v.dst.key(), TargetSite: targetSite, TargetFSID: strings.Trim(fsid, "\x00"), TargetPool: v.dst.m.Pool}
	doing := fmt.Sprintf("volume %d (image %s) of environment %s would add", vol.VolumeID, v.name, vol.Environment.ID)
	held, ok, err := readFeed(ctx, v.srcIO)
	if err != nil {
		return denied(fmt.Errorf("pool %s on storage %s: %w", v.src.m.Pool, v.src.key(), err), v.src, false, roleSource, "read object "+feedObject+" of pool "+v.src.m.Pool, "")
	}
	if ok && held.Environment != me.Environment && !held.sameCluster(me) {
		return refuseFeed(v.src, held, me, doing)
	}
	if targetSite == "" {
		return nil
	}
	others, err := otherTxPeers(ctx, v.srcIO, targetSite)
	if err != nil {
		return denied(fmt.Errorf("pool %s on storage %s: %w", v.src.m.Pool, v.src.key(), err), v.src, false, roleSource, "list the mirror peers of pool "+v.src.m.Pool, "")
	}
	if len(others) > 0 {
		return refuseTxPeers(v.src, me, others, doing)
	}
	return nil
}

// otherTxPeers are the source pool's tx peers that rbd-mirror daemons of
// clusters other than site registered (each pulls every mirror-enabled
// image of the pool).
func otherTxPeers(ctx context.Context, io *rados.IOContext, site string) ([]*rbd.MirrorPeerSite, error) {
	list, err := call(ctx, func() ([]*rbd.MirrorPeerSite, error) { return rbd.ListMirrorPeerSite(io) })
	if err != nil {
		return nil, fmt.Errorf("list mirror peers: %w", err)
	}
	var out []*rbd.MirrorPeerSite
	for _, p := range list {
		if p.Direction == rbd.MirrorPeerDirectionTx && p.SiteName != site {
			out = append(out, p)
		}
	}
	return out, nil
}

// refuseFeed refuses what (doing) would make the source pool feed a
// second target cluster, the pool's record naming the first.
func refuseFeed(src side, held, me feed, doing string) error {
	return fmt.Errorf("pool %s on storage %s already feeds target cluster %s (pool %s of storage %s) for environment %s, "+
		"and %s target cluster %s (storage %s). %s. If environment %s no longer exists, remove its record with "+
		"`rados -p %s rm %s` on storage %s: %w",
		src.m.Pool, src.key(), clusterName(held), held.TargetPool, held.Target, held.Environment,
		doing, clusterName(me), me.Target, layoutAdvice1N, held.Environment, src.m.Pool, feedObject, src.key(), sdk.ErrPrecondition)
}

// refuseTxPeers refuses what (doing) would make the source pool feed a
// second target cluster, rbd-mirror daemons of others pulling from it.
func refuseTxPeers(src side, me feed, others []*rbd.MirrorPeerSite, doing string) error {
	var sites, removes []string
	for _, p := range others {
		sites = append(sites, fmt.Sprintf("site %q (tx peer %s)", p.SiteName, p.UUID))
		removes = append(removes, fmt.Sprintf("`rbd mirror pool peer remove %s %s`", src.m.Pool, p.UUID))
	}
	return fmt.Errorf("pool %s on storage %s already feeds another target cluster: rbd-mirror daemons of %s pull from it, "+
		"and %s target cluster %s (storage %s). %s. If no rbd-mirror of those sites pulls from the pool any more "+
		"(`rbd mirror pool status %s --verbose` on storage %s), remove the stale peers with %s: %w",
		src.m.Pool, src.key(), strings.Join(sites, ", "), doing, clusterName(me), me.Target, layoutAdvice1N,
		src.m.Pool, src.key(), strings.Join(removes, ", "), sdk.ErrPrecondition)
}

// clusterName names a target cluster by its site name, and its fsid
// when that differs.
func clusterName(f feed) string {
	switch {
	case f.TargetSite == "":
		return "fsid " + f.TargetFSID
	case f.TargetFSID == "" || f.TargetFSID == f.TargetSite:
		return "site " + f.TargetSite
	}
	return fmt.Sprintf("site %s (fsid %s)", f.TargetSite, f.TargetFSID)
}

// refuseForeignPeer refuses a target pool that pulls from another source
// (N:1 into one pool), naming that source and the environments the
// pool's markers say use it.
func (e *envConns) refuseForeignPeer(ctx context.Context, foreign *rbd.MirrorPeerSite) error {
	users := "no environment this plugin prepared"
	if kv, err := call(ctx, func() (map[string]string, error) { return listPoolMeta(e.dstIO, preparedKey("")) }); err == nil {
		var names []string
		for k, v := range kv {
			var m marker
			if json.Unmarshal([]byte(v), &m) == nil && m.Source != e.src.key() {
				names = append(names, fmt.Sprintf("environment %s (source storage %s)", strings.TrimPrefix(k, preparedKey("")), m.Source))
			}
		}
		if len(names) > 0 {
			sort.Strings(names)
			users = strings.Join(names, ", ")
		}
	}
	p := e.dst.m.Pool
	return fmt.Errorf("target pool %s on storage %s already pulls from another source cluster: its rx peer is site %q "+
		"(uuid %s, client %s), used by %s; storage %s would be a second source. rbd-mirror replicates into a pool from "+
		"one source only, and pairs pools by name, so give each source a pool of its own on this target: site-unique "+
		"pool names at the sources (for example `dr-<site>`), each created under the same name on the target; or tear this "+
		"environment down and prepare it again: a new environment into a pool rbd-mirror already fills takes the plugin's ship path. "+
		"If that peer is stale (no environment uses it), remove it on storage %s with `rbd mirror pool peer remove %s %s`: %w",
		p, e.dst.key(), foreign.SiteName, foreign.UUID, foreign.ClientName, users, e.src.key(), e.dst.key(), p, foreign.UUID, sdk.ErrPrecondition)
}
