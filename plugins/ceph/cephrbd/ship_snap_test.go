package cephrbd

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/ceph/go-ceph/rbd"

	"github.com/cdmdr/mirror/plugins/sdk"
)

const userSnapPrefix = "snapshot-"

// userSnap makes a user snapshot of the source image. The plugin
// protects its own; that changes nothing to reading them, and costs a
// round of the monitors each.
func (r *shipRig) userSnap(t *testing.T, name, snap string) {
	t.Helper()
	shipEdit(t, r.src.IO, name, func(img *rbd.Image) error { _, err := img.CreateSnapshot(snap); return err })
}

func (r *shipRig) shipUser(t *testing.T, name string, want ...string) {
	t.Helper()
	got, err := ShipUserSnapshots(t.Context(), r.src, r.dst, name, userSnapPrefix)
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("ShipUserSnapshots = %v, %v; want %v", got, err, want)
	}
}

// sameSnapCLI checks with `rbd export` that the target's snapshot holds
// the source's content.
func (r *shipRig) sameSnapCLI(t *testing.T, name, snap string) {
	t.Helper()
	r.sameAtCLI(t, name, ShipPoint{Name: snap})
}

// headAtPoint checks that the target's head equals its newest point
// (and the point the source's): a step ends with a correct head.
func (r *shipRig) headAtPoint(t *testing.T, name string, p ShipPoint) {
	t.Helper()
	r.sameAt(t, name, p)
	if head, pt := digestAt(t, r.dst.IO, name, ""), digestAt(t, r.dst.IO, name, p.Name); head != pt {
		t.Fatalf("the target's head (sha256 %s) differs from its point %s (%s)", head, p.Name, pt)
	}
}

