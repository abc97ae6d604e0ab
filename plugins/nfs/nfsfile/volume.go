package nfsfile

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/cdmdr/mirror/plugins/nfs/agentproto"
	"github.com/cdmdr/mirror/plugins/sdk"
)

// StartVolume implements sdk.Backend: the volume's replication record
// goes into the target directory and this host's sync loop starts; a
// paused volume resumes.
func (b *Backend) StartVolume(ctx context.Context, vol sdk.Volume) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	tgt, err := parseTarget(vol.Environment.Target)
	if err != nil {
		return fmt.Errorf("start %s: %w", volumeName(vol.VolumeUUID), err)
	}
	if ok, err := exists(environmentPath(tgt.dir, vol.Environment.ID)); err != nil || !ok {
		return fmt.Errorf("start %s: environment %s is not prepared in %s: %w", volumeName(vol.VolumeUUID), vol.Environment.ID, tgt.dir, sdk.ErrPrecondition)
	}
	if err := b.probeSource(ctx, vol, volumeName(vol.VolumeUUID)); err != nil {
		return fmt.Errorf("start %s: %w", volumeName(vol.VolumeUUID), err)
	}
	var rec replication
	found, err := readJSON(replicationPath(tgt.dir, vol.VolumeUUID), &rec)
	if err != nil {
		return fmt.Errorf("start %s: %w", volumeName(vol.VolumeUUID), err)
	}
	if found && rec.Environment != vol.Environment.ID {
		return fmt.Errorf("start %s: it already replicates into %s for environment %s: %w", volumeName(vol.VolumeUUID), tgt.dir, rec.Environment, sdk.ErrPrecondition)
	}
	if !found || rec.Paused || rec.Agent != netJoin(vol.SourceAgent) {
		if !found {
			rec = replication{Environment: vol.Environment.ID, VolumeID: vol.VolumeID, Started: b.now().UTC()}
		}
		rec.Agent, rec.Paused = netJoin(vol.SourceAgent), false
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := writeJSON(replicationPath(tgt.dir, vol.VolumeUUID), rec); err != nil {
			return fmt.Errorf("start %s: record it in %s: %w", volumeName(vol.VolumeUUID), tgt.dir, err)
		}
	}
	b.startRunner(vol)
	return nil
}

// VolumeStatus implements sdk.Backend.
func (b *Backend) VolumeStatus(ctx context.Context, vol sdk.Volume) (sdk.VolumeReplication, error) {
	if err := ctx.Err(); err != nil {
		return sdk.VolumeReplication{}, err
	}
	tgt, err := parseTarget(vol.Environment.Target)
	if err != nil {
		return sdk.VolumeReplication{}, fmt.Errorf("status of %s: %w", volumeName(vol.VolumeUUID), err)
	}
	copyPath := filepath.Join(tgt.dir, volumeName(vol.VolumeUUID))
	var rec replication
	found, err := readJSON(replicationPath(tgt.dir, vol.VolumeUUID), &rec)
	if err != nil {
		return sdk.VolumeReplication{}, fmt.Errorf("status of %s: %w", volumeName(vol.VolumeUUID), err)
	}
	if !found {
		ok, err := exists(copyPath)
		if err != nil {
			return sdk.VolumeReplication{}, fmt.Errorf("status of %s: %w", volumeName(vol.VolumeUUID), err)
		}
		return sdk.VolumeReplication{State: sdk.ReplicationAbsent, TargetExists: ok}, nil
	}
	cs, lastErr, err := b.copyStatusOf(tgt, vol.VolumeUUID)
	if err != nil {
		return sdk.VolumeReplication{}, fmt.Errorf("status of %s: %w", volumeName(vol.VolumeUUID), err)
	}
	out := sdk.VolumeReplication{TargetExists: cs.complete, LastSyncTime: cs.lastSync}
	if !cs.lastSync.IsZero() {
		out.Lag = fmt.Sprintf("%s since the last complete sync", b.now().Sub(cs.lastSync).Round(time.Second))
	}
	switch {
	case rec.Paused && !rec.Stopping:
		out.State = sdk.ReplicationPaused
	case !cs.complete:
		out.State, out.Progress = sdk.ReplicationSyncing, cs.progress
	case errors.Is(lastErr, agentproto.ErrNotFound):
		out.State = sdk.ReplicationFailed
	default:
		out.State = sdk.ReplicationReplaying
	}
	if lastErr != nil {
		out.Description = "the last sync failed, retrying: " + lastErr.Error()
	}
	return out, nil
}

