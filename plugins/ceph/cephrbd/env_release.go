package cephrbd

import (
	"context"
	"fmt"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// ReleaseEnvironment implements sdk.Backend: it stops the rbd-mirror this
// host runs for env, and its supervision, so only the new leader's host
// runs one. Nothing in the clusters changes: the environment stays
// prepared and its paused images paused (their records are in the target
// pool, applied again by the next rbd-mirror).
func (b *Backend) ReleaseEnvironment(ctx context.Context, env sdk.Environment) error {
	if err := checkEnvID(env); err != nil {
		return err
	}
	if err := b.stopShipLoop(ctx, env.ID); err != nil {
		return err
	}
	return b.stopDaemon(ctx, env.ID)
}

// stopDaemon ends the supervision of the environment's rbd-mirror on this
// host and stops the process (the one the supervisor runs, or the one
// its pid file names), if one runs.
func (b *Backend) stopDaemon(ctx context.Context, envID string) error {
	b.mu.Lock()
	d := b.daemons[envID]
	delete(b.daemons, envID)
	b.mu.Unlock()
	asok, pidFile := b.asokPath(envID), b.pidPath(envID)
	pid := livePid(pidFile, asok)
	if d != nil {
		d.quitSupervising()
		if pid == 0 {
			pid = d.currentPid()
		}
	}
	if pid > 0 && pidAlive(pid, asok) {
		if err := terminate(ctx, pid, asok); err != nil {
			return fmt.Errorf("stop rbd-mirror of environment %s: %w", envID, err)
		}
		b.log.Info("stopped rbd-mirror", "env", envID, "pid", pid)
	}
	if d != nil {
		select {
		case <-d.done:
		case <-ctx.Done():
			return fmt.Errorf("stop rbd-mirror of environment %s: %w", envID, ctx.Err())
		}
	}
	return removeFile(pidFile)
}
