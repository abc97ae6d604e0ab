package cephrbd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ceph/go-ceph/rados"
	"github.com/ceph/go-ceph/rbd"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// The ship loop: one goroutine per ship environment (ship_path.go) in
// the plugin process of the host leading it, started by
// PrepareEnvironment as rbd-mirror is for the other path, stopped by
// ReleaseEnvironment, TeardownEnvironment and Close. Every interval, and
// at once when a volume call wakes it, it ships each shipped, unpaused
// volume of the environment one step (ShipStep), its new user snapshots
// first. The shipped volumes are records in the target pool's metadata
// (shipRecordKey), so a new leader's loop finds them; the pauses are the
// paused records (paused.go). A per-image lock (lockShip) keeps a step
// and a volume call on one image from interleaving.

// shipIntervalDefault is the loop's pace without mirror_ship_interval.
const shipIntervalDefault = 30 * time.Second

// shipInterval reads a target storage's mirror_ship_interval ("" for
// the default).
func shipInterval(s string) (time.Duration, error) {
	if s == "" {
		return shipIntervalDefault, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, errors.New("want a Go duration such as 30s or 2m")
	}
	if d < 100*time.Millisecond {
		return 0, errors.New("want at least 100ms")
	}
	return d, nil
}

// shipRecordPrefix starts the keys of envID's shipped images in the
// target pool's metadata; "" for every environment's.
func shipRecordPrefix(envID string) string {
	if envID == "" {
		return metaPrefix + "ship."
	}
	return metaPrefix + "ship." + envID + "."
}

func shipRecordKey(envID, image string) string { return shipRecordPrefix(envID) + image }

// shipRecord is one shipped image's record (JSON, no secrets).
type shipRecord struct {
	Volume uint64 `json:"volume"`
	Source string `json:"source"`
}

// shipRecords lists envID's shipped images in the target pool io.
func shipRecords(ctx context.Context, io *rados.IOContext, envID string) ([]string, error) {
	kv, err := call(ctx, func() (map[string]string, error) { return listPoolMeta(io, shipRecordPrefix(envID)) })
	if err != nil {
		return nil, fmt.Errorf("read the shipped images of environment %s: %w", envID, err)
	}
	var out []string
	for k := range kv {
		if rest := strings.TrimPrefix(k, shipRecordPrefix(envID)); !strings.Contains(rest, ".") {
			out = append(out, rest)
		}
	}
	sort.Strings(out)
	return out, nil
}

// shipRecorded says whether image is shipped in envID.
func shipRecorded(ctx context.Context, io *rados.IOContext, envID, image string) (bool, error) {
	ok, err := call(ctx, func() (bool, error) {
		_, ok, err := getPoolMeta(io, shipRecordKey(envID, image))
		return ok, err
	})
	if err != nil {
		return false, fmt.Errorf("read whether %s is shipped: %w", image, err)
	}
	return ok, nil
}

// setShipRecord records image as shipped in envID, or removes the record.
func setShipRecord(ctx context.Context, io *rados.IOContext, envID, image string, rec *shipRecord) error {
	key := shipRecordKey(envID, image)
	var err error
	if rec != nil {
		data, _ := json.Marshal(rec)
		err = do(ctx, func() error { return setPoolMeta(io, key, string(data)) })
	} else {
		err = do(ctx, func() error { return removePoolMeta(io, key) })
	}
	if err != nil {
		return fmt.Errorf("record %s as shipped=%v in the target pool's metadata: %w", image, rec != nil, err)
	}
	return nil
}

// lockShip takes the per-image lock a step and the volume calls share;
// it waits for a step under way, as long as ctx allows.
func (b *Backend) lockShip(ctx context.Context, envID, image string) (unlock func(), err error) {
	v, _ := b.shipLocks.LoadOrStore(envID+"/"+image, make(chan struct{}, 1))
	ch := v.(chan struct{})
	select {
	case ch <- struct{}{}:
		return func() { <-ch }, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("wait for the ship step of %s in environment %s: %w", image, envID, ctx.Err())
	}
}