// copyStatusOf reads the copy's status: from this host's loop when it
// holds the copy, else from the target directory.
func (b *Backend) copyStatusOf(tgt target, uuid string) (copyStatus, error, error) {
	if r := b.runnerOf(uuid); r != nil {
		if cs, ok, lastErr := r.report(); ok {
			return cs, lastErr, nil
		}
	}
	cs, err := peekCopy(tgt, uuid)
	var lastErr error
	if r := b.runnerOf(uuid); r != nil {
		_, _, lastErr = r.report()
	}
	return cs, lastErr, err
}

// PauseVolume implements sdk.Backend: the record says paused, so no host
// syncs it, and this host's loop stops; the copy keeps its last complete
// sync.
func (b *Backend) PauseVolume(ctx context.Context, vol sdk.Volume) error {
	return b.setPaused(ctx, vol, true)
}

// ResumeVolume implements sdk.Backend.
func (b *Backend) ResumeVolume(ctx context.Context, vol sdk.Volume) error {
	return b.setPaused(ctx, vol, false)
}

func (b *Backend) setPaused(ctx context.Context, vol sdk.Volume, paused bool) error {
	verb := map[bool]string{true: "pause", false: "resume"}[paused]
	if err := ctx.Err(); err != nil {
		return err
	}
	tgt, err := parseTarget(vol.Environment.Target)
	if err != nil {
		return fmt.Errorf("%s %s: %w", verb, volumeName(vol.VolumeUUID), err)
	}
	var rec replication
	found, err := readJSON(replicationPath(tgt.dir, vol.VolumeUUID), &rec)
	if err != nil {
		return fmt.Errorf("%s %s: %w", verb, volumeName(vol.VolumeUUID), err)
	}
	if !found {
		return fmt.Errorf("%s %s: it is not replicated into %s: %w", verb, volumeName(vol.VolumeUUID), tgt.dir, sdk.ErrNotFound)
	}
	if rec.Paused != paused {
		rec.Paused = paused
		if err := writeJSON(replicationPath(tgt.dir, vol.VolumeUUID), rec); err != nil {
			return fmt.Errorf("%s %s: %w", verb, volumeName(vol.VolumeUUID), err)
		}
	}
	switch {
	case paused && !rec.Stopping: // a stop waiting for the first copy outranks the pause
		b.stopRunner(vol.VolumeUUID)
	case !paused:
		b.startRunner(vol)
	}
	return nil
}