// TestShipUserSnapshots: user snapshots reach the target with the
// source's content, whether taken before the first copy, two between
// steps, or older than everything both sides share; steps around them
// stay correct, prune only their points, and a torn ship of one leaves
// no target snapshot and is redone.
func TestShipUserSnapshots(t *testing.T) {
	r := newShipRig(t)
	name := r.image(t, 16<<20)

	// Before the first copy: a full copy to it, sparse.
	shipWrite(t, r.src.IO, name, 1<<20, 2<<20)
	r.userSnap(t, name, "snapshot-a")
	shipWrite(t, r.src.IO, name, 8<<20, 1<<20)
	r.shipUser(t, name, "snapshot-a")
	r.sameSnapCLI(t, name, "snapshot-a")
	if used := rbdCLI(t, r.b, "du", "--format", "json", r.b.Pool+"/"+name+"@snapshot-a"); !strings.Contains(used, `"used_size":4194304`) {
		t.Errorf("rbd du of the target's snapshot-a with 2 MiB written in one object: %s; want 4 MiB used", used)
	}
	r.shipUser(t, name) // nothing left to ship
	p1 := mustShip(t, r, name)
	r.headAtPoint(t, name, p1.Point)

	// Two between steps, the second over a region discarded.
	shipWrite(t, r.src.IO, name, 4<<20, 1<<20)
	r.userSnap(t, name, "snapshot-b")
	shipDiscard(t, r.src.IO, name, 1<<20, 2<<20)
	shipWrite(t, r.src.IO, name, 12<<20, 1<<20)
	r.userSnap(t, name, "snapshot-c")
	shipWrite(t, r.src.IO, name, 1<<20, 1<<20)
	r.shipUser(t, name, "snapshot-b", "snapshot-c")
	r.sameAt(t, name, ShipPoint{Name: "snapshot-b"})
	r.sameSnapCLI(t, name, "snapshot-c")
	// An object born after the last point and gone again before the next
	// is in no diff of the source: the step must still clear it from the
	// head, where snapshot-c put it.
	shipDiscard(t, r.src.IO, name, 12<<20, 4<<20)
	p2 := mustShip(t, r, name)
	if p2.Base != p1.Point {
		t.Fatalf("the step after user snapshots = %+v; want base %s", p2, p1.Point.Name)
	}
	r.headAtPoint(t, name, p2.Point)

	// Torn mid-copy: no target snapshot; a step right after is correct;
	// the next call ships it, its base now older than the step's point.
	shipWrite(t, r.src.IO, name, 0, 8<<20)
	r.userSnap(t, name, "snapshot-d")
	shipDiscard(t, r.src.IO, name, 0, 8<<20)
	shipWrite(t, r.src.IO, name, 10<<20, 1<<20) // in the next point, not in snapshot-d
	t.Cleanup(func() { shipAfterChunk = nil })
	ctx, cancel := context.WithCancel(t.Context())
	shipAfterChunk = func(uint64) { cancel() }
	got, err := ShipUserSnapshots(ctx, r.src, r.dst, name, userSnapPrefix)
	shipAfterChunk = nil
	cancel()
	if !errors.Is(err, context.Canceled) || len(got) != 0 {
		t.Fatalf("torn ShipUserSnapshots = %v, %v; want nothing, context.Canceled", got, err)
	}
	if snaps := snapsCLI(t, r.b, name); slices.Contains(snaps, "snapshot-d") {
		t.Fatalf("a torn ship left snapshot-d on the target: %v", snaps)
	}
	if head, pt := digestAt(t, r.dst.IO, name, ""), digestAt(t, r.dst.IO, name, p2.Point.Name); head == pt {
		t.Fatal("the torn ship wrote nothing into the target's head: the test would prove nothing")
	}
	p3 := mustShip(t, r, name)
	r.headAtPoint(t, name, p3.Point)
	r.shipUser(t, name, "snapshot-d")
	r.sameAt(t, name, ShipPoint{Name: "snapshot-d"})

	// Older than everything both sides share (taken, then a step ran
	// without it; the older user snapshots deleted on both sides): a full
	// copy, cleared of what the head holds beyond it. That step also
	// checks the head after snapshot-d, shipped from a base older than
	// the newest point.
	r.userSnap(t, name, "snapshot-e")
	shipWrite(t, r.src.IO, name, 14<<20, 1<<20)
	p5 := mustShip(t, r, name) // the source's point older than snapshot-e goes
	r.headAtPoint(t, name, p5.Point)
	// Pruning (four steps made, the target keeps three) left user
	// snapshots alone on both sides.
	users := []string{"snapshot-a", "snapshot-b", "snapshot-c", "snapshot-d"}
	src, dst := snapsCLI(t, r.a, name), snapsCLI(t, r.b, name)
	if pts := shipSnapsCLI(t, r.b, name); len(pts) != shipTargetKeep {
		t.Errorf("the target's points: %v; want %d", pts, shipTargetKeep)
	}
	for _, s := range users {
		if !slices.Contains(src, s) || !slices.Contains(dst, s) {
			t.Errorf("user snapshot %s gone: source %v, target %v", s, src, dst)
		}
	}
	for _, s := range users {
		if err := ShipRemoveUserSnapshot(t.Context(), r.dst, name, s); err != nil {
			t.Fatalf("ShipRemoveUserSnapshot %s: %v", s, err)
		}
		shipEdit(t, r.src.IO, name, func(img *rbd.Image) error { return img.GetSnapshot(s).Remove() })
	}
	r.shipUser(t, name, "snapshot-e")
	r.sameSnapCLI(t, name, "snapshot-e")
	p6 := mustShip(t, r, name)
	if p6.Base != p5.Point {
		t.Fatalf("the step after an old snapshot = %+v; want base %s", p6, p5.Point.Name)
	}
	r.headAtPoint(t, name, p6.Point)

	// ShipForget leaves the user snapshots on the source.
	if _, err := ShipForget(t.Context(), r.src, r.dst, name); err != nil {
		t.Fatal(err)
	}
	if src := snapsCLI(t, r.a, name); !slices.Equal(src, []string{"snapshot-e"}) {
		t.Errorf("the source's snapshots after ShipForget: %v; want snapshot-e", src)
	}
}