// shipSide is sd's pool io as a ShipSide.
func (b *Backend) shipSide(ctx context.Context, sd side, io *rados.IOContext) (ShipSide, error) {
	conn, err := b.conn(ctx, sd, false)
	if err != nil {
		return ShipSide{}, err
	}
	fsid, err := conn.GetFSID()
	if err != nil {
		return ShipSide{}, fmt.Errorf("fsid of storage %s: %w", sd.key(), err)
	}
	return ShipSide{IO: io, FSID: strings.Trim(fsid, "\x00")}, nil
}

// shipLoop is one environment's loop.
type shipLoop struct {
	b      *Backend
	envID  string
	wake   chan struct{}
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	env      sdk.Environment
	interval time.Duration
	errs     map[string]error // the last step's error per image; none after a good step
}

// startShipLoop starts env's loop on this host, or hands the running one
// the environment's newest storages and interval and wakes it.
func (b *Backend) startShipLoop(env sdk.Environment, interval time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if l := b.ships[env.ID]; l != nil {
		l.mu.Lock()
		l.env, l.interval = env, interval
		l.mu.Unlock()
		l.poke()
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &shipLoop{b: b, envID: env.ID, wake: make(chan struct{}, 1), cancel: cancel, done: make(chan struct{}),
		env: env, interval: interval, errs: map[string]error{}}
	b.ships[env.ID] = l
	b.log.Info("ship loop started", "env", env.ID, "interval", interval.String())
	go l.run(ctx)
}

// stopShipLoop stops envID's loop on this host, if one runs, and waits
// for it (a step under way stops at its next chunk).
func (b *Backend) stopShipLoop(ctx context.Context, envID string) error {
	b.mu.Lock()
	l := b.ships[envID]
	delete(b.ships, envID)
	b.mu.Unlock()
	if l == nil {
		return nil
	}
	l.cancel()
	select {
	case <-l.done:
		b.log.Info("ship loop stopped", "env", envID)
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stop the ship loop of environment %s: %w", envID, ctx.Err())
	}
}

// stopShipLoops stops every loop (Close).
func (b *Backend) stopShipLoops() {
	b.mu.Lock()
	loops := b.ships
	b.ships = map[string]*shipLoop{}
	b.mu.Unlock()
	for _, l := range loops {
		l.cancel()
	}
	for _, l := range loops {
		<-l.done
	}
}

func (b *Backend) shipLoopOf(envID string) *shipLoop {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.ships[envID]
}

// wakeShip makes envID's loop run a round now, if it runs here.
func (b *Backend) wakeShip(envID string) {
	if l := b.shipLoopOf(envID); l != nil {
		l.poke()
	}
}

// shipError is the last step's error for image in envID on this host;
// nil when it succeeded, or when no loop runs here.
func (b *Backend) shipError(envID, image string) error {
	l := b.shipLoopOf(envID)
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.errs[image]
}

// clearShipError forgets image's last error (a resume, a stop).
func (b *Backend) clearShipError(envID, image string) {
	if l := b.shipLoopOf(envID); l != nil {
		l.setErr(image, nil)
	}
}

func (l *shipLoop) poke() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

func (l *shipLoop) setErr(image string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err == nil {
		delete(l.errs, image)
		return
	}
	l.errs[image] = err
}

func (l *shipLoop) run(ctx context.Context) {
	defer close(l.done)
	for {
		l.round(ctx)
		if l.b.shipRoundDone != nil {
			l.b.shipRoundDone(l.envID)
		}
		l.mu.Lock()
		interval := l.interval
		l.mu.Unlock()
		t := time.NewTimer(interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-l.wake:
			t.Stop()
		case <-t.C:
		}
	}
}

// round ships every shipped, unpaused image of the environment one step.
func (l *shipLoop) round(ctx context.Context) {
	l.mu.Lock()
	env := l.env
	l.mu.Unlock()
	src, dst, done, err := l.b.openShipSides(ctx, env)
	if err != nil {
		if ctx.Err() == nil {
			l.b.log.Warn("ship round: cannot open the pools", "env", env.ID, "err", err)
		}
		return
	}
	defer done()
	images, err := shipRecords(ctx, dst.IO, env.ID)
	if err != nil {
		if ctx.Err() == nil {
			l.b.log.Warn("ship round", "env", env.ID, "err", err)
		}
		return
	}
	for _, image := range images {
		if ctx.Err() != nil {
			return
		}
		l.step(ctx, src, dst, image)
	}
}

// step ships one image one step, under its lock, if it is still shipped
// and not paused.
func (l *shipLoop) step(ctx context.Context, src, dst ShipSide, image string) {
	unlock, err := l.b.lockShip(ctx, l.envID, image)
	if err != nil {
		return
	}
	defer unlock()
	// What a volume call changed while this round ran counts: a destroy's
	// removed record must not bring the target back.
	if ok, err := shipRecorded(ctx, dst.IO, l.envID, image); err != nil || !ok {
		if err == nil {
			l.setErr(image, nil)
		}
		return
	}
	if paused, err := isPaused(ctx, dst.IO, l.envID, image); err != nil || paused {
		return
	}
	err = shipOneStep(ctx, src, dst, image)
	if ctx.Err() != nil {
		return // stopped: the next leader's loop resumes from the newest point
	}
	l.mu.Lock()
	before := l.errs[image]
	l.mu.Unlock()
	l.setErr(image, err)
	if err != nil && (before == nil || before.Error() != err.Error()) {
		l.b.log.Warn("ship step failed", "env", l.envID, "image", image, "err", err)
	}
}

// shipOneStep ships image's new user snapshots (protected on the target,
// so they can be cloned there as on the source), then one step.
func shipOneStep(ctx context.Context, src, dst ShipSide, image string) error {
	if _, err := ShipUserSnapshots(ctx, src, dst, image, snapPrefix); err != nil {
		return err
	}
	if err := protectShipped(ctx, dst, image); err != nil {
		return err
	}
	_, err := ShipStep(ctx, src, dst, image)
	return err
}

// protectShipped protects the target's user snapshots (snapPrefix) that
// are not yet.
func protectShipped(ctx context.Context, dst ShipSide, image string) error {
	return do(ctx, func() error {
		img, err := rbd.OpenImage(dst.IO, image, rbd.NoSnapshot)
		if shipNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		defer img.Close()
		snaps, err := img.GetSnapshotNames()
		if err != nil {
			return err
		}
		for _, s := range snaps {
			if !strings.HasPrefix(s.Name, snapPrefix) {
				continue
			}
			sn := img.GetSnapshot(s.Name)
			if p, err := sn.IsProtected(); err != nil || p {
				continue
			}
			if err := sn.Protect(); err != nil {
				return fmt.Errorf("protect snapshot %s of %s: %w", s.Name, imageSpec(dst, image), err)
			}
		}
		return nil
	})
}

// snapPrefix starts the names of the snapshots the daemon asks for
// (snapName).
const snapPrefix = "snapshot-"

// openShipSides opens env's two pools as ShipSides; done closes them.
func (b *Backend) openShipSides(ctx context.Context, env sdk.Environment) (src, dst ShipSide, done func(), err error) {
	sSide, err := b.side(env.Source)
	if err != nil {
		return src, dst, nil, err
	}
	dSide, err := b.side(env.Target)
	if err != nil {
		return src, dst, nil, err
	}
	sIO, err := b.ioctx(ctx, sSide, false)
	if err != nil {
		return src, dst, nil, err
	}
	dIO, err := b.ioctx(ctx, dSide, false)
	if err != nil {
		releaseAfter(ctx, sIO.Destroy)
		return src, dst, nil, err
	}
	done = func() {
		releaseAfter(ctx, sIO.Destroy)
		releaseAfter(ctx, dIO.Destroy)
	}
	if src, err = b.shipSide(ctx, sSide, sIO); err == nil {
		dst, err = b.shipSide(ctx, dSide, dIO)
	}
	if err != nil {
		done()
		return src, dst, nil, err
	}
	return src, dst, done, nil
}