// StopVolume implements sdk.Backend: once the copy is complete, the loop
// stops and the copy stays as a standalone volume file, its state gone.
// While the first copy runs it only lets it go on.
func (b *Backend) StopVolume(ctx context.Context, vol sdk.Volume) (sdk.CleanupReport, error) {
	name := volumeName(vol.VolumeUUID)
	if err := ctx.Err(); err != nil {
		return sdk.CleanupReport{}, err
	}
	tgt, err := parseTarget(vol.Environment.Target)
	if err != nil {
		return sdk.CleanupReport{}, fmt.Errorf("stop %s: %w", name, err)
	}
	var rec replication
	found, err := readJSON(replicationPath(tgt.dir, vol.VolumeUUID), &rec)
	if err != nil {
		return sdk.CleanupReport{}, fmt.Errorf("stop %s: %w", name, err)
	}
	if !found {
		return sdk.CleanupReport{}, nil
	}
	cs, _, err := b.copyStatusOf(tgt, vol.VolumeUUID)
	if err != nil {
		return sdk.CleanupReport{}, fmt.Errorf("stop %s: %w", name, err)
	}
	if !cs.complete {
		if perr := b.probeSource(ctx, vol, name); perr != nil && !errors.Is(perr, sdk.ErrNotFound) && ctx.Err() == nil {
			return sdk.CleanupReport{}, fmt.Errorf("stop %s: the first copy is %d%% done and the source cannot be read (%v): an incomplete copy cannot be kept: %w",
				name, cs.progress, perr, sdk.ErrPrecondition)
		}
		if !rec.Stopping {
			rec.Stopping = true
			if err := writeJSON(replicationPath(tgt.dir, vol.VolumeUUID), rec); err != nil {
				return sdk.CleanupReport{}, fmt.Errorf("stop %s: %w", name, err)
			}
		}
		b.startRunner(vol)
		return sdk.CleanupReport{}, fmt.Errorf("stop %s: the first copy is %d%% done; the copy is kept once complete: %w", name, cs.progress, sdk.ErrInProgress)
	}
	defer b.endRunner(vol.VolumeUUID)()
	if err := keepStandalone(tgt, vol.VolumeUUID); err != nil {
		return sdk.CleanupReport{}, fmt.Errorf("stop %s: %w", name, err)
	}
	if err := removeDurably(volumeStateDir(tgt.dir, vol.VolumeUUID)); err != nil {
		return sdk.CleanupReport{}, fmt.Errorf("stop %s: %w", name, err)
	}
	b.log.Info("stopped; the copy is a standalone volume", "volume", name, "path", filepath.Join(tgt.dir, name))
	// Nothing of the plugin's is on the source, but a source the stop
	// could not read may come back with its own, older volume file:
	// two diverging copies, which the operator must know of.
	perr := b.probeSource(ctx, vol, name)
	if perr == nil || errors.Is(perr, sdk.ErrNotFound) || ctx.Err() != nil {
		return sdk.CleanupReport{}, nil
	}
	lo := leftover{Kind: "volume", Name: fmt.Sprintf("file %s on source storage %s (agent %s)", name, storageName(vol.Environment.Source), netJoin(vol.SourceAgent)),
		Description: fmt.Sprintf("the source could not be read when the volume was stopped (%v): if the site returns, its file is an older copy that nothing replicates; the copy kept in %s is the volume now", perr, tgt.dir),
		Remedy:      "when the source site is back, keep or delete its " + name + " as the recovery plan says",
		When:        b.now().UTC()}
	rep := sdk.CleanupReport{Leftovers: []string{lo.Name + ": " + lo.Description}}
	if err := writeJSON(leftoverPath(tgt.dir, vol.VolumeUUID), lo); err != nil {
		rep.Leftovers = append(rep.Leftovers, fmt.Sprintf("the leftover record of %s could not be written: %v", name, err))
	}
	return rep, nil
}

// DeleteTarget implements sdk.Backend: the loop stops, and the copy, its
// recovery points and its state are deleted.
func (b *Backend) DeleteTarget(ctx context.Context, vol sdk.Volume) error {
	name := volumeName(vol.VolumeUUID)
	if err := ctx.Err(); err != nil {
		return err
	}
	tgt, err := parseTarget(vol.Environment.Target)
	if err != nil {
		return fmt.Errorf("delete target of %s: %w", name, err)
	}
	defer b.endRunner(vol.VolumeUUID)()
	if err := b.deleteCopy(tgt, vol.VolumeUUID); err != nil {
		return fmt.Errorf("delete target of %s: %w", name, err)
	}
	return nil
}

// deleteCopy deletes a volume's copy, recovery points and state.
func (b *Backend) deleteCopy(tgt target, uuid string) error {
	points, _ := filepath.Glob(filepath.Join(tgt.dir, pointName(uuid, "*")))
	for _, p := range points {
		if err := removeDurably(p); err != nil {
			return err
		}
	}
	if err := removeCopy(tgt, uuid); err != nil {
		return err
	}
	if err := removeDurably(volumeStateDir(tgt.dir, uuid)); err != nil {
		return err
	}
	return removeDurably(leftoverPath(tgt.dir, uuid))
}

