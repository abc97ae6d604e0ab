package cephrbd

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/ceph/go-ceph/rados"
	"github.com/ceph/go-ceph/rbd"

	"github.com/cdmdr/mirror/plugins/sdk"
)

const (
	// destroyDefaultBudget is DestroyVolume's time when its caller set no
	// deadline.
	destroyDefaultBudget = 60 * time.Second
	// destroyMaxGrace caps the time rbd-mirror is given to delete the
	// non-primary copy itself once the source is disabled.
	destroyMaxGrace = 10 * time.Second
	// destroyPollInterval paces the look for the copy during the grace.
	destroyPollInterval = 500 * time.Millisecond
)

// destroyBudget is how DestroyVolume shares out its time; each duration
// counts from the call's start, the two sides running side by side.
type destroyBudget struct {
	source time.Duration // to disable mirroring on the source
	target time.Duration // for the copy: wait for the source, then for rbd-mirror, then delete it
	grace  time.Duration // of target: rbd-mirror's time to delete the copy itself
}

// splitDestroyBudget shares out the time left before the caller's
// deadline (hasDeadline false: there is none, and the default applies),
// less the reply margin. The source gets half: the copy's side waits for
// it, and needs the other half for what comes after, half of which at
// most is left to rbd-mirror.
func splitDestroyBudget(left time.Duration, hasDeadline bool) destroyBudget {
	total := destroyDefaultBudget
	if hasDeadline {
		total = max(left-replyMargin(left), 0)
	}
	b := destroyBudget{source: total / 2, target: total}
	b.grace = min(destroyMaxGrace, (b.target-b.source)/2)
	return b
}

// DestroyVolume implements sdk.Backend: each side in its own goroutine,
// under its share of ctx's time, so an unreachable cluster blocks
// nothing and what could not be cleaned is reported, not returned.
func (b *Backend) DestroyVolume(ctx context.Context, vol sdk.Volume) (sdk.CleanupReport, error) {
	if err := ctx.Err(); err != nil {
		return sdk.CleanupReport{}, err
	}
	if err := checkEnvID(vol.Environment); err != nil {
		return sdk.CleanupReport{}, err
	}
	if !uuidPattern.MatchString(vol.VolumeUUID) {
		return sdk.CleanupReport{}, fmt.Errorf("volume uuid %q cannot name an image: %w", vol.VolumeUUID, sdk.ErrPrecondition)
	}
	if b.shipEnvironmentWithin(ctx, vol.Environment) {
		return b.destroyShip(ctx, vol)
	}
	deadline, hasDeadline := ctx.Deadline()
	budget := splitDestroyBudget(time.Until(deadline), hasDeadline)
	name := imageName(vol)
	var left leftovers
	srcDone := make(chan sourceOutcome, 1)
	var wg sync.WaitGroup
	wg.Go(func() { srcDone <- b.destroySource(ctx, budget.source, vol, name, &left) })
	wg.Go(func() { b.destroyTarget(ctx, budget, vol, name, srcDone, &left) })
	wg.Wait()
	return sdk.CleanupReport{Leftovers: left.list}, nil
}

// leftovers collects what the two sides of a destroy could not clean.
type leftovers struct {
	mu   sync.Mutex
	list []string
}

func (l *leftovers) add(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.list = append(l.list, fmt.Sprintf(format, args...))
}

// sourceOutcome is what the source side of a destroy found and did.
type sourceOutcome struct {
	read     bool // the source image was read before anything changed
	exists   bool // it existed then
	primary  bool // it was the primary then (mirrored primary, or not mirrored)
	mirrored bool // mirroring was enabled on it then
	disabled bool // mirroring is disabled now, or never was enabled
}

// intact says whether the source volume is known intact: read in this
// call, there, and the primary. Only then may a destroy delete the
// replicated copy; otherwise the copy may be the last one. why says
// what is not known.
func (o sourceOutcome) intact() (ok bool, why string) {
	switch {
	case !o.read:
		return false, "the source storage could not be reached to check that the source image is intact"
	case !o.exists:
		return false, "the source image does not exist"
	case !o.primary:
		return false, "the source image is not the primary"
	}
	return true, ""
}

