package memstorage_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cdmdr/mirror/plugins/sdk"
	"github.com/cdmdr/mirror/plugins/sdk/memstorage"
)

// replaying returns a backend and a volume of it whose first copy is
// complete.
func replaying(t *testing.T) (*memstorage.Backend, sdk.Volume) {
	t.Helper()
	b, vol := started(t, &clock{now: time.Now()}, 0)
	if st, _ := b.VolumeStatus(t.Context(), vol); st.State != sdk.ReplicationReplaying {
		t.Fatalf("VolumeStatus after start = %+v, want replaying", st)
	}
	return b, vol
}

func leftovers(t *testing.T, b *memstorage.Backend, q sdk.LeftoverQuery) []string {
	t.Helper()
	list, err := b.FindLeftovers(t.Context(), q)
	if err != nil {
		t.Fatalf("FindLeftovers on storage %d: %v", q.Storage.StorageID, err)
	}
	var out []string
	for _, l := range list {
		if l.Kind == "" || l.Name == "" || l.Description == "" || l.Remedy == "" {
			t.Errorf("leftover %+v: every field must be set", l)
		}
		out = append(out, l.Kind+" "+l.Name)
	}
	return out
}

func wantRetryable(t *testing.T, what string, err error, storage sdk.Storage) {
	t.Helper()
	name := fmt.Sprintf("storage clusters.%d.storages.%d unreachable", storage.ClusterID, storage.StorageID)
	if !errors.Is(err, sdk.ErrRetryable) || !strings.Contains(err.Error(), name) {
		t.Fatalf("%s = %v, want ErrRetryable saying %q", what, err, name)
	}
}

// TestCutStorage: what needs a cut storage fails with ErrRetryable naming
// it, what does not still answers, and restore brings it back. Cuts add
// up.
func TestCutStorage(t *testing.T) {
	ctx := t.Context()
	b, vol := replaying(t)
	env := vol.Environment
	snap := sdk.Snapshot{Volume: vol, SnapshotUUID: "s-1"}
	b.AddSourceSnapshot(vol.VolumeUUID, snap.SnapshotUUID)

	restore := b.CutStorage(env.Source)
	again := b.CutStorage(env.Source)
	for what, err := range map[string]error{
		"PrepareEnvironment": b.PrepareEnvironment(ctx, env),
		"StartVolume":        b.StartVolume(ctx, vol),
		"ResumeVolume":       b.ResumeVolume(ctx, vol),
		"AddSnapshot":        b.AddSnapshot(ctx, snap),
		"RemoveSnapshot":     b.RemoveSnapshot(ctx, snap),
		"EnvironmentStatus":  func() error { _, err := b.EnvironmentStatus(ctx, env); return err }(),
		"FindLeftovers":      func() error { _, err := b.FindLeftovers(ctx, sdk.LeftoverQuery{Storage: env.Source}); return err }(),
	} {
		wantRetryable(t, what+" with the source cut", err, env.Source)
	}
	if st, err := b.VolumeStatus(ctx, vol); err != nil || st.State != sdk.ReplicationReplaying {
		t.Fatalf("VolumeStatus with the source cut = %+v, %v; want replaying (read on the target)", st, err)
	}
	if _, err := b.VolumeStatuses(ctx, env, []sdk.Volume{vol}); err != nil {
		t.Fatalf("VolumeStatuses with the source cut: %v", err)
	}
	if err := b.PauseVolume(ctx, vol); err != nil {
		t.Fatalf("PauseVolume with the source cut: %v (replay stops on the target)", err)
	}
	restore()
	restore() // idempotent: the other cut still holds
	wantRetryable(t, "ResumeVolume with one of two cuts restored", b.ResumeVolume(ctx, vol), env.Source)
	again()
	if err := b.ResumeVolume(ctx, vol); err != nil {
		t.Fatalf("ResumeVolume once restored: %v", err)
	}

	restore = b.CutStorage(env.Target)
	for what, err := range map[string]error{
		"VolumeStatus":   func() error { _, err := b.VolumeStatus(ctx, vol); return err }(),
		"VolumeStatuses": func() error { _, err := b.VolumeStatuses(ctx, env, []sdk.Volume{vol}); return err }(),
		"PauseVolume":    b.PauseVolume(ctx, vol),
		"StopVolume":     reportless(b.StopVolume(ctx, vol)),
		"DeleteTarget":   b.DeleteTarget(ctx, vol),
		"SnapshotStatus": func() error { _, err := b.SnapshotStatus(ctx, snap); return err }(),
	} {
		wantRetryable(t, what+" with the target cut", err, env.Target)
	}
	restore()
	if st := b.Replication(vol.VolumeUUID); st.State != sdk.ReplicationReplaying {
		t.Fatalf("replication after calls refused with the target cut = %+v, want replaying", st)
	}
}

