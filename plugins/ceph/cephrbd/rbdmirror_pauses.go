package cephrbd

import (
	"context"
	"path"
	"time"

	"github.com/ceph/go-ceph/rados"
)

// Pacing of the pause loop: every startingPoll for startingWindow after
// an rbd-mirror starts (its image replayers are appearing), then every
// watchInterval.
const (
	startingPoll   = 100 * time.Millisecond
	startingWindow = time.Minute
	// keepStoppedTimeout bounds one round of the loop.
	keepStoppedTimeout = 5 * time.Second
)

// reapplyPauses keeps every paused image stopped on this rbd-mirror:
// rbd-mirror holds a stop in memory only, so after each restart, and on
// a new host after a takeover, the pauses recorded in the pools are
// applied again to each replayer as soon as it appears (the copy's hold
// keeps a journal-mode replayer from replaying meanwhile). A pause
// lifted by a resume on another host is lifted here too. It also
// records the rbd-mirror's instances in the cluster.
func (d *mirrorDaemon) reapplyPauses() {
	for {
		interval := watchInterval
		if d.starting() {
			interval = startingPoll
		}
		if sleep(d.ctx, interval) != nil {
			return
		}
		if d.running() && !d.holdingOff() {
			d.enforcePauses()
		}
	}
}

// holdingOff says whether the test knob pauseLoopDelay still keeps the
// loop from acting.
func (d *mirrorDaemon) holdingOff() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return time.Since(d.startedAt) < d.b.pauseLoopDelay
}

// enforcePauses is one round: one status question to rbd-mirror, one
// read of the paused records of each pool it replays.
func (d *mirrorDaemon) enforcePauses() {
	ctx, cancel := context.WithTimeout(d.ctx, keepStoppedTimeout)
	defer cancel()
	pools, err := poolReplayersAt(ctx, d.asok)
	if err != nil {
		return
	}
	conn, err := d.b.conn(ctx, d.dst, true)
	if err != nil {
		return
	}
	for _, p := range pools {
		io, err := call(ctx, func() (*rados.IOContext, error) { return conn.OpenIOContext(p.Pool) })
		if err != nil {
			continue
		}
		d.recordInstance(ctx, io, p)
		d.applyPauses(ctx, io, p)
		releaseAfter(ctx, io.Destroy)
	}
}

// applyPauses applies the pauses recorded in pool p (by any environment:
// the rbd-mirror daemons of a cluster share its images) to this
// rbd-mirror: each paused copy held, each paused replayer stopped; and a
// pause it applied that is gone is lifted (the replayer started, or
// restarted to open its copy without the hold).
func (d *mirrorDaemon) applyPauses(ctx context.Context, io *rados.IOContext, p poolReplayer) {
	paused, err := pausedImages(ctx, io, "")
	if err != nil {
		return
	}
	stop := map[string]bool{}
	for spec, pi := range paused {
		if path.Dir(spec) != p.Pool {
			continue
		}
		for _, n := range pi.names() {
			stop[n] = true
		}
		if _, ok := d.enforced[spec]; !ok {
			if exists, _, err := holdCopy(ctx, io, path.Base(spec), true); err == nil && exists {
				d.enforced[spec] = pi
			}
		}
	}
	lifted := map[string]bool{}
	for spec, pi := range d.enforced {
		if _, ok := paused[spec]; !ok && path.Dir(spec) == p.Pool {
			for _, n := range pi.names() {
				lifted[n] = true
			}
			delete(d.enforced, spec)
		}
	}
	for _, r := range p.ImageReplayers {
		cmd := ""
		switch {
		case stop[r.Name] && r.State != replayerStopped && r.State != replayerStopping:
			cmd = "stop"
		case lifted[r.Name] && r.State == replayerStopped:
			cmd = "start"
		case lifted[r.Name]:
			cmd = "restart"
		default:
			continue
		}
		if _, err := asokCommand(ctx, d.asok, "rbd mirror "+cmd+" "+r.Name); err == nil {
			d.log.Info("applied a pause's change on rbd-mirror", "env", d.envID, "image", r.Name, "was", r.State, "command", cmd)
		}
	}
}
