package cephrbd

import (
	"context"
	"fmt"
	"strconv"
	"time"
)

// rbd-mirror moves a replica it deletes (the source disabled mirroring
// of the image, a resync) to the trash, deferred by the image config
// rbd_mirroring_delete_delay; at 0, Ceph's default, the replica is gone
// at once. PrepareEnvironment sets it for the target pool as a pool-level
// config override (the pool metadata key below, what `rbd config pool
// set` writes), so an accidental disable can be undone with `rbd trash
// restore` for a while. The storage's metadata mirror_delete_delay sets
// it: seconds or a Go duration, "0" to disable.

// deleteDelayKey is the pool metadata key of the pool-level override.
const deleteDelayKey = "conf_rbd_mirroring_delete_delay"

// defaultDeleteDelay is one day.
const defaultDeleteDelay = 24 * time.Hour

// deleteDelay reads mirror_delete_delay: "" is the default, a whole
// number is seconds, anything else a Go duration of whole seconds, never
// negative.
func deleteDelay(s string) (time.Duration, error) {
	if s == "" {
		return defaultDeleteDelay, nil
	}
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		return 0, fmt.Errorf("want seconds (86400) or a duration (24h)")
	case d < 0:
		return 0, fmt.Errorf("want a delay of 0 or more")
	case d%time.Second != 0:
		return 0, fmt.Errorf("want whole seconds")
	}
	return d, nil
}

// setDeleteDelay writes the target pool's delete delay.
func (e *envConns) setDeleteDelay(ctx context.Context) error {
	d, err := deleteDelay(e.dst.m.MirrorDeleteDelay)
	if err != nil {
		return err // parseMeta refused it already
	}
	secs := strconv.FormatInt(int64(d/time.Second), 10)
	if err := do(ctx, func() error { return setPoolMeta(e.dstIO, deleteDelayKey, secs) }); err != nil {
		return e.deniedOnTarget(fmt.Errorf("set %s of pool %s: %w", deleteDelayKey, e.dst.m.Pool, err),
			"set the delete delay of mirrored images in the metadata of pool "+e.dst.m.Pool)
	}
	return nil
}
