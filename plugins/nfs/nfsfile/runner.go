package nfsfile

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// retryMin and retryMax bound the wait after a failed sync.
const (
	retryMin = time.Second
	retryMax = 30 * time.Second
)

// runner is one volume's sync loop on this host.
type runner struct {
	cancel context.CancelFunc
	done   chan struct{}
	wake   chan struct{}

	mu       sync.Mutex
	vol      sdk.Volume // the latest the daemon gave: metadata may change
	h        *copyHandle
	lastErr  error
	failures int
}

func (r *runner) volume() sdk.Volume {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.vol
}

// report is what the loop last saw: its copy's status when it holds the
// copy, and the last sync's error.
func (r *runner) report() (copyStatus, bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.h == nil {
		return copyStatus{}, false, r.lastErr
	}
	return r.h.status(), true, r.lastErr
}

// ensureRunner starts vol's sync loop on this host unless it runs, and
// wakes it.
func (b *Backend) ensureRunner(env sdk.Environment, uuid string, volumeID uint64, agent sdk.Agent) {
	vol := sdk.Volume{Environment: env, ClusterID: env.Source.ClusterID, VolumeID: volumeID, VolumeUUID: uuid, SourceAgent: agent}
	b.startRunner(vol)
}

// startRunner starts vol's loop, if its environment is hosted here.
func (b *Backend) startRunner(vol sdk.Volume) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.hosted[vol.Environment.ID] {
		return // EnvironmentStatus says so; the leader's Prepare starts it
	}
	if b.ending[vol.VolumeUUID] > 0 {
		return // a stop or delete is under way (endRunner)
	}
	if r, ok := b.runners[vol.VolumeUUID]; ok {
		r.mu.Lock()
		r.vol = vol
		r.mu.Unlock()
		r.poke()
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runner{cancel: cancel, done: make(chan struct{}), wake: make(chan struct{}, 1), vol: vol}
	b.runners[vol.VolumeUUID] = r
	go b.loop(ctx, r)
}

func (r *runner) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// stopRunner stops uuid's loop on this host and waits for it: a sync
// under way is cancelled, and the copy keeps its last complete sync.
func (b *Backend) stopRunner(uuid string) {
	b.mu.Lock()
	r, ok := b.runners[uuid]
	delete(b.runners, uuid)
	b.mu.Unlock()
	if ok {
		r.cancel()
		<-r.done
	}
}

// endRunner stops uuid's loop, as stopRunner, for a stop or a delete that
// then takes the copy's lock: until the returned func is called no loop
// starts for uuid, as a PrepareEnvironment running meanwhile (mirrord's
// environment poll sees the loop gone) would otherwise start one that
// takes the lock first.
func (b *Backend) endRunner(uuid string) (done func()) {
	b.mu.Lock()
	b.ending[uuid]++
	b.mu.Unlock()
	b.stopRunner(uuid)
	return func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.ending[uuid]--; b.ending[uuid] <= 0 {
			delete(b.ending, uuid)
		}
	}
}

func (b *Backend) running(uuid string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	_, ok := b.runners[uuid]
	return ok
}

func (b *Backend) runnerOf(uuid string) *runner {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.runners[uuid]
}

func (b *Backend) loop(ctx context.Context, r *runner) {
	defer close(r.done)
	defer func() {
		r.mu.Lock()
		if r.h != nil {
			r.h.close()
			r.h = nil
		}
		r.mu.Unlock()
	}()
	for {
		wait, ended := b.syncOnce(ctx, r)
		if ended {
			// The replication ended under us (on another host): forget it.
			uuid := r.volume().VolumeUUID
			b.mu.Lock()
			if b.runners[uuid] == r {
				delete(b.runners, uuid)
			}
			b.mu.Unlock()
			return
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-r.wake:
			t.Stop()
		case <-t.C:
		}
	}
}

// syncOnce runs one sync of r's volume, then makes the recovery points
// it completes. It returns how long to wait before the next.
func (b *Backend) syncOnce(ctx context.Context, r *runner) (wait time.Duration, ended bool) {
	vol := r.volume()
	uuid := vol.VolumeUUID
	fail := func(err error) (time.Duration, bool) {
		r.mu.Lock()
		r.lastErr = err
		r.failures++
		n := r.failures
		r.mu.Unlock()
		if ctx.Err() == nil {
			b.log.Warn("sync failed", "volume", volumeName(uuid), "environment", vol.Environment.ID, "failures", n, "error", err)
		}
		d := retryMin << min(n-1, 5)
		return min(d, retryMax), false
	}
	tgt, err := parseTarget(vol.Environment.Target)
	if err != nil {
		return fail(err)
	}
	var rec replication
	found, err := readJSON(replicationPath(tgt.dir, uuid), &rec)
	if err != nil {
		return fail(err)
	}
	if !found {
		return 0, true
	}
	if rec.Paused && !rec.Stopping {
		return tgt.interval, false // paused from another host: look again later
	}
	r.mu.Lock()
	h := r.h
	r.mu.Unlock()
	if h == nil {
		if h, err = openCopy(tgt, uuid); err != nil {
			return fail(err)
		}
		r.mu.Lock()
		r.h = h
		r.mu.Unlock()
	}
	src, err := sourceClient(vol)
	if err != nil {
		return fail(err)
	}
	defer src.Close()
	began := b.now()
	res, err := h.sync(ctx, src)
	if err != nil {
		return fail(fmt.Errorf("sync %s from agent %s: %w", volumeName(uuid), rec.Agent, err))
	}
	r.mu.Lock()
	r.lastErr, r.failures = nil, 0
	r.mu.Unlock()
	b.log.Info("synced", "volume", volumeName(uuid), "environment", vol.Environment.ID, "first_copy", res.firstCopy,
		"blocks_changed", res.changed, "bytes", res.bytes, "duration", res.duration.String())
	if err := b.makePoints(tgt, uuid, h, began); err != nil {
		return fail(err)
	}
	return tgt.interval, false
}

// makePoints copies the target to every recovery point asked for before
// the sync that began at began: the copy is then at least as new as the
// snapshot.
func (b *Backend) makePoints(tgt target, uuid string, h *copyHandle, began time.Time) error {
	entries, err := os.ReadDir(pointsDir(tgt.dir, uuid))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range entries {
		snap, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		var p point
		if found, err := readJSON(pointRecordPath(tgt.dir, uuid, snap), &p); err != nil || !found || !p.Made.IsZero() || !p.Asked.Before(began) {
			continue
		}
		dst := filepath.Join(tgt.dir, pointName(uuid, snap))
		if err := h.copyTo(dst); err != nil {
			return fmt.Errorf("recovery point %s: %w", dst, err)
		}
		p.Made, p.Of = b.now().UTC(), began.UTC()
		if err := writeJSON(pointRecordPath(tgt.dir, uuid, snap), p); err != nil {
			return fmt.Errorf("recovery point %s: %w", dst, err)
		}
		b.log.Info("recovery point made", "volume", volumeName(uuid), "point", dst)
	}
	return nil
}
