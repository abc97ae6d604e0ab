package cephrbd

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/ceph/go-ceph/rbd"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// daemonPollInterval paces the wait for a new rbd-mirror to answer.
const daemonPollInterval = 200 * time.Millisecond

// PrepareEnvironment implements sdk.Backend: the source pool claimed for
// this environment's target cluster (layout_claim.go; refused when it
// feeds another), image-mode mirroring on both pools, the source
// registered as the target pool's peer, the
// environment recorded as prepared in the target pool, and an rbd-mirror
// for the target cluster on this host, ready once it answers and has
// registered on the source pool (rbdmirror_ready.go). It is the
// only call that starts an rbd-mirror: the daemon calls it on the host
// that leads the environment (the plugin declares
// VolumesFollowEnvironment), and ReleaseEnvironment stops it. An
// environment rbd-mirror cannot serve takes the ship path instead
// (ship_path.go): its marker and ship loop only, so none of the above,
// nor the wait for the tx peer, applies to it.
func (b *Backend) PrepareEnvironment(ctx context.Context, env sdk.Environment) error {
	e, err := b.openEnv(ctx, env)
	if err != nil {
		return err
	}
	defer e.close()
	// Check everything that can refuse before changing anything.
	if err := b.preflight(ctx, e, 0); err != nil {
		return err
	}
	// The path: an environment keeps the one it was prepared with; a new
	// one takes the ship path where rbd-mirror cannot serve it
	// (ship_path.go).
	mk, prepared, err := b.preparedMarker(ctx, e.dstIO, env.ID)
	if err != nil {
		return e.deniedOnTarget(err, "read the metadata of pool "+e.dst.m.Pool)
	}
	if prepared && mk.ship() {
		return b.prepareShip(ctx, env, e, "")
	}
	if !prepared {
		why, err := b.shipReason(ctx, env, e)
		if err != nil {
			return err
		}
		if why != "" {
			return b.prepareShip(ctx, env, e, why)
		}
	}
	ours, modes, err := e.checkPreparable(ctx)
	if err != nil {
		return err
	}
	// The last check, and the first write: the source pool becomes this
	// environment's unless it feeds another target cluster (then a new
	// environment, which lost the race for it, takes the ship path).
	if err := b.claimSourcePool(ctx, env, e); err != nil {
		if !prepared && isFeedRefusal(err) {
			return b.prepareShip(ctx, env, e, "another environment claimed the source pool first: "+reason(err))
		}
		return err
	}
	// Nothing refused: now change what needs changing.
	if err := e.enableImageMode(ctx, modes); err != nil {
		return err
	}
	if err := e.setDeleteDelay(ctx); err != nil {
		return err
	}
	if err := b.ensurePeer(ctx, env, e, ours); err != nil {
		return err
	}
	if err := b.migrateLegacy(ctx, e.dstIO, env.ID); err != nil {
		return e.deniedOnTarget(err, "move the records of an earlier version into pool metadata")
	}
	if err := writeMarker(ctx, e.dstIO, env.ID, marker{Source: e.src.key(), Target: e.dst.key(), TargetSite: e.dstSite}); err != nil {
		return e.deniedOnTarget(err, "record the environment as prepared in the metadata of pool "+e.dst.m.Pool)
	}
	if err := b.startDaemon(ctx, env, e.dst, e.dstSite); err != nil {
		return err
	}
	return b.waitTxPeer(ctx, env, e)
}

// checkPreparable refuses, after the preflight (pools of different
// names, a user without a capability it needs, a full target pool), what
// this environment cannot be prepared on: one cluster for both sides, a
// target pool that pulls from another cluster, a pool in pool mode. It
// returns our peer (nil when missing) and both pools' mirror modes.
func (e *envConns) checkPreparable(ctx context.Context) (*rbd.MirrorPeerSite, []rbd.MirrorMode, error) {
	if e.srcSite == e.dstSite {
		return nil, nil, fmt.Errorf("storages %s and %s have the same mirror site name %q (the same cluster?); rbd-mirror needs two clusters: %w",
			e.src.key(), e.dst.key(), e.srcSite, sdk.ErrPrecondition)
	}
	ours, foreign, err := e.peers(ctx)
	if err != nil {
		return nil, nil, err
	}
	if foreign != nil {
		return nil, nil, e.refuseForeignPeer(ctx, foreign)
	}
	var modes []rbd.MirrorMode
	for _, p := range e.pools() {
		mode, err := mirrorMode(ctx, p)
		if err != nil {
			return nil, nil, denied(err, p.s, true, roleOf(p.s, e.src), "read the mirror mode of pool "+p.s.m.Pool, "osd '"+osdCaps(p.s.m.Pool)+"'")
		}
		if mode == rbd.MirrorModePool {
			return nil, nil, fmt.Errorf("pool %s on storage %s mirrors in pool mode (every image); this product needs image mode. "+
				"Switch it with `rbd mirror pool enable %s image` once you know no image relies on pool mode: %w",
				p.s.m.Pool, p.s.key(), p.s.m.Pool, sdk.ErrPrecondition)
		}
		modes = append(modes, mode)
	}
	return ours, modes, nil
}

// enableImageMode turns image-mode mirroring on in the pools (modes as
// checkPreparable read them) that have mirroring disabled.
func (e *envConns) enableImageMode(ctx context.Context, modes []rbd.MirrorMode) error {
	for i, p := range e.pools() {
		if modes[i] != rbd.MirrorModeDisabled {
			continue
		}
		if err := do(ctx, func() error { return rbd.SetMirrorMode(p.io, rbd.MirrorModeImage) }); err != nil {
			return denied(fmt.Errorf("enable image mirroring on pool %s of storage %s: %w", p.s.m.Pool, p.s.key(), err),
				p.s, true, roleOf(p.s, e.src), "enable image mirroring on pool "+p.s.m.Pool, "")
		}
	}
	return nil
}

