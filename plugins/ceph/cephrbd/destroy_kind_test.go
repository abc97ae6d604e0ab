package cephrbd

import (
	"testing"

	"github.com/ceph/go-ceph/rbd"
)

// What a destroy makes of the target image: only rbd-mirror's copy is
// deleted; the standalone copy a stop kept is the user's volume.
func TestKindOfCopy(t *testing.T) {
	enabled := rbd.MirrorImageInfo{State: rbd.MirrorImageEnabled}
	disabled := rbd.MirrorImageInfo{State: rbd.MirrorImageDisabled}
	mirrorSnap := []rbd.SnapInfo{{Name: ".mirror.non_primary.gid.1"}}
	syncPoint := []rbd.SnapInfo{{Name: ".rbd-mirror.uuid.gid"}}
	userSnap := []rbd.SnapInfo{{Name: "snapshot-1"}}
	srcMirrored := sourceOutcome{read: true, mirrored: true, disabled: true}
	srcPlain := sourceOutcome{read: true, disabled: true}
	for _, c := range []struct {
		name     string
		dst      imageInfo
		src      sourceOutcome
		want     copyKind
		recorded string
	}{
		{"no image", imageInfo{}, srcPlain, copyNone, ""},
		{"non-primary mirror copy", imageInfo{exists: true, mirror: enabled}, srcMirrored, copyReplicated, ""},
		{"non-primary copy, source unread", imageInfo{exists: true, mirror: enabled}, sourceOutcome{}, copyReplicated, ""},
		{"copy rbd-mirror is deleting", imageInfo{exists: true, mirror: rbd.MirrorImageInfo{State: rbd.MirrorImageDisabling}}, srcPlain, copyReplicated, ""},
		{"promoted, still mirrored (a stop cut short)", imageInfo{exists: true, mirror: rbd.MirrorImageInfo{State: rbd.MirrorImageEnabled, Primary: true}}, srcPlain, copyReplicated, ""},
		{"disabled, rbd-mirror's snapshot left", imageInfo{exists: true, mirror: disabled, snaps: mirrorSnap}, srcPlain, copyReplicated, ""},
		{"disabled, sync point left", imageInfo{exists: true, mirror: disabled, snaps: syncPoint}, srcPlain, copyReplicated, ""},
		{"copy rbd-mirror is creating", imageInfo{exists: true, mirror: disabled}, srcMirrored, copyReplicated, ""},
		{"kept by a stop", imageInfo{exists: true, mirror: disabled, snaps: userSnap}, srcPlain, copyKept, ""},
		{"kept by a stop, source unread", imageInfo{exists: true, mirror: disabled}, sourceOutcome{}, copyUnknown, ""},
		{"kept by a stop without the source, source still mirrored", imageInfo{exists: true, mirror: disabled}, srcMirrored, copyKept, "volume"},
		{"kept by a stop without the source, source unread", imageInfo{exists: true, mirror: disabled}, sourceOutcome{}, copyKept, "volume"},
		{"kept by a destroy without the source", imageInfo{exists: true, mirror: disabled}, srcPlain, copyReplicated, "copy"},
	} {
		if got := kindOfCopy(c.dst, c.src, c.recorded); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

// A destroy deletes the replicated copy only when the source image was
// read in the call, exists and is the primary: otherwise the copy may be
// the last one.
func TestSourceIntact(t *testing.T) {
	for _, c := range []struct {
		name string
		src  sourceOutcome
		want bool
	}{
		{"unread (unreachable)", sourceOutcome{}, false},
		{"gone", sourceOutcome{read: true}, false},
		{"not the primary", sourceOutcome{read: true, exists: true, mirrored: true}, false},
		{"mirrored primary", sourceOutcome{read: true, exists: true, mirrored: true, primary: true}, true},
		{"not mirrored", sourceOutcome{read: true, exists: true, primary: true}, true},
	} {
		if ok, why := c.src.intact(); ok != c.want || (!ok && why == "") {
			t.Errorf("%s: intact() = %v, %q; want %v", c.name, ok, why, c.want)
		}
	}
}