// TestShipRemoveUserSnapshot: a target snapshot is removed, protected or
// not; one with a clone is refused, naming the clone; a missing snapshot
// or image is no error; an image not the engine's is refused.
func TestShipRemoveUserSnapshot(t *testing.T) {
	r := newShipRig(t)
	name := r.image(t, 8<<20)
	shipWrite(t, r.src.IO, name, 0, 1<<20)
	r.userSnap(t, name, "snapshot-p")
	shipEdit(t, r.src.IO, name, func(img *rbd.Image) error { _, err := img.CreateSnapshot("snapshot-u"); return err })
	r.shipUser(t, name, "snapshot-p", "snapshot-u")
	shipEdit(t, r.dst.IO, name, func(img *rbd.Image) error { return img.GetSnapshot("snapshot-p").Protect() })

	clone := name + "-clone"
	opts := rbd.NewRbdImageOptions()
	defer opts.Destroy()
	if err := rbd.CloneImage(r.dst.IO, name, "snapshot-p", r.dst.IO, clone, opts); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeImageForTest(r.dst.IO, clone) })
	err := ShipRemoveUserSnapshot(t.Context(), r.dst, name, "snapshot-p")
	if !errors.Is(err, sdk.ErrPrecondition) || !strings.Contains(err.Error(), clone) {
		t.Fatalf("removing a snapshot with a clone = %v; want ErrPrecondition naming %s", err, clone)
	}
	if !slices.Contains(snapsCLI(t, r.b, name), "snapshot-p") {
		t.Fatal("the refused removal removed the snapshot")
	}
	removeImageForTest(r.dst.IO, clone)
	for _, s := range []string{"snapshot-p", "snapshot-u", "snapshot-p"} {
		if err := ShipRemoveUserSnapshot(t.Context(), r.dst, name, s); err != nil {
			t.Fatalf("ShipRemoveUserSnapshot %s: %v", s, err)
		}
	}
	if snaps := snapsCLI(t, r.b, name); len(snaps) != 0 {
		t.Errorf("the target's snapshots after the removals: %v; want none", snaps)
	}
	// One that fails (the target's snapshot limit) is named; the others
	// still ship.
	rbdCLI(t, r.b, "snap", "limit", "set", "--limit", "1", r.b.Pool+"/"+name)
	got, err := ShipUserSnapshots(t.Context(), r.src, r.dst, name, userSnapPrefix)
	failed := ShipFailedUserSnapshots(err)
	if !slices.Equal(got, []string{"snapshot-p"}) || len(failed) != 1 || failed[0].Snapshot != "snapshot-u" || !strings.Contains(err.Error(), "snapshot-u") {
		t.Fatalf("ShipUserSnapshots over the snapshot limit = %v, %v (failed %+v); want snapshot-p shipped, snapshot-u failed", got, err, failed)
	}
	rbdCLI(t, r.b, "snap", "limit", "clear", r.b.Pool+"/"+name)
	r.shipUser(t, name, "snapshot-u")
	r.sameAt(t, name, ShipPoint{Name: "snapshot-p"})
	r.sameAt(t, name, ShipPoint{Name: "snapshot-u"})

	if err := ShipRemoveUserSnapshot(t.Context(), r.dst, "no-such-image", "snapshot-p"); err != nil {
		t.Errorf("ShipRemoveUserSnapshot of a missing image = %v; want nil", err)
	}
	if err := ShipRemoveUserSnapshot(t.Context(), r.dst, name, shipSnapPrefix+"x.1.1"); err == nil {
		t.Error("ShipRemoveUserSnapshot removed an engine point name without complaint")
	}

	// An image not the engine's: refused, by both calls.
	other := r.image(t, 8<<20)
	if err := rbd.CreateImage(r.dst.IO, other, 8<<20, rbd.NewRbdImageOptions()); err != nil {
		t.Fatal(err)
	}
	shipEdit(t, r.dst.IO, other, func(img *rbd.Image) error { _, err := img.CreateSnapshot("snapshot-x"); return err })
	r.userSnap(t, other, "snapshot-x")
	if err := ShipRemoveUserSnapshot(t.Context(), r.dst, other, "snapshot-x"); !errors.Is(err, sdk.ErrPrecondition) {
		t.Errorf("ShipRemoveUserSnapshot on an unmarked image = %v; want ErrPrecondition", err)
	}
	r.userSnap(t, other, "snapshot-y")
	if got, err := ShipUserSnapshots(t.Context(), r.src, r.dst, other, userSnapPrefix); !errors.Is(err, sdk.ErrPrecondition) || len(got) != 0 {
		t.Errorf("ShipUserSnapshots into an unmarked image = %v, %v; want ErrPrecondition", got, err)
	}
	if snaps := snapsCLI(t, r.b, other); !slices.Equal(snaps, []string{"snapshot-x"}) {
		t.Errorf("the unmarked image's snapshots: %v; want snapshot-x only", snaps)
	}
}
