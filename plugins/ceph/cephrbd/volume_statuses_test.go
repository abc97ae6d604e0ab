package cephrbd

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/ceph/go-ceph/rbd"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// sourceListed is a mirrored source image as the pool's lists show it,
// with the target site's status of it.
func sourceListed(mode rbd.ImageMirrorMode, remote rbd.SiteMirrorImageStatus) listedSource {
	remote.MirrorUUID = "target-site-uuid"
	return listedSource{
		status: rbd.GlobalMirrorImageStatus{
			Name: "volume-a",
			Info: rbd.MirrorImageInfo{GlobalID: "gid", State: rbd.MirrorImageEnabled, Primary: true},
			SiteStatuses: []rbd.SiteMirrorImageStatus{
				{State: rbd.MirrorImageStatusStateStopped, Up: true}, // the source site's own
				remote,
			},
		},
		mode: mode, modeOK: true,
	}
}

var (
	replayingRemote = rbd.SiteMirrorImageStatus{State: rbd.MirrorImageStatusStateReplaying, Up: true,
		Description: `replaying, {"entries_behind_primary":3}`, LastUpdate: 1700000000}
	followingCopy = listedTarget{id: "t1", mirrored: true,
		mirror: rbd.MirrorImageInfo{GlobalID: "gid", State: rbd.MirrorImageEnabled}}
)

// What the pool lists settle on their own, and what they leave to
// VolumeStatus (ok false).
func TestListedStatus(t *testing.T) {
	withSource := func(src listedSource, dst *listedTarget) poolsView {
		v := poolsView{pool: "volumes", storage: "6/13", paused: map[string]pausedImage{},
			sources: map[string]listedSource{"volume-a": src}, targets: map[string]listedTarget{}}
		if dst != nil {
			v.targets["volume-a"] = *dst
		}
		return v
	}
	kept := listedTarget{}
	disabling := sourceListed(rbd.ImageMirrorModeJournal, replayingRemote)
	disabling.status.Info.State = rbd.MirrorImageDisabling
	promoted := followingCopy
	promoted.mirror.Primary = true
	paused := withSource(sourceListed(rbd.ImageMirrorModeJournal, replayingRemote), &followingCopy)
	paused.paused["volumes/volume-a"] = pausedImage{Spec: "volumes/volume-a"}
	for _, c := range []struct {
		name       string
		view       poolsView
		copied     bool // VolumeStatus saw the snapshot-mode copy complete
		want       sdk.ReplicationState
		wantTarget bool
		wantOK     bool
	}{
		{name: "nothing anywhere", view: poolsView{}, want: sdk.ReplicationAbsent, wantOK: true},
		{name: "a copy a stop kept", view: poolsView{targets: map[string]listedTarget{"volume-a": kept}},
			want: sdk.ReplicationAbsent, wantTarget: true, wantOK: true},
		{name: "source being disabled", view: withSource(disabling, &followingCopy),
			want: sdk.ReplicationAbsent, wantTarget: true, wantOK: true},
		{name: "paused", view: paused, want: sdk.ReplicationPaused, wantTarget: true, wantOK: true},
		{name: "rbd-mirror reports an error",
			view: withSource(sourceListed(rbd.ImageMirrorModeJournal, rbd.SiteMirrorImageStatus{State: rbd.MirrorImageStatusStateError, Up: true}), &followingCopy),
			want: sdk.ReplicationFailed, wantTarget: true, wantOK: true},
		{name: "split brain", view: withSource(sourceListed(rbd.ImageMirrorModeJournal, replayingRemote), &promoted),
			want: sdk.ReplicationFailed, wantTarget: true, wantOK: true},
		{name: "journal mode replaying", view: withSource(sourceListed(rbd.ImageMirrorModeJournal, replayingRemote), &followingCopy),
			want: sdk.ReplicationReplaying, wantTarget: true, wantOK: true},
		{name: "snapshot mode replaying, copy seen complete", copied: true,
			view: withSource(sourceListed(rbd.ImageMirrorModeSnapshot, replayingRemote), &followingCopy),
			want: sdk.ReplicationReplaying, wantTarget: true, wantOK: true},
		{name: "snapshot mode replaying, copy not seen complete",
			view: withSource(sourceListed(rbd.ImageMirrorModeSnapshot, replayingRemote), &followingCopy)},
		{name: "journal mode syncing",
			view: withSource(sourceListed(rbd.ImageMirrorModeJournal, rbd.SiteMirrorImageStatus{State: rbd.MirrorImageStatusStateSyncing, Up: true}), &followingCopy)},
		{name: "no rbd-mirror up",
			view: withSource(sourceListed(rbd.ImageMirrorModeJournal, rbd.SiteMirrorImageStatus{State: rbd.MirrorImageStatusStateReplaying}), &followingCopy)},
		{name: "no copy yet", view: withSource(sourceListed(rbd.ImageMirrorModeJournal, replayingRemote), nil)},
		{name: "copy rbd-mirror is creating", view: withSource(sourceListed(rbd.ImageMirrorModeJournal, replayingRemote), &kept)},
		{name: "no status of the target site", view: withSource(listedSource{
			status: rbd.GlobalMirrorImageStatus{Info: rbd.MirrorImageInfo{State: rbd.MirrorImageEnabled, Primary: true}},
			mode:   rbd.ImageMirrorModeJournal, modeOK: true}, &followingCopy)},
	} {
		t.Run(c.name, func(t *testing.T) {
			b := New(sdkLoggerTo(io.Discard), t.TempDir())
			if c.copied {
				b.copied.Store(followingCopy.id, true)
			}
			got, ok := b.listedStatus(c.view, "volume-a")
			if ok != c.wantOK {
				t.Fatalf("settled %v (%+v), want %v", ok, got, c.wantOK)
			}
			if ok && (got.State != c.want || got.TargetExists != c.wantTarget) {
				t.Fatalf("= %+v, want %s with TargetExists %v", got, c.want, c.wantTarget)
			}
		})
	}
}

// A replaying answer carries what the target site's status says of the
// replay: its description, when it last synced, how far behind it is.
func TestListedStatusDescribesReplay(t *testing.T) {
	b := New(sdkLoggerTo(io.Discard), t.TempDir())
	view := poolsView{pool: "volumes",
		sources: map[string]listedSource{"volume-a": sourceListed(rbd.ImageMirrorModeJournal, replayingRemote)},
		targets: map[string]listedTarget{"volume-a": followingCopy}}
	got, ok := b.listedStatus(view, "volume-a")
	if !ok || got.Lag != "3 entries" || !got.LastSyncTime.Equal(time.Unix(1700000000, 0)) || got.Description != replayingRemote.Description {
		t.Fatalf("= %+v (settled %v), want the replay's lag, last sync and description", got, ok)
	}
}

func TestVolumeStatusesWithoutStorage(t *testing.T) {
	b := New(sdkLoggerTo(io.Discard), t.TempDir())
	env := sdk.Environment{ID: "e"}
	if reps, err := b.VolumeStatuses(t.Context(), env, nil); err != nil || len(reps) != 0 {
		t.Fatalf("VolumeStatuses of no volumes = %+v, %v; want no answers, no error", reps, err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := b.VolumeStatuses(ctx, env, []sdk.Volume{{Environment: env, VolumeUUID: "u"}}); !errors.Is(err, context.Canceled) {
		t.Fatalf("VolumeStatuses with a cancelled ctx = %v; want context.Canceled", err)
	}
}
