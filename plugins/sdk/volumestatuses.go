package sdk

import (
	"context"
	"fmt"
	"sync"
)

// OneByOneCalls is how many VolumeStatus calls VolumeStatusesOneByOne
// makes at a time.
const OneByOneCalls = 8

// VolumeStatusesOneByOne answers Backend.VolumeStatuses with one
// b.VolumeStatus per volume, at most OneByOneCalls at a time: for a
// storage that has no read for many volumes at once.
//
//	func (b *Backend) VolumeStatuses(ctx context.Context, env sdk.Environment, vols []sdk.Volume) ([]sdk.VolumeReplication, error) {
//		return sdk.VolumeStatusesOneByOne(ctx, b, env, vols)
//	}
//
// The first error ends the calls still running and is returned, naming
// its volume; when ctx ends, it returns promptly with an error wrapping
// ctx.Err().
func VolumeStatusesOneByOne(ctx context.Context, b Backend, env Environment, vols []Volume) ([]VolumeReplication, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("volume statuses in environment %s: %w", env.ID, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	reps := make([]VolumeReplication, len(vols))
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	slots := make(chan struct{}, OneByOneCalls)
	for i, vol := range vols {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-slots }()
			rep, err := b.VolumeStatus(ctx, vol)
			if err != nil {
				once.Do(func() { first = fmt.Errorf("volume status of %s: %w", vol.VolumeUUID, err) })
				cancel()
				return
			}
			reps[i] = rep
		})
	}
	wg.Wait()
	if first != nil {
		return nil, fmt.Errorf("volume statuses in environment %s: %w", env.ID, first)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("volume statuses in environment %s: %w", env.ID, err)
	}
	return reps, nil
}
