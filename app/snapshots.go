package app

import (
	"context"
	"fmt"
	"maps"
	"slices"

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
			e.report(ctx, ports.LevelWarn, core.Code(core.SubjectSnapshot, "failure", "decode_event", core.Cause(err)), msg.Subject, "snapshot event dropped: %v", err)
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

// snapshotsState sums up a volume's snapshot records after a reconcile.
type snapshotsState int

const (
	// snapshotsSettled: every record is a recovery point on the target (or
	// there is none).
	snapshotsSettled snapshotsState = iota
	// snapshotsFailed: one is in error; it is retried at the poll pace.
	snapshotsFailed
	// snapshotsPending: one is on its way (mirroring, deleting): the DR
	// manager waits on it, so it is looked at often.
	snapshotsPending
)

// reconcileSnapshots drives each snapshot record of the volume, whose
// status is now volStatus, and says how they stand.
func (e *Engine) reconcileSnapshots(ctx context.Context, lead ports.Leadership, b ports.StorageBackend, vol ports.Volume, ref core.VolumeRef, snaps map[uint64]snapshotKeys, volStatus *core.Status) snapshotsState {
	volState := core.StateNone
	if volStatus != nil {
		volState = volStatus.StateCode
	}
	sum := snapshotsSettled
	for _, id := range slices.Sorted(maps.Keys(snaps)) {
		if ctx.Err() != nil {
			return snapshotsPending
		}
		sk := snaps[id]
		if sk.record == nil {
			continue // a status without its record: left by a removal in progress
		}
		sref := core.SnapshotRef{Volume: ref, SnapshotID: id}
		st, err := e.reconcileSnapshot(ctx, lead, b, vol, sref, sk, volState)
		switch {
		case err != nil:
			e.log.Warn("snapshot reconcile failed", "snapshot", core.SnapshotKey(sref), "err", err)
			sum = max(sum, snapshotsFailed)
		case st == nil || st.StateCode == core.SnapshotMirroring || st.StateCode == core.SnapshotDeleting:
			sum = snapshotsPending
		case st.StateCode == core.SnapshotError:
			sum = max(sum, snapshotsFailed)
		}
	}
	return sum
}

// reconcileSnapshot drives one snapshot record and returns its status
// afterwards (nil once its keys are deleted).
func (e *Engine) reconcileSnapshot(ctx context.Context, lead ports.Leadership, b ports.StorageBackend, vol ports.Volume, ref core.SnapshotRef, sk snapshotKeys, volState core.State) (*core.Status, error) {
	to := &statusTarget{key: core.SnapshotStatusKey(ref), subject: core.SubjectSnapshot, event: core.SnapshotKey(ref), current: sk.status}
	rec, err := core.DecodeSnapshotRecord(ref, sk.record)
	if err != nil {
		err := e.writeStatus(ctx, lead, to, core.Status{StateCode: core.SnapshotError, ErrorReason: core.FailureReason(core.SubjectSnapshot, "decode_snapshot", err)})
		return to.current, err
	}
	in := core.SnapshotInput{Record: rec, Status: sk.status, VolumeState: volState}
	snap := core.BackendSnapshot(vol, rec)
	plan := core.PlanSnapshot(in)
	if plan.Observe {
		in.Observed, in.ObserveErr = observe(ctx, e.cfg.ActionTimeout, func(ctx context.Context) (ports.SnapshotReplication, error) {
			return b.SnapshotStatus(ctx, snap)
		})
		plan = core.PlanSnapshot(in)
	}
	out, _, err := e.execute(ctx, lead, to, plan, func(ctx context.Context) error {
		if plan.Action == core.ActAddSnapshot {
			return b.AddSnapshot(ctx, snap)
		}
		return b.RemoveSnapshot(ctx, snap)
	})
	if err != nil {
		return to.current, err
	}
	if out.Finish {
		if err := e.deleteKeys(ctx, lead, []string{core.SnapshotKey(ref), core.SnapshotStatusKey(ref)}, nil); err != nil {
			return to.current, fmt.Errorf("delete snapshot keys: %w", err)
		}
		e.log.Info("snapshot removed", "snapshot", core.SnapshotKey(ref))
		return &core.Status{StateCode: core.SnapshotMirrored}, nil // gone: nothing left to wait for
	}
	return to.current, nil
}
