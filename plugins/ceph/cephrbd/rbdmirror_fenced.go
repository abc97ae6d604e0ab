package cephrbd

import (
	"context"
	"syscall"
	"time"
)

// A keep that fenced one of the environment's rbd-mirror instances
// (keep_fence.go) left that process blocklisted on the target cluster for
// blocklistExpire: it can replicate nothing there until its pool replayer
// starts over with a new client. rbd-mirror does that by itself once it
// notices the blocklist, but Pacific's sometimes never does: seen after a
// fence with the source frozen, not one "restarting blocklisted pool
// replayer" in the minutes after the source came back, and every volume
// still mirroring stalled. So the fenced process's supervisor, on
// whichever host runs it, replaces it: killed at once (it can write
// nothing to the target any more, so a clean stop saves nothing), and
// started again by supervise.

// fencedPoll is how often a supervisor reads its instances' records.
const fencedPoll = 2 * time.Second

// replaceFenced kills the supervised rbd-mirror once a record of one of
// its instances says it was fenced, until the supervision ends.
func (d *mirrorDaemon) replaceFenced() {
	for sleep(d.ctx, fencedPoll) == nil {
		pid := d.currentPid()
		if pid <= 0 {
			continue
		}
		rec, ok := d.fencedInstance(pid)
		if !ok || !pidAlive(pid, d.asok) {
			continue
		}
		d.log.Warn("rbd-mirror was fenced (blocklisted on the target cluster): replacing it",
			"env", d.envID, "pid", pid, "instance", rec.InstanceID, "fenced", time.Unix(rec.FencedAt, 0).UTC())
		// rbd-mirror runs in a process group of its own (runOnce).
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
}

// fencedInstance finds a record, in the environment's target pool, of an
// instance of process pid on this host that a keep fenced. A cluster it
// cannot read says no: the next round asks again.
func (d *mirrorDaemon) fencedInstance(pid int) (instanceRecord, bool) {
	ctx, cancel := context.WithTimeout(d.ctx, opTimeout)
	defer cancel()
	io, err := d.b.ioctx(ctx, d.dst, true)
	if err != nil {
		return instanceRecord{}, false
	}
	defer releaseAfter(ctx, io.Destroy)
	recs, err := instanceRecords(ctx, io, d.envID)
	if err != nil {
		return instanceRecord{}, false
	}
	for _, r := range recs {
		if r.fenced(d.host, pid) {
			return r, true
		}
	}
	return instanceRecord{}, false
}

// fenced says whether the record is of process pid on host and a keep
// fenced it. A blocklist alone (BlocklistedAt, from a starting
// rbd-mirror) is no reason to restart: the restart would blocklist the
// instance that blocklisted it, and so on.
func (r instanceRecord) fenced(host string, pid int) bool {
	return r.FencedAt != 0 && r.Pid == pid && r.Host == host
}