// TestCutFile: over the wire, a storage is cut while the file its
// metadata names exists.
func TestCutFile(t *testing.T) {
	cut := memstorage.CutFile(t.TempDir() + "/cut")
	b := memstorage.New(memstorage.AutoSource())
	h := newHarness(b, func(vol, snap string) json.RawMessage { return listing(vol, snap, "", string(cut)) })
	restore, err := cut.Cut()
	if err != nil {
		t.Fatal(err)
	}
	wantRetryable(t, "PrepareEnvironment with the cut file present", b.PrepareEnvironment(t.Context(), h.env), h.env.Source)
	restore()
	restore()
	if err := b.PrepareEnvironment(t.Context(), h.env); err != nil {
		t.Fatalf("PrepareEnvironment once the cut file is gone: %v", err)
	}
}

// TestStopWithSourceCut: a complete copy is kept standalone and the
// replication left on the source is reported and recorded on the target;
// an incomplete one cannot be kept.
func TestStopWithSourceCut(t *testing.T) {
	ctx := t.Context()
	b, vol := replaying(t)
	env := vol.Environment
	restore := b.CutStorage(env.Source)
	rep, err := b.StopVolume(ctx, vol)
	if err != nil || len(rep.Leftovers) != 1 || !strings.Contains(rep.Leftovers[0], vol.VolumeUUID) ||
		!strings.Contains(rep.Leftovers[0], "still set up on the source") {
		t.Fatalf("StopVolume with the source cut = %q, %v; want nil and the source's replication reported", rep.Leftovers, err)
	}
	if st := b.Replication(vol.VolumeUUID); st.State != sdk.ReplicationAbsent || !st.TargetExists {
		t.Fatalf("replication after the stop = %+v, want absent with the copy kept", st)
	}
	if rep, err := b.StopVolume(ctx, vol); err != nil || len(rep.Leftovers) != 0 {
		t.Fatalf("StopVolume again = %q, %v; want nil, nothing more to report", rep.Leftovers, err)
	}
	want := []string{"volume volume " + vol.VolumeUUID + " on storage clusters.1.storages." + fmt.Sprint(env.Source.StorageID)}
	q := sdk.LeftoverQuery{Storage: env.Target, Environments: []sdk.Environment{env}, Volumes: []sdk.Volume{vol}}
	if got := leftovers(t, b, q); !slices.Equal(got, want) {
		t.Fatalf("FindLeftovers on the target = %q, want %q", got, want)
	}
	restore()
	if got := leftovers(t, b, q); !slices.Equal(got, want) {
		t.Fatalf("FindLeftovers on the target, the source back = %q, want %q", got, want)
	}
	// A destroy with the source back ends the replication there.
	if rep, err := b.DestroyVolume(ctx, vol); err != nil || len(rep.Leftovers) != 0 {
		t.Fatalf("DestroyVolume, the source back = %q, %v", rep.Leftovers, err)
	}
	if got := leftovers(t, b, q); len(got) != 0 {
		t.Fatalf("FindLeftovers after the destroy = %q, want none", got)
	}
	if st := b.Replication(vol.VolumeUUID); !st.TargetExists {
		t.Fatalf("replication after the destroy = %+v: the standalone copy is the user's", st)
	}
}

