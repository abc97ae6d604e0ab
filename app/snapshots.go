package app

import (
	"context"
	"fmt"
	"sort"

	"github.com/cdmdr/mirror/core"
	"github.com/cdmdr/mirror/ports"
)

// subscribeSnapshots consumes the cluster manager's snapshot events with a
// durable subscription per subject, shared by all daemons, so each event
// is handled once and events published while every daemon was down are
// delivered later.
func (e *Engine) subscribeSnapshots(ctx context.Context) ([]ports.Subscription, error) {
	var subs []ports.Subscription
	for _, s := range []struct {
		subject string
		deleted bool
	}{{e.cfg.SnapshotCreatedSubject, false}, {e.cfg.SnapshotDeletedSubject, true}} {
		durable := e.cfg.SnapshotDurable
		if s.deleted {
			durable += "-deleted"
		} else {
			durable += "-created"
		}
		sub, err := e.bus.Subscribe(ctx, s.subject, durable, e.onSnapshotEvent(s.deleted))
		if err != nil {
			for _, done := range subs {
				_ = done.Stop()
			}
			return nil, fmt.Errorf("subscribe to %s: %w", s.subject, err)
		}
		subs = append(subs, sub)
	}
	return subs, nil
}

// onSnapshotEvent records a snapshot event next to every mirror volume of
// the event's volume; the volume's leader does the replication. A
// malformed event is reported and dropped (redelivering it cannot help);
// a failed write is redelivered.
func (e *Engine) onSnapshotEvent(deleted bool) ports.Handler {
	return func(ctx context.Context, msg ports.Message) error {
		rec, err := core.DecodeSnapshotEvent(msg.Data)
		if err != nil {
			e.log.Warn("snapshot event dropped", "subject", msg.Subject, "err", err)
			e.report(ctx, ports.LevelWarn, core.Code("snapshot", "failure", "decode_event", core.Cause(err)), msg.Subject, "snapshot event dropped: %v", err)
			return nil
		}
		vols := e.volumesOf(rec)
		if len(vols) == 0 {
			e.log.Debug("snapshot event for a volume not replicated", "cluster_id", rec.ClusterID, "volume_id", rec.VolumeID, "snapshot_id", rec.SnapshotID)
			return nil
		}
		rec.Deleted = deleted
		for _, v := range vols {
			ref := core.SnapshotRef{Volume: v, SnapshotID: rec.SnapshotID}
			if !deleted {
				if old, ok := e.cache.get(core.SnapshotKey(ref)); ok {
					if r, err := core.DecodeSnapshotRecord(ref, old); err == nil && !r.Deleted {
						continue // already recorded (a redelivery)
					}
				}
			}
			if _, err := e.kv.Put(ctx, core.SnapshotKey(ref), rec.Encode()); err != nil {
				return fmt.Errorf("record snapshot %s: %w", core.SnapshotKey(ref), err)
			}
			e.log.Info("snapshot recorded", "snapshot", core.SnapshotKey(ref), "deleted", deleted)
		}
		return nil
	}
}

// volumesOf finds the mirror volumes replicating the event's volume.
func (e *Engine) volumesOf(rec core.SnapshotRecord) []core.VolumeRef {
	var out []core.VolumeRef
	for _, kv := range e.cache.list(core.VolumePrefix) {
		pk, err := core.ParseKey(kv.Key)
		if err != nil || pk.Kind != core.KindVolume || pk.Volume.VolumeID != rec.VolumeID {
			continue
		}
		mv, err := core.DecodeMirrorVolume(pk.Volume, kv.Value)
		if err != nil || mv.SourceVolume.ClusterID != rec.ClusterID || mv.SourceVolume.VolumeUUID != rec.VolumeUUID {
			continue
		}
		out = append(out, pk.Volume)
	}
	return out
}

