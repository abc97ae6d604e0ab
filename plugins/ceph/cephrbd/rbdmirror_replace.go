package cephrbd

import (
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"
)

// The supervisor restarts an rbd-mirror that dies (supervise). Two kinds
// of rbd-mirror live on yet replicate nothing, and it replaces those
// too: killed at once, started again by supervise.
//
//   - Fenced: a keep blocklisted it on the target cluster (keep_fence.go)
//     and marked its record. rbd-mirror should restart its pool replayer
//     with a new client by itself, but Pacific's sometimes never does:
//     seen in CI, not one "restarting blocklisted pool replayer" in the
//     minutes after the source came back, every volume still mirroring
//     stalled. Only a fence marks a record, never the blocklist a
//     starting rbd-mirror gives earlier instances, so two hosts never
//     take turns restarting.
//   - Wedged: its admin socket silent for wedgedAfter while the plugin
//     reaches both clusters. rbd-mirror restarts a failed or blocklisted
//     pool replayer synchronously under its main lock
//     (Mirror::update_pool_replayers), and Pacific's restart can hang for
//     good: seen on the lab after a tx peer was removed, "restarting
//     failed pool replayer", then an image replayer's stop that never
//     returned and not one line more. The status command takes the same
//     lock, so the socket goes silent with it. A lost site can silence
//     it too, and replacing it then helps nothing: so both clusters must
//     answer. A process stopped by a signal (a debugger, a test's freeze)
//     is left alone.
//
// Killing is safe: a fenced rbd-mirror can write nothing to the target,
// and a crash of rbd-mirror at any moment is what its restart already
// resumes from (the interruption tests).

const (
	// replacePoll paces the checks.
	replacePoll = 2 * time.Second
	// wedgedAfter is how long the admin socket may stay silent, both
	// clusters answering, before the process is taken for wedged; a
	// healthy one answers within milliseconds, and a pool replayer's
	// restart takes seconds.
	wedgedAfter = 30 * time.Second
)

// replaceBroken replaces the supervised rbd-mirror when it is fenced or
// wedged, until the supervision ends.
func (d *mirrorDaemon) replaceBroken() {
	var w wedgeWatch
	for sleep(d.ctx, replacePoll) == nil {
		pid := d.currentPid()
		if pid <= 0 || !pidAlive(pid, d.asok) {
			continue
		}
		why := ""
		if rec, ok := d.fencedInstance(pid); ok {
			why = fmt.Sprintf("it was fenced (instance %s blocklisted on the target cluster at %s)",
				rec.InstanceID, time.Unix(rec.FencedAt, 0).UTC().Format(time.RFC3339))
		} else if silent, ok := w.silentFor(d, pid); ok && silent >= wedgedAfter {
			if err := d.clustersAnswer(); err != nil {
				if !w.toldLeft {
					d.log.Info("rbd-mirror's admin socket is silent, but a cluster does not answer either: left running",
						"env", d.envID, "pid", pid, "silent", silent.Round(time.Second), "error", err)
					w.toldLeft = true
				}
				continue
			}
			why = fmt.Sprintf("it is wedged (its admin socket silent for %s while both clusters answer)", silent.Round(time.Second))
		}
		if why == "" || !pidAlive(pid, d.asok) {
			continue
		}
		d.log.Warn("replacing rbd-mirror: "+why, "env", d.envID, "pid", pid)
		// rbd-mirror runs in a process group of its own (runOnce).
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		w = wedgeWatch{}
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

// wedgeWatch follows how long one process's admin socket has been
// silent.
type wedgeWatch struct {
	pid         int
	silentSince time.Time
	toldLeft    bool // the log said it was left running, this silence
}

// silentFor asks pid's admin socket for its status and says for how long
// it has not answered (0 when it answers); ok is false while the process
// is stopped by a signal, which restarts the count.
func (w *wedgeWatch) silentFor(d *mirrorDaemon, pid int) (silent time.Duration, ok bool) {
	if w.pid != pid {
		*w = wedgeWatch{pid: pid}
	}
	if stoppedBySignal(pid) {
		w.silentSince, w.toldLeft = time.Time{}, false
		return 0, false
	}
	ctx, cancel := context.WithTimeout(d.ctx, asokTimeout)
	_, err := asokCommand(ctx, d.asok, "rbd mirror status")
	cancel()
	if err == nil || d.ctx.Err() != nil {
		w.silentSince, w.toldLeft = time.Time{}, false
		return 0, true
	}
	if w.silentSince.IsZero() {
		w.silentSince = time.Now()
	}
	return time.Since(w.silentSince), true
}

// stoppedBySignal says whether pid is stopped (SIGSTOP) or traced
// (/proc/<pid>/stat's state T or t).
func stoppedBySignal(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses and
	// may itself hold spaces or parentheses.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 || i+2 >= len(b) {
		return false
	}
	return b[i+2] == 'T' || b[i+2] == 't'
}

// clustersAnswer says (nil) whether the plugin reaches both clusters of
// the environment, each within reachTimeout.
func (d *mirrorDaemon) clustersAnswer() error {
	for _, s := range []struct {
		sd    side
		admin bool
	}{{d.src, false}, {d.dst, true}} {
		io, err := d.b.openSide(d.ctx, s.sd, s.admin)
		if err != nil {
			return err
		}
		io.Destroy()
	}
	return nil
}