// destroySource disables mirroring on the source image within budget
// (forced when a plain disable fails).
func (b *Backend) destroySource(ctx context.Context, budget time.Duration, vol sdk.Volume, name string, left *leftovers) sourceOutcome {
	ctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	sd, err := b.side(vol.Environment.Source)
	if err != nil {
		left.add("source: %v", err)
		return sourceOutcome{}
	}
	var out sourceOutcome
	// A lost source costs reachTimeout, not librados' longer OSD bound.
	io, err := b.openSide(ctx, sd, false)
	if err == nil {
		defer releaseAfter(ctx, io.Destroy)
		out, err = b.disableSource(ctx, sd, io, name)
	}
	if err != nil {
		left.add("source image %s/%s on storage %s: mirroring may still be enabled (%v)", sd.m.Pool, name, sd.key(), err)
	}
	return out
}

func (b *Backend) disableSource(ctx context.Context, sd side, io *rados.IOContext, name string) (sourceOutcome, error) {
	rctx, cancel := context.WithTimeout(ctx, reachTimeout)
	in, err := inspect(rctx, io, name, false)
	cancel()
	if err != nil {
		return sourceOutcome{}, err
	}
	out := sourceOutcome{read: true, exists: in.exists, mirrored: in.mirrored(),
		primary: in.exists && (!in.mirrored() || in.mirror.Primary)}
	if !in.mirrored() {
		out.disabled = true
		return out, nil
	}
	b.removeSchedule(ctx, &volConns{src: sd, name: name}, in)
	err = withImage(ctx, io, name, func(img *rbd.Image) error { return img.MirrorDisable(false) })
	if err != nil {
		err = withImage(ctx, io, name, func(img *rbd.Image) error { return img.MirrorDisable(true) })
	}
	out.disabled = err == nil
	return out, err
}

// copyKind is what a destroy makes of the target image, from what it
// was before the destroy changed anything.
type copyKind int

const (
	copyNone       copyKind = iota // no image on the target
	copyReplicated                 // rbd-mirror's copy, or one it is creating: the destroy deletes it
	copyKept                       // the standalone copy a stop kept: the user's volume, left alone
	copyUnknown                    // either of the two: left alone, and reported
)

// kindOfCopy tells rbd-mirror's copy (mirroring enabled or being
// disabled, or rbd-mirror's snapshots still on it) from the one a stop
// kept (mirroring disabled on both sides, rbd-mirror's snapshots removed
// by verifyKept). A copy with mirroring disabled and no such snapshot
// while the source is still mirrored is one rbd-mirror is creating; when
// the source could not be read, it cannot be told. recorded, the kind of
// the image's leftover record, tells what a call without the source
// made of it: "volume", a stop kept it (the user's volume); "copy", an
// earlier destroy kept the replicated copy (to delete once the source
// is known intact).
func kindOfCopy(dst imageInfo, src sourceOutcome, recorded string) copyKind {
	switch {
	case !dst.exists:
		return copyNone
	case recorded == "volume" && dst.mirror.State == rbd.MirrorImageDisabled:
		return copyKept
	case recorded == "copy":
		return copyReplicated
	case dst.mirror.State != rbd.MirrorImageDisabled || hasMirrorSnapshots(dst.snaps):
		return copyReplicated
	case !src.read:
		return copyUnknown
	case src.mirrored:
		return copyReplicated
	default:
		return copyKept
	}
}

// hasMirrorSnapshots says whether snaps hold one of rbd-mirror's: a
// journal-mode sync point or a mirror snapshot.
func hasMirrorSnapshots(snaps []rbd.SnapInfo) bool {
	for _, s := range snaps {
		if strings.HasPrefix(s.Name, syncPointPrefix) || strings.HasPrefix(s.Name, mirrorSnapPrefix) {
			return true
		}
	}
	return false
}