// DestroyVolume implements sdk.Backend: the replicated copy goes only
// when the source volume is read intact during this call; otherwise it
// stays, standalone, recorded as a leftover.
func (b *Backend) DestroyVolume(ctx context.Context, vol sdk.Volume) (sdk.CleanupReport, error) {
	name := volumeName(vol.VolumeUUID)
	if err := ctx.Err(); err != nil {
		return sdk.CleanupReport{}, err
	}
	tgt, err := parseTarget(vol.Environment.Target)
	if err != nil {
		return sdk.CleanupReport{}, fmt.Errorf("destroy %s: %w", name, err)
	}
	defer b.endRunner(vol.VolumeUUID)()
	var rec replication
	found, err := readJSON(replicationPath(tgt.dir, vol.VolumeUUID), &rec)
	if err != nil {
		return sdk.CleanupReport{}, fmt.Errorf("destroy %s: %w", name, err)
	}
	if !found {
		return sdk.CleanupReport{}, nil // nothing replicates; a standalone copy is the user's
	}
	cs, err := peekCopy(tgt, vol.VolumeUUID)
	if err != nil {
		return sdk.CleanupReport{}, fmt.Errorf("destroy %s: %w", name, err)
	}
	perr := b.probeSource(ctx, vol, name)
	if perr == nil || !cs.complete {
		// The source is intact, or the target holds no complete copy:
		// the source is the last copy either way.
		if err := b.deleteCopy(tgt, vol.VolumeUUID); err != nil {
			return sdk.CleanupReport{Leftovers: []string{fmt.Sprintf("copy %s in %s: %v", name, tgt.dir, err)}}, nil
		}
		return sdk.CleanupReport{}, nil
	}
	why := fmt.Sprintf("the source volume could not be read intact (%v)", perr)
	if err := keepStandalone(tgt, vol.VolumeUUID); err != nil {
		return sdk.CleanupReport{Leftovers: []string{fmt.Sprintf("copy %s in %s kept (%s), but its sync state could not be cleared: %v", name, tgt.dir, why, err)}}, nil
	}
	lo := leftover{Kind: "copy", Name: fmt.Sprintf("file %s in %s", name, tgt.dir),
		Description: "kept by a destroy as the last copy of the volume: " + why,
		Remedy:      fmt.Sprintf("once the source volume is safe, delete it: rm %s", filepath.Join(tgt.dir, name)),
		When:        b.now().UTC()}
	_ = removeDurably(volumeStateDir(tgt.dir, vol.VolumeUUID))
	rep := sdk.CleanupReport{Leftovers: []string{fmt.Sprintf("copy %s in %s kept as a standalone file: %s", name, tgt.dir, why)}}
	if err := writeJSON(leftoverPath(tgt.dir, vol.VolumeUUID), lo); err != nil {
		rep.Leftovers = append(rep.Leftovers, fmt.Sprintf("the leftover record of %s could not be written: %v", name, err))
	}
	return rep, nil
}

// probeSource checks that file name exists on vol's source, through the
// agent, within the probe timeout.
func (b *Backend) probeSource(ctx context.Context, vol sdk.Volume, name string) error {
	src, err := sourceClient(vol)
	if err != nil {
		return err
	}
	defer src.Close()
	ctx, cancel := context.WithTimeout(ctx, b.probe)
	defer cancel()
	if _, err := src.Blocks(ctx, name, agentproto.DefaultBlockSize, 0, 0, nil, func(agentproto.Block) error { return nil }); err != nil {
		if errors.Is(err, agentproto.ErrNotFound) {
			return fmt.Errorf("%s is not on the source storage (agent %s): %w", name, netJoin(vol.SourceAgent), sdk.ErrNotFound)
		}
		return fmt.Errorf("read %s through agent %s: %w", name, netJoin(vol.SourceAgent), err)
	}
	return nil
}
