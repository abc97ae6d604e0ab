package cephrbd

import (
	"context"
	"os"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// ReleaseEnvironment implements sdk.Backend: it stops the rbd-mirror this
// host runs for env, so only the new leader's host runs one. Nothing in
// the clusters changes.
func (b *Backend) ReleaseEnvironment(ctx context.Context, env sdk.Environment) error {
	if err := checkEnvID(env); err != nil {
		return err
	}
	b.mu.Lock()
	_, running := b.daemons[env.ID]
	b.mu.Unlock()
	if _, err := os.Stat(b.pidPath(env.ID)); !running && err != nil {
		return nil // nothing runs here for env
	}
	dst, err := b.side(env.Target)
	if err != nil {
		return err
	}
	return b.stopDaemon(ctx, env, dst)
}