func TestStopIncompleteWithSourceCut(t *testing.T) {
	ctx := t.Context()
	clk := &clock{now: time.Now()}
	b, vol := started(t, clk, 10*time.Second)
	clk.Add(3 * time.Second)
	if err := b.PauseVolume(ctx, vol); err != nil {
		t.Fatal(err)
	}
	restore := b.CutStorage(vol.Environment.Source)
	defer restore()
	err := reportless(b.StopVolume(ctx, vol))
	if !errors.Is(err, sdk.ErrPrecondition) || errors.Is(err, sdk.ErrRetryable) || !strings.Contains(err.Error(), "30% done") {
		t.Fatalf("StopVolume of a 30%% copy with the source cut = %v, want ErrPrecondition (not retryable) saying how far it is", err)
	}
	if st := b.Replication(vol.VolumeUUID); st.State != sdk.ReplicationPaused {
		t.Fatalf("replication after the refused stop = %+v, want paused (nothing changed)", st)
	}
}

// TestDestroyWithSourceCut: the replicated copy, maybe the last one, is
// kept standalone, reported and recorded; once the source is back a
// destroy ends its replication there and DeleteTarget removes the copy.
func TestDestroyWithSourceCut(t *testing.T) {
	ctx := t.Context()
	b, vol := replaying(t)
	env := vol.Environment
	restore := b.CutStorage(env.Source)
	rep, err := b.DestroyVolume(ctx, vol)
	if err != nil || len(rep.Leftovers) != 2 || !strings.Contains(rep.Leftovers[0], "last copy") {
		t.Fatalf("DestroyVolume with the source cut = %q, %v; want nil, the kept copy and the source's replication reported",
			rep.Leftovers, err)
	}
	if st := b.Replication(vol.VolumeUUID); st.State != sdk.ReplicationAbsent || !st.TargetExists {
		t.Fatalf("replication after the destroy = %+v, want absent with the copy kept", st)
	}
	restore()
	q := sdk.LeftoverQuery{Storage: env.Target, Environments: []sdk.Environment{env}, Volumes: []sdk.Volume{vol}}
	if got := leftovers(t, b, q); len(got) != 2 || !strings.HasPrefix(got[0], "copy ") || !strings.HasPrefix(got[1], "volume ") {
		t.Fatalf("FindLeftovers on the target = %q, want the kept copy and the source's replication", got)
	}
	if _, err := b.DestroyVolume(ctx, vol); err != nil {
		t.Fatal(err)
	}
	if got := leftovers(t, b, q); len(got) != 1 || !strings.HasPrefix(got[0], "copy ") {
		t.Fatalf("FindLeftovers after a destroy with the source back = %q, want the kept copy only", got)
	}
	if err := b.DeleteTarget(ctx, vol); err != nil {
		t.Fatal(err)
	}
	if got := leftovers(t, b, q); len(got) != 0 {
		t.Fatalf("FindLeftovers after DeleteTarget = %q, want none", got)
	}
}

// TestDestroyWithTargetCut: the copy cannot be deleted; that is reported
// and recorded on the source, and a destroy with the target back does it.
func TestDestroyWithTargetCut(t *testing.T) {
	ctx := t.Context()
	b, vol := replaying(t)
	env := vol.Environment
	restore := b.CutStorage(env.Target)
	rep, err := b.DestroyVolume(ctx, vol)
	if err != nil || len(rep.Leftovers) != 1 || !strings.Contains(rep.Leftovers[0], vol.VolumeUUID) {
		t.Fatalf("DestroyVolume with the target cut = %q, %v; want nil and the copy left reported", rep.Leftovers, err)
	}
	q := sdk.LeftoverQuery{Storage: env.Source, Environments: []sdk.Environment{env}, Volumes: []sdk.Volume{vol}}
	if got := leftovers(t, b, q); len(got) != 1 || !strings.HasPrefix(got[0], "copy ") {
		t.Fatalf("FindLeftovers on the source = %q, want the copy left", got)
	}
	restore()
	if st := b.Replication(vol.VolumeUUID); st.State != sdk.ReplicationReplaying {
		t.Fatalf("replication, the target back = %+v, want as it was (replaying)", st)
	}
	if rep, err := b.DestroyVolume(ctx, vol); err != nil || len(rep.Leftovers) != 0 {
		t.Fatalf("DestroyVolume, the target back = %q, %v", rep.Leftovers, err)
	}
	if st := b.Replication(vol.VolumeUUID); st.State != sdk.ReplicationAbsent || st.TargetExists {
		t.Fatalf("replication after the destroy = %+v, want absent, the copy deleted (the source is intact)", st)
	}
	if got := leftovers(t, b, q); len(got) != 0 {
		t.Fatalf("FindLeftovers on the source after the destroy = %q, want none", got)
	}
}