// reconcileSnapshots drives each snapshot record of the volume.
func (r *volumeReconciler) reconcileSnapshots(ctx context.Context, lead ports.Leadership, b ports.StorageBackend, vol ports.Volume, v volumeView) {
	ids := make([]uint64, 0, len(v.snapshots))
	for id := range v.snapshots {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	for _, id := range ids {
		if ctx.Err() != nil {
			return
		}
		sv := v.snapshots[id]
		if sv.record == nil {
			continue // a status without its record: left by a removal in progress
		}
		ref := core.SnapshotRef{Volume: r.ref, SnapshotID: id}
		if err := r.reconcileSnapshot(ctx, lead, b, vol, ref, sv); err != nil {
			r.log.Warn("snapshot reconcile failed", "snapshot", core.SnapshotKey(ref), "err", err)
		}
	}
}

func (r *volumeReconciler) reconcileSnapshot(ctx context.Context, lead ports.Leadership, b ports.StorageBackend, vol ports.Volume, ref core.SnapshotRef, sv snapshotView) error {
	rec, err := core.DecodeSnapshotRecord(ref, sv.record)
	if err != nil {
		return r.writeSnapshot(ctx, lead, ref, core.Status{StateCode: core.SnapshotError, ErrorReason: core.FailureReason("snapshot", "decode_snapshot", err)})
	}
	volState := core.StateNone
	if r.status != nil {
		volState = r.status.StateCode
	}
	in := core.SnapshotInput{Record: rec, Status: sv.status, VolumeState: volState}
	snap := core.BackendSnapshot(vol, rec)
	if core.SnapshotNeedsObservation(in) {
		octx, cancel := context.WithTimeout(ctx, r.e.cfg.ActionTimeout)
		obs, err := b.SnapshotStatus(octx, snap)
		cancel()
		if err != nil {
			in.ObserveErr = err
		} else {
			in.Observed = &obs
		}
	}
	plan := core.PlanSnapshot(in)
	if plan.Write != nil {
		if err := r.writeSnapshot(ctx, lead, ref, *plan.Write); err != nil {
			return err
		}
	}
	out := core.Outcome{}
	if plan.Action != core.SnapActNone {
		actx, cancel := context.WithTimeout(ctx, r.e.cfg.ActionTimeout)
		if plan.Action == core.SnapActAdd {
			err = b.AddSnapshot(actx, snap)
		} else {
			err = b.RemoveSnapshot(actx, snap)
		}
		cancel()
		if err != nil {
			out = in.Failed(plan, err)
		} else {
			out = plan.OnSuccess
		}
	}
	if out.Write != nil {
		if err := r.writeSnapshot(ctx, lead, ref, *out.Write); err != nil {
			return err
		}
	}
	if out.Finish {
		if err := lead.Delete(ctx, []string{core.SnapshotKey(ref), core.SnapshotStatusKey(ref)}, nil); err != nil {
			return fmt.Errorf("delete snapshot keys: %w", err)
		}
		delete(r.snaps, ref.SnapshotID)
		// Until the cache has seen the removal, read the store.
		if _, rev, err := r.e.kv.List(ctx, core.SnapshotStatusKey(ref)); err == nil {
			r.removedRev = rev
		} else {
			r.loaded = false
		}
		r.log.Info("snapshot removed", "snapshot", core.SnapshotKey(ref))
	}
	return nil
}

// writeSnapshot puts a snapshot status (fenced) unless it says nothing new.
func (r *volumeReconciler) writeSnapshot(ctx context.Context, lead ports.Leadership, ref core.SnapshotRef, st core.Status) error {
	st.Owner = r.e.election.Identity()
	if old := r.snaps[ref.SnapshotID]; old != nil && old.Same(st) {
		return nil
	}
	now := r.e.clock.Now().UTC()
	st.UpdatedAt = &now
	if err := lead.Put(ctx, core.SnapshotStatusKey(ref), st.Encode()); err != nil {
		return fmt.Errorf("write snapshot status: %w", err)
	}
	r.snaps[ref.SnapshotID] = &st
	if st.ErrorReason != nil {
		r.e.report(ctx, ports.LevelError, st.ErrorReason.Code, core.SnapshotKey(ref), "%s", st.ErrorReason.Contents)
	}
	return nil
}