// ensurePeer registers the source as the rx peer of the target pool
// unless ours is it already, and gives the peer the source's monitors
// and the peer user's name and key.
func (b *Backend) ensurePeer(ctx context.Context, env sdk.Environment, e *envConns, ours *rbd.MirrorPeerSite) error {
	client, key, err := b.peerUser(ctx, e)
	if err != nil {
		return err
	}
	if ours == nil {
		uuid, err := call(ctx, func() (string, error) {
			return rbd.AddMirrorPeerSite(e.dstIO, e.srcSite, client, rbd.MirrorPeerDirectionRx)
		})
		if err != nil {
			return e.deniedOnTarget(fmt.Errorf("add storage %s as mirror peer of pool %s on storage %s: %w", e.src.key(), e.dst.m.Pool, e.dst.key(), err),
				"add a mirror peer to pool "+e.dst.m.Pool)
		}
		ours = &rbd.MirrorPeerSite{UUID: uuid, SiteName: e.srcSite, ClientName: client}
		b.log.Info("added mirror peer", "env", env.ID, "pool", e.dst.m.Pool, "target", e.dst.key(), "peer_site", e.srcSite, "uuid", uuid)
	}
	if ours.ClientName != client {
		// The source's metadata changed (admin credentials given or taken
		// away): rbd-mirror must read the source as the new peer user.
		if err := do(ctx, func() error { return rbd.SetMirrorPeerSiteClientName(e.dstIO, ours.UUID, client) }); err != nil {
			return e.deniedOnTarget(fmt.Errorf("set the user of mirror peer %s on pool %s of storage %s: %w", ours.UUID, e.dst.m.Pool, e.dst.key(), err),
				"change the user of a mirror peer of pool "+e.dst.m.Pool)
		}
	}
	attrs, err := call(ctx, func() (map[string]string, error) { return rbd.GetAttributesMirrorPeerSite(e.dstIO, ours.UUID) })
	if err == nil && attrs["mon_host"] == e.srcMonHost && attrs["key"] == key {
		return nil
	}
	err = do(ctx, func() error {
		return rbd.SetAttributesMirrorPeerSite(e.dstIO, ours.UUID, map[string]string{"mon_host": e.srcMonHost, "key": key})
	})
	if err != nil {
		return e.deniedOnTarget(fmt.Errorf("set the address and key of mirror peer %s on pool %s of storage %s: %w", ours.UUID, e.dst.m.Pool, e.dst.key(), err),
			"set a mirror peer's address and key (config-key set rbd/mirror/peer/...)")
	}
	return nil
}

// deniedOnTarget explains err as denied to the target's user.
func (e *envConns) deniedOnTarget(err error, doing string) error {
	return denied(err, e.dst, true, roleTarget, doing, "")
}

// peerUser is the user the target's rbd-mirror reads the source with,
// and its key (a secret: it goes only into the peer's attributes). With
// admin credentials on the source it is client.rbd-mirror-peer, created
// (or read) there with the least capabilities; without them, the source
// storage's own client.
func (b *Backend) peerUser(ctx context.Context, e *envConns) (client, key string, err error) {
	if !e.src.m.adminGiven {
		key := bareKey("client."+e.src.m.Client, e.src.m.Keyring)
		if key == "" {
			return "", "", fmt.Errorf("the keyring of storage %s holds no key for client.%s: %w", e.src.key(), e.src.m.Client, sdk.ErrPrecondition)
		}
		return "client." + e.src.m.Client, key, nil
	}
	cmd, _ := json.Marshal(map[string]any{
		"prefix": "auth get-or-create", "entity": peerClient,
		"caps": []string{"mon", "profile rbd-mirror-peer", "osd", "profile rbd"}, "format": "json",
	})
	out, err := call(ctx, func() ([]byte, error) {
		out, _, err := e.srcConn.MonCommand(cmd)
		return out, err
	})
	if err != nil {
		return "", "", denied(fmt.Errorf("create user %s on storage %s: %w", peerClient, e.src.key(), err),
			e.src, true, roleSource, "create the peer user "+peerClient+" (auth get-or-create)", "")
	}
	var entries []struct {
		Key string `json:"key"`
	}
	if err := json.Unmarshal(out, &entries); err != nil || len(entries) == 0 || entries[0].Key == "" {
		return "", "", fmt.Errorf("create user %s on storage %s: the monitors' answer holds no key", peerClient, e.src.key())
	}
	return peerClient, entries[0].Key, nil
}

// startDaemon starts (or adopts) the environment's rbd-mirror and waits
// until it answers on its admin socket.
func (b *Backend) startDaemon(ctx context.Context, env sdk.Environment, dst side, site string) error {
	d, err := b.daemon(env, dst, site)
	if err != nil {
		return fmt.Errorf("start rbd-mirror for storage %s: %w", dst.key(), err)
	}
	if err := b.writeHostMarker(env, dst, site); err != nil {
		return err
	}
	for {
		if d.running() {
			if _, err := asokCommand(ctx, d.asok, "rbd mirror status"); err == nil {
				return nil
			}
		}
		if err := sleep(ctx, daemonPollInterval); err != nil {
			return fmt.Errorf("waiting for rbd-mirror of environment %s: %w", env.ID, err)
		}
	}
}