func TestDestroyBothCut(t *testing.T) {
	b, vol := replaying(t)
	defer b.CutStorage(vol.Environment.Source)()
	defer b.CutStorage(vol.Environment.Target)()
	if _, err := b.DestroyVolume(t.Context(), vol); !errors.Is(err, sdk.ErrRetryable) {
		t.Fatalf("DestroyVolume with both storages cut = %v, want ErrRetryable (it could not even try)", err)
	}
	if st := b.Replication(vol.VolumeUUID); st.State != sdk.ReplicationReplaying {
		t.Fatalf("replication after the failed destroy = %+v, want replaying", st)
	}
}

// TestTeardownWithSourceCut: the pairing ends on the target; what is left
// on the source is reported, recorded on the target, found on the source
// once it is back, and a teardown then ends it.
func TestTeardownWithSourceCut(t *testing.T) {
	ctx := t.Context()
	b, vol := replaying(t)
	env := vol.Environment
	restore := b.CutStorage(env.Source)
	if err := reportless(b.TeardownEnvironment(ctx, env, false)); !errors.Is(err, sdk.ErrPrecondition) {
		t.Fatalf("TeardownEnvironment with a replicated volume and the source cut = %v, want ErrPrecondition", err)
	}
	if err := reportless(b.StopVolume(ctx, vol)); err != nil {
		t.Fatal(err)
	}
	rep, err := b.TeardownEnvironment(ctx, env, false)
	if err != nil || len(rep.Leftovers) != 1 || !strings.Contains(rep.Leftovers[0], "pairing of environment "+env.ID) {
		t.Fatalf("TeardownEnvironment with the source cut = %q, %v; want nil and the source's pairing reported", rep.Leftovers, err)
	}
	target := sdk.LeftoverQuery{Storage: env.Target, Environments: []sdk.Environment{env}, Volumes: []sdk.Volume{vol}}
	if got := leftovers(t, b, target); len(got) != 2 || !strings.HasPrefix(got[1], "pairing ") {
		t.Fatalf("FindLeftovers on the target = %q, want the stop's record and the pairing left on the source", got)
	}
	restore()
	if h, err := b.EnvironmentStatus(ctx, env); err != nil || h.Ready {
		t.Fatalf("EnvironmentStatus, the source back = %+v, %v; want not ready", h, err)
	}
	if got := leftovers(t, b, sdk.LeftoverQuery{Storage: env.Source}); len(got) != 1 || !strings.HasPrefix(got[0], "pairing ") {
		t.Fatalf("FindLeftovers on the source, no environment known = %q, want its half of the pairing", got)
	}
	if rep, err := b.TeardownEnvironment(ctx, env, false); err != nil || len(rep.Leftovers) != 0 {
		t.Fatalf("TeardownEnvironment, the source back = %q, %v", rep.Leftovers, err)
	}
	if got := leftovers(t, b, target); len(got) != 1 || !strings.HasPrefix(got[0], "volume ") {
		t.Fatalf("FindLeftovers on the target after the teardown = %q, want the stop's record only", got)
	}
	if got := leftovers(t, b, sdk.LeftoverQuery{Storage: env.Source}); len(got) != 0 {
		t.Fatalf("FindLeftovers on the source after the teardown = %q, want none", got)
	}

	defer b.CutStorage(env.Source)()
	defer b.CutStorage(env.Target)()
	if err := b.PrepareEnvironment(ctx, env); err == nil {
		t.Fatal("PrepareEnvironment with both storages cut succeeded")
	}
	if err := reportless(b.TeardownEnvironment(ctx, env, false)); !errors.Is(err, sdk.ErrRetryable) {
		t.Fatalf("TeardownEnvironment with both storages cut = %v, want ErrRetryable (nothing could be torn down)", err)
	}
}

