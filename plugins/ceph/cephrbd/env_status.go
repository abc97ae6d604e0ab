package cephrbd

import (
	"context"
	"fmt"
	"strings"

	"github.com/ceph/go-ceph/rbd"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// EnvironmentStatus implements sdk.Backend: ready when both pools mirror
// in image mode, the source is the target pool's only peer, and the
// plugin's rbd-mirror runs with no foreign one beside it, and nothing
// PrepareEnvironment checks first is amiss (pool names, capabilities,
// room on the target). Not ready, its description says why. Either way,
// Unintended lists the copies in the target pool no volume of the
// environment asked for (unintended.go).
func (b *Backend) EnvironmentStatus(ctx context.Context, env sdk.Environment) (sdk.EnvironmentHealth, error) {
	if err := ctx.Err(); err != nil {
		return sdk.EnvironmentHealth{}, err
	}
	if err := checkEnvID(env); err != nil {
		return sdk.EnvironmentHealth{}, err
	}
	e, err := b.openEnv(ctx, env)
	if isPrecondition(err) {
		// A missing pool, a refused capability: not ready, and why.
		return sdk.EnvironmentHealth{Description: reason(err)}, nil
	}
	if err != nil {
		return sdk.EnvironmentHealth{}, err
	}
	defer e.close()
	mk, ok, err := b.preparedMarker(ctx, e.dstIO, env.ID)
	if err != nil {
		err = e.deniedOnTarget(err, "read the metadata of pool "+e.dst.m.Pool)
		if isPrecondition(err) {
			return sdk.EnvironmentHealth{Description: reason(err)}, nil
		}
		return sdk.EnvironmentHealth{}, err
	}
	// What PrepareEnvironment would refuse makes a prepared environment
	// not ready too: a capability taken away, a pool renamed or full.
	if err := b.preflight(ctx, e, capsRecheck); err != nil {
		if !isPrecondition(err) {
			return sdk.EnvironmentHealth{}, err
		}
		if !ok {
			return sdk.EnvironmentHealth{Description: "the environment is not prepared, and cannot be: " + reason(err)}, nil
		}
		return sdk.EnvironmentHealth{Description: reason(err)}, nil
	}
	if !ok {
		return sdk.EnvironmentHealth{Description: "the environment is not prepared"}, nil
	}
	if mk.ship() {
		return b.shipEnvStatus(ctx, env, e)
	}
	missing, err := e.poolsMissing(ctx)
	if err != nil {
		return sdk.EnvironmentHealth{}, err
	}
	daemon, err := b.daemonMissing(ctx, env, e)
	if err != nil {
		return sdk.EnvironmentHealth{}, err
	}
	missing = append(missing, daemon...)
	unintended, err := e.unintended(ctx, env.ID)
	if err != nil {
		return sdk.EnvironmentHealth{}, err
	}
	if len(missing) > 0 {
		return sdk.EnvironmentHealth{Description: strings.Join(missing, "; "), Unintended: unintended}, nil
	}
	return sdk.EnvironmentHealth{Ready: true, Description: "pools in image mode, peer set, rbd-mirror running", Unintended: unintended}, nil
}

// poolsMissing says what the pools lack: image mode on either side, our
// peer on the target, and a foreign peer there too.
func (e *envConns) poolsMissing(ctx context.Context) ([]string, error) {
	var missing []string
	for _, p := range e.pools() {
		mode, err := mirrorMode(ctx, p)
		if err != nil {
			return nil, err
		}
		if mode != rbd.MirrorModeImage {
			missing = append(missing, fmt.Sprintf("pool %s on storage %s mirrors in mode %s, not image", p.s.m.Pool, p.s.key(), mode))
		}
	}
	ours, foreign, err := e.peers(ctx)
	if err != nil {
		return nil, err
	}
	if ours == nil {
		missing = append(missing, fmt.Sprintf("pool %s on storage %s has no mirror peer for storage %s", e.dst.m.Pool, e.dst.key(), e.src.key()))
	}
	if foreign != nil {
		missing = append(missing, fmt.Sprintf("pool %s on storage %s also pulls from mirror peer site %q (uuid %s)", e.dst.m.Pool, e.dst.key(), foreign.SiteName, foreign.UUID))
	}
	return missing, nil
}

// daemonMissing says what is wrong with the environment's rbd-mirror: not
// running on this host (the one leading the environment runs it), or
// sharing the pool with rbd-mirror instances the plugin does not run.
func (b *Backend) daemonMissing(ctx context.Context, env sdk.Environment, e *envConns) ([]string, error) {
	asoks, err := b.localAsoks(env, e.dst)
	if err != nil {
		return []string{fmt.Sprintf("rbd-mirror for storage %s does not run on this host (PrepareEnvironment starts it; log under %s/log)", e.dst.key(), b.stateDir)}, nil
	}
	known, err := knownInstances(ctx, e.dstIO)
	if err != nil {
		return nil, fmt.Errorf("pool %s on storage %s: %w", e.dst.m.Pool, e.dst.key(), err)
	}
	if foreign := foreignInstances(ctx, asoks, e.dst.m.Pool, known); len(foreign) > 0 {
		return []string{fmt.Sprintf("rbd-mirror instances this plugin does not run (ids %s) replicate pool %s on storage %s: "+
			"they take some of its images, where the plugin can neither pause nor watch them; stop those rbd-mirror daemons "+
			"(the plugin runs its own for this environment)", strings.Join(foreign, ", "), e.dst.m.Pool, e.dst.key())}, nil
	}
	return nil, nil
}
