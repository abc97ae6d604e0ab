package cephrbd

import (
	"context"
	"time"
)

// keepStoppedTimeout bounds the look at one paused replayer and its stop.
const keepStoppedTimeout = 5 * time.Second

// reapplyPauses keeps every paused image stopped on rbd-mirror's admin
// socket: rbd-mirror holds a stop in memory only, so after each restart
// (and whenever an image replayer appears) the stop is sent again. It
// also remembers the instance ids of each rbd-mirror it sees run.
func (d *mirrorDaemon) reapplyPauses() {
	recorded := 0 // the pid whose instance ids are remembered
	for sleep(d.ctx, watchInterval) == nil {
		if !d.running() {
			continue
		}
		if pid := d.currentPid(); pid != recorded && d.rememberInstances() {
			recorded = pid
		}
		for _, name := range d.paused() {
			d.keepStopped(name)
		}
	}
}

// keepStopped stops the replayer name wherever it runs, unless it is
// stopped already.
func (d *mirrorDaemon) keepStopped(name string) {
	ctx, cancel := context.WithTimeout(d.ctx, keepStoppedTimeout)
	defer cancel()
	st, asok, err := replayerOf(ctx, d.cluster(), name)
	if err != nil || st.State == replayerStopped {
		return
	}
	if _, err := asokCommand(ctx, asok, "rbd mirror stop "+name); err == nil {
		d.log.Info("re-applied a pause on rbd-mirror", "env", d.envID, "image", name, "asok", asok)
	}
}