// TestForcedTeardown: force ends the pairing with volumes replicated,
// keeps them as they are and lists them; nothing but force does.
func TestForcedTeardown(t *testing.T) {
	ctx := t.Context()
	b, vol := replaying(t)
	env := vol.Environment
	if err := reportless(b.TeardownEnvironment(ctx, env, false)); !errors.Is(err, sdk.ErrPrecondition) {
		t.Fatalf("TeardownEnvironment with a replicated volume = %v, want ErrPrecondition", err)
	}
	rep, err := b.TeardownEnvironment(ctx, env, true)
	if err != nil || len(rep.Leftovers) != 1 || !strings.Contains(rep.Leftovers[0], vol.VolumeUUID) {
		t.Fatalf("TeardownEnvironment(force) = %q, %v; want nil and the volume listed", rep.Leftovers, err)
	}
	if h, _ := b.EnvironmentStatus(ctx, env); h.Ready {
		t.Fatal("environment ready after a forced teardown")
	}
	if st := b.Replication(vol.VolumeUUID); st.State != sdk.ReplicationReplaying || !st.TargetExists {
		t.Fatalf("replication after a forced teardown = %+v, want as it was", st)
	}
	// The daemon's records no longer hold it: the volume is a leftover.
	if got := leftovers(t, b, sdk.LeftoverQuery{Storage: env.Target}); len(got) != 1 || !strings.HasPrefix(got[0], "volume ") {
		t.Fatalf("FindLeftovers, no volume known = %q, want the replicated volume", got)
	}
}

// TestFindLeftoversQuery: prepared environments and replicated volumes on
// the storage are leftovers unless the query accounts for them; those of
// other storages are not listed.
func TestFindLeftoversQuery(t *testing.T) {
	b, vol := replaying(t)
	env := vol.Environment
	got := leftovers(t, b, sdk.LeftoverQuery{Storage: env.Source})
	if len(got) != 2 || !strings.HasPrefix(got[0], "pairing pairing of environment "+env.ID) || !strings.Contains(got[1], vol.VolumeUUID) {
		t.Fatalf("FindLeftovers, nothing known = %q, want the pairing and the volume", got)
	}
	if got := leftovers(t, b, sdk.LeftoverQuery{Storage: env.Source, Environments: []sdk.Environment{env}}); len(got) != 1 {
		t.Fatalf("FindLeftovers, the environment known = %q, want the volume only", got)
	}
	if got := leftovers(t, b, sdk.LeftoverQuery{Storage: env.Target, Environments: []sdk.Environment{env},
		Volumes: []sdk.Volume{vol}}); len(got) != 0 {
		t.Fatalf("FindLeftovers, both known = %q, want none", got)
	}
	other := sdk.Storage{ClusterID: 9, StorageID: 99}
	if got := leftovers(t, b, sdk.LeftoverQuery{Storage: other}); len(got) != 0 {
		t.Fatalf("FindLeftovers on an unrelated storage = %q, want none", got)
	}
}

// TestDestroyWithSourceGone: a source that answers but no longer holds
// the volume does not make the copy deletable: it may be the last one.
func TestDestroyWithSourceGone(t *testing.T) {
	ctx := t.Context()
	b, vol := replaying(t)
	b.RemoveSourceVolume(vol.VolumeUUID)
	rep, err := b.DestroyVolume(ctx, vol)
	if err != nil || len(rep.Leftovers) != 1 || !strings.Contains(rep.Leftovers[0], "not found on the source") {
		t.Fatalf("DestroyVolume with the source volume gone = %q, %v; want nil and the kept copy reported", rep.Leftovers, err)
	}
	if st := b.Replication(vol.VolumeUUID); st.State != sdk.ReplicationAbsent || !st.TargetExists {
		t.Fatalf("replication after the destroy = %+v, want absent with the copy kept", st)
	}
	if err := b.StartVolume(ctx, vol); !errors.Is(err, sdk.ErrNotFound) {
		t.Fatalf("StartVolume of a volume gone from the source = %v, want ErrNotFound", err)
	}
}