// destroyTarget sees the replicated target copy gone within
// budget.target: once the source is disabled, rbd-mirror deletes a
// non-primary copy itself and is given budget.grace for it; what remains
// is deleted here. A standalone copy a stop kept is left alone: it is
// not a leftover but the user's volume, which only DeleteTarget removes.
func (b *Backend) destroyTarget(ctx context.Context, budget destroyBudget, vol sdk.Volume, name string, srcDone <-chan sourceOutcome, left *leftovers) {
	ctx, cancel := context.WithTimeout(ctx, budget.target)
	defer cancel()
	dd, err := b.side(vol.Environment.Target)
	if err != nil {
		left.add("target: %v", err)
		return
	}
	io, err := b.ioctx(ctx, dd, false)
	if err != nil {
		left.add("target copy %s/%s on storage %s may remain (%v)", dd.m.Pool, name, dd.key(), err)
		return
	}
	defer releaseAfter(ctx, io.Destroy)
	if err := setPaused(ctx, io, vol.Environment.ID, name, false, dd.m.Pool+"/"+name); err != nil {
		left.add("%v", err)
	}
	// Read before the source's side changes anything (rbd-mirror then
	// deletes its copy: disabling, then gone, never a kept copy's look).
	before, err := inspect(ctx, io, name, true)
	if err != nil {
		left.add("target image %s/%s on storage %s may remain: it could not be read to tell a replicated copy from one a stop kept (%v)",
			dd.m.Pool, name, dd.key(), err)
		return
	}
	rec, _, err := readLeftover(ctx, io, vol.Environment.ID, name)
	if err != nil {
		left.add("target image %s/%s on storage %s is left: %v", dd.m.Pool, name, dd.key(), err)
		return
	}
	var src sourceOutcome
	select {
	case src = <-srcDone:
	case <-ctx.Done():
	}
	v := &volConns{dst: dd, dstIO: io, name: name, spec: dd.m.Pool + "/" + name}
	v.src, _ = b.side(vol.Environment.Source)
	switch kindOfCopy(before, src, rec.Kind) {
	case copyKept:
		if rec.Kind == "volume" && src.disabled {
			// The source's mirroring, all a stop without it left, is off.
			if err := clearLeftover(ctx, io, vol.Environment.ID, name); err != nil {
				left.add("%v", err)
			}
		}
		return
	case copyUnknown:
		left.add("target image %s/%s on storage %s is left: mirroring is disabled on it, and with the source unread "+
			"it cannot be told from a standalone copy a stop kept (DeleteTarget removes it)", dd.m.Pool, name, dd.key())
		return
	case copyReplicated:
		if ok, why := src.intact(); !ok {
			b.keepDestroyed(ctx, vol, v, before, why, left)
			return
		}
	}
	if !(src.disabled && awaitMirrorDelete(ctx, budget.grace, io, name)) {
		if err := deleteCopy(ctx, v); err != nil {
			left.add("target copy %s/%s on storage %s could not be deleted (%v)", dd.m.Pool, name, dd.key(), err)
			return
		}
	}
	// The replica is gone: a point kept from it before a resync goes too.
	if err := dropKeptOf(ctx, v, vol.Environment.ID); err != nil {
		left.add("%v", err)
	}
	if rec.Kind != "" {
		// The copy an earlier destroy kept is gone with its source known intact.
		if err := clearLeftover(ctx, io, vol.Environment.ID, name); err != nil {
			left.add("%v", err)
		}
	}
}

// keepDestroyed keeps the replicated copy of a destroyed volume whose
// source is not known intact (why): made standalone when it is complete,
// left as it is otherwise, and recorded on the target either way.
func (b *Backend) keepDestroyed(ctx context.Context, vol sdk.Volume, v *volConns, dst imageInfo, why string, left *leftovers) {
	state := "a standalone writable image now"
	missing, err := b.keepCopy(ctx, vol, v, dst)
	switch {
	case err != nil:
		state = fmt.Sprintf("left as it was: making it standalone failed (%v)", err)
	case missing != "":
		state = fmt.Sprintf("incomplete (%s) and left as it was, still a mirror copy", missing)
	}
	l := copyLeftover(v, why, state)
	if err := recordLeftover(ctx, v.dstIO, vol.Environment.ID, v.name, l); err != nil {
		left.add("%v", err)
	}
	left.add("%s", leftoverLine(l))
}

// awaitMirrorDelete waits up to grace for rbd-mirror to delete the copy;
// true once it is gone. A failed look ends the wait (the caller tries
// itself, and reports what fails again).
func awaitMirrorDelete(ctx context.Context, grace time.Duration, io *rados.IOContext, name string) bool {
	ctx, cancel := context.WithTimeout(ctx, grace)
	defer cancel()
	for {
		in, err := inspect(ctx, io, name, false)
		if err != nil {
			return false
		}
		if !in.exists {
			return true
		}
		if sleep(ctx, destroyPollInterval) != nil {
			return false
		}
	}
}

// deleteCopy deletes the target copy, a non-primary one after forcing
// its mirroring off.
func deleteCopy(ctx context.Context, v *volConns) error {
	in, err := inspect(ctx, v.dstIO, v.name, false)
	if err == nil && in.following() {
		err = withImage(ctx, v.dstIO, v.name, func(img *rbd.Image) error { return img.MirrorDisable(true) })
	}
	if err == nil {
		err = removeTarget(ctx, v)
	}
	return err
}
