package cephrbd

import (
	"context"
	"fmt"
	"time"

	"github.com/ceph/go-ceph/rados"
	"github.com/ceph/go-ceph/rbd"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// A mirror snapshot reaches only the tx peers the source pool lists when
// it is taken (docs/ceph.md). The target's rbd-mirror registers its site
// as one when it first reaches the source pool, some seconds after it
// answers on its admin socket: a volume started before that gets a first
// snapshot its target never receives, and waits for the next scheduled
// one. So PrepareEnvironment is done only once the source pool lists the
// target's site as a tx peer.

// txPeerWait bounds that wait: rbd-mirror that has not reached the
// source by then is stuck (a wrong address or key, the source down).
const txPeerWait = 60 * time.Second

// waitTxPeer waits until the source pool lists the target's site as a
// tx peer, at most txPeerWait; then it answers ErrRetryable saying what
// is missing.
func (b *Backend) waitTxPeer(parent context.Context, env sdk.Environment, e *envConns) error {
	ctx, cancel := context.WithTimeout(parent, txPeerWait)
	defer cancel()
	var last error
	for {
		ok, err := hasTxPeer(ctx, e.srcIO, e.dstSite)
		if ok {
			return nil
		}
		if err != nil {
			last = err
		}
		if sleep(ctx, daemonPollInterval) != nil {
			break
		}
	}
	if err := parent.Err(); err != nil {
		return fmt.Errorf("waiting for rbd-mirror of environment %s to register on pool %s of storage %s: %w", env.ID, e.src.m.Pool, e.src.key(), err)
	}
	seen := ""
	if last != nil {
		seen = fmt.Sprintf(" (last look: %v)", last)
	}
	return fmt.Errorf("rbd-mirror of environment %s runs but has not registered on pool %s of storage %s within %v: the pool lists "+
		"no tx-only peer for site %s%s, so a mirror snapshot taken now would not reach the target; check that it reaches "+
		"storage %s (its log under %s/log, `rbd mirror pool info %s` on the source): %w",
		env.ID, e.src.m.Pool, e.src.key(), txPeerWait, e.dstSite, seen, e.src.key(), b.stateDir, e.src.m.Pool, sdk.ErrRetryable)
}

// hasTxPeer says whether the pool lists site as a tx peer (an rbd-mirror
// of that site pulls from it).
func hasTxPeer(ctx context.Context, io *rados.IOContext, site string) (bool, error) {
	list, err := call(ctx, func() ([]*rbd.MirrorPeerSite, error) { return rbd.ListMirrorPeerSite(io) })
	if err != nil {
		return false, fmt.Errorf("list mirror peers: %w", err)
	}
	for _, p := range list {
		if p.Direction == rbd.MirrorPeerDirectionTx && p.SiteName == site {
			return true, nil
		}
	}
	return false, nil
}
