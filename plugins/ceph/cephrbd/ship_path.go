package cephrbd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// Which way an environment replicates (marker.Path), chosen by its first
// PrepareEnvironment and kept for as long as it is prepared:
//
//   - rbd-mirror (Path ""), where it can serve: the source pool feeds no
//     other target cluster, and the target pool pulls from no other
//     source. That environment claims the source pool (layout_claim.go).
//   - the ship loop (Path pathShip, ship_loop.go), where rbd-mirror would
//     serve wrongly: the source pool already feeds another target cluster
//     (1:N: rbd-mirror would copy every mirror-enabled image to both), or
//     the target pool already pulls from another source through
//     rbd-mirror (N:1 into one pool: one rx peer per pool). A ship
//     environment claims nothing, registers no peer, enables no mirroring
//     and runs no rbd-mirror: the plugin copies each of its volumes by
//     snapshot diffs (ship.go).

// feedRefusal is claimSourcePool's refusal because the source pool feeds
// another target cluster: a prepare that lost the race for the pool to
// another environment's takes the ship path instead.
type feedRefusal struct{ error }

func (f feedRefusal) Unwrap() error { return f.error }

// shipReason says why a new environment cannot be served by rbd-mirror,
// "" when it can.
func (b *Backend) shipReason(ctx context.Context, env sdk.Environment, e *envConns) (string, error) {
	me, err := e.wantFeed(env.ID)
	if err != nil {
		return "", err
	}
	held, ok, err := readFeed(ctx, e.srcIO)
	if err != nil {
		return "", e.deniedOnSource(err, "read object "+feedObject+" of pool "+e.src.m.Pool)
	}
	if ok && held.Environment != env.ID && !held.sameCluster(me) {
		return fmt.Sprintf("source pool %s on storage %s feeds target cluster %s for environment %s through rbd-mirror",
			e.src.m.Pool, e.src.key(), clusterName(held), held.Environment), nil
	}
	if !ok {
		others, err := otherTxPeers(ctx, e.srcIO, e.dstSite)
		if err != nil {
			return "", e.deniedOnSource(fmt.Errorf("pool %s on storage %s: %w", e.src.m.Pool, e.src.key(), err), "list the mirror peers of pool "+e.src.m.Pool)
		}
		if len(others) > 0 {
			return fmt.Sprintf("rbd-mirror daemons of site %q pull from source pool %s on storage %s", others[0].SiteName, e.src.m.Pool, e.src.key()), nil
		}
	}
	_, foreign, err := e.peers(ctx)
	if err != nil {
		return "", err
	}
	if foreign != nil {
		return fmt.Sprintf("target pool %s on storage %s pulls from site %q through rbd-mirror", e.dst.m.Pool, e.dst.key(), foreign.SiteName), nil
	}
	kv, err := call(ctx, func() (map[string]string, error) { return listPoolMeta(e.dstIO, preparedKey("")) })
	if err != nil {
		return "", e.deniedOnTarget(err, "read the metadata of pool "+e.dst.m.Pool)
	}
	var others []string
	for k, v := range kv {
		var m marker
		if id := strings.TrimPrefix(k, preparedKey("")); id != env.ID && json.Unmarshal([]byte(v), &m) == nil && !m.ship() && m.Source != e.src.key() {
			others = append(others, fmt.Sprintf("environment %s (source storage %s)", id, m.Source))
		}
	}
	if len(others) > 0 {
		sort.Strings(others)
		return fmt.Sprintf("target pool %s on storage %s is the rbd-mirror target of %s", e.dst.m.Pool, e.dst.key(), strings.Join(others, ", ")), nil
	}
	return "", nil
}

// prepareShip prepares env for the ship path: its marker, and its ship
// loop on this host (the one leading the environment).
func (b *Backend) prepareShip(ctx context.Context, env sdk.Environment, e *envConns, why string) error {
	if e.srcSite == e.dstSite {
		return fmt.Errorf("storages %s and %s have the same mirror site name %q (the same cluster?); replication needs two clusters: %w",
			e.src.key(), e.dst.key(), e.srcSite, sdk.ErrPrecondition)
	}
	if err := writeMarker(ctx, e.dstIO, env.ID, marker{Source: e.src.key(), Target: e.dst.key(), TargetSite: e.dstSite, Path: pathShip}); err != nil {
		return e.deniedOnTarget(err, "record the environment as prepared in the metadata of pool "+e.dst.m.Pool)
	}
	if why != "" {
		b.log.Info("environment served by the ship path", "env", env.ID, "why", why)
	}
	interval, err := shipInterval(e.dst.m.MirrorShipInterval)
	if err != nil {
		return err
	}
	b.startShipLoop(env, interval)
	return nil
}

// isFeedRefusal says whether err is claimSourcePool's refusal of a pool
// that feeds another target cluster.
func isFeedRefusal(err error) bool {
	var f feedRefusal
	return errors.As(err, &f)
}
