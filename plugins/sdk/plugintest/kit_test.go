package plugintest_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cdmdr/mirror/plugins/sdk"
	"github.com/cdmdr/mirror/plugins/sdk/memstorage"
	"github.com/cdmdr/mirror/plugins/sdk/plugintest"
)

// The kit must fail a backend that breaks the contract, with a message
// saying what the backend did and what the contract wants. Each broken
// backend below is memstorage with one fault; the kit runs on it in a
// child process (a failing kit fails its test), and the parent reads the
// child's verdict.

// brokenEnv names, in the child, which broken backend the kit runs on.
const brokenEnv = "PLUGINTEST_BROKEN_BACKEND"

var brokenBackends = []struct {
	name string
	// harness wraps a fresh memstorage harness into the broken one.
	harness func(h *harness) plugintest.Harness
	// failing is the subtest that must fail, want what it must say.
	failing, want string
	// passing are subtests that must pass all the same: the fault is
	// caught by the subtest meant for it.
	passing []string
}{
	{
		name: "stop-keeps-partial-copy",
		harness: func(h *harness) plugintest.Harness {
			h.b = partialStop{h.b}
			return h
		},
		failing: "StopDuringFirstCopy",
		want: "StopVolume returned nil while the first copy was held: the contract forbids keeping a partial copy; " +
			"return ErrInProgress until the copy is complete",
		passing: []string{"VolumeLifecycle", "DeleteTarget", "TeardownWaitsForVolumes", "Destroy", "CancelledContext"},
	},
	{
		name:    "harness-cannot-hold",
		harness: func(h *harness) plugintest.Harness { return noHold{h} },
		failing: "StopDuringFirstCopy",
		want:    "does not implement plugintest.FirstCopyHolder",
		passing: []string{"VolumeLifecycle"},
	},
	{
		name: "error-formatted-with-v",
		harness: func(h *harness) plugintest.Harness {
			h.b = flatErrors{h.b}
			return h
		},
		failing: "NotReplicated",
		want:    `which does not wrap sdk.ErrNotFound (errors.Is is false: the daemon will not see it); wrap it with %w`,
	},
	{
		name: "replaying-without-target",
		harness: func(h *harness) plugintest.Harness {
			h.b = noTarget{h.b}
			return h
		},
		failing: "VolumeLifecycle",
		want:    "TargetExists is false, the contract wants true (a replaying volume is followed by a copy on the target)",
	},
	{
		name: "destroy-deletes-standalone-copy",
		harness: func(h *harness) plugintest.Harness {
			h.b = destroyAll{h.b}
			return h
		},
		failing: "DestroyKeepsStandaloneCopy",
		want: "DestroyVolume deleted the standalone copy StopVolume kept: that copy is the user's volume, " +
			"and only DeleteTarget removes it",
		passing: []string{"Destroy"},
	},
	{
		name: "volume-statuses-out-of-order",
		harness: func(h *harness) plugintest.Harness {
			h.b = reversedStatuses{h.b}
			return h
		},
		failing: "VolumeStatuses",
		want:    "a volume that exists nowhere is absent; if this is the harness's volume's answer, the answers are not in the order asked",
		passing: []string{"VolumeLifecycle"},
	},
	{
		name: "volume-statuses-never-change",
		harness: func(h *harness) plugintest.Harness {
			h.b = staleStatuses{h.b}
			return h
		},
		failing: "VolumeStatuses",
		want: "did not report the harness's volume (answer 2) replaying with a copy on the target within 2s " +
			"(the harness's Timeout); its last answer for it = {State:absent",
		passing: []string{"VolumeLifecycle"},
	},
	{
		name: "volume-statuses-ignore-ctx",
		harness: func(h *harness) plugintest.Harness {
			h.b = statusesIgnoreCtx{h.b}
			return h
		},
		failing: "CancelledContext",
		want:    "VolumeStatuses with a cancelled ctx returned <nil>; the contract wants an error wrapping ctx.Err() (context.Canceled)",
		passing: []string{"VolumeStatuses"},
	},
	{
		name:    "harness-cannot-cut",
		harness: func(h *harness) plugintest.Harness { return noCut{h} },
		failing: "StopWithSourceLost",
		want:    "does not implement plugintest.SourceCutter",
		passing: []string{"VolumeLifecycle", "StopDuringFirstCopy", "ForcedTeardown"},
	},
	{
		name: "stop-retryable-with-source-lost",
		harness: func(h *harness) plugintest.Harness {
			h.b = stopNeedsSource{h.b, h, false}
			return h
		},
		failing: "StopWithSourceLost",
		want: "StopVolume with the source storage unreachable returned memstorage: the source is unreachable: retryable; " +
			"the contract wants nil once the complete copy is kept standalone on the target, without waiting for the source",
		passing: []string{"VolumeLifecycle", "StopDuringFirstCopy", "DestroyKeepsLastCopy"},
	},
	{
		name: "stop-waits-for-lost-source",
		harness: func(h *harness) plugintest.Harness {
			h.b = stopNeedsSource{h.b, h, true}
			return h
		},
		failing: "StopWithSourceLost",
		want:    "it waited for the unreachable storage until its ctx ended",
		passing: []string{"VolumeLifecycle"},
	},
	{
		name: "destroy-deletes-last-copy",
		harness: func(h *harness) plugintest.Harness {
			h.b = destroyWithoutSource{h.b, h}
			return h
		},
		failing: "DestroyKeepsLastCopy",
		want: "TargetExists is false, the contract wants true: with the source unreachable the target copy may be " +
			"the volume's last one, and is never deleted",
		passing: []string{"Destroy", "DestroyKeepsStandaloneCopy", "StopWithSourceLost"},
	},
	{
		name: "teardown-needs-source",
		harness: func(h *harness) plugintest.Harness {
			h.b = teardownNeedsSource{h.b, h}
			return h
		},
		failing: "TeardownWithSourceLost",
		want:    "TeardownEnvironment (not forced) with the source storage unreachable, no volume replicated returned",
		passing: []string{"Environment", "TeardownWaitsForVolumes", "ForcedTeardown"},
	},
	{
		name: "forced-teardown-refuses",
		harness: func(h *harness) plugintest.Harness {
			h.b = forceIgnored{h.b}
			return h
		},
		failing: "ForcedTeardown",
		want:    "TeardownEnvironment(force) with a replicated volume returned",
		passing: []string{"TeardownWaitsForVolumes", "TeardownWithSourceLost"},
	},
	{
		name: "leftovers-forget-records",
		harness: func(h *harness) plugintest.Harness {
			h.b = noLeftovers{h.b}
			return h
		},
		failing: "StopWithSourceLost/FindLeftovers",
		want:    "asked with no environment or volume, listed [], nothing naming the volume",
	},
	{
		name: "leftovers-ignore-query",
		harness: func(h *harness) plugintest.Harness {
			h.b = leftoversIgnoreQuery{h.b}
			return h
		},
		failing: "StopWithSourceLost/FindLeftovers",
		want:    "the contract wants nothing the query accounts for listed, only what earlier calls recorded",
	},
}

func TestKitFailsBrokenBackends(t *testing.T) {
	if name := os.Getenv(brokenEnv); name != "" {
		for _, bb := range brokenBackends {
			if bb.name == name {
				plugintest.Run(t, func(t *testing.T) plugintest.Harness { return bb.harness(newHarness(t)) })
				return
			}
		}
		t.Fatalf("no broken backend %q", name)
	}
	for _, bb := range brokenBackends {
		t.Run(bb.name, func(t *testing.T) {
			// Only the subtests the verdict is about run: a fault makes
			// every wait of the others last the harness's Timeout.
			subtests := append([]string{strings.Split(bb.failing, "/")[0]}, bb.passing...)
			run := "-test.run=^TestKitFailsBrokenBackends$/^(" + strings.Join(subtests, "|") + ")$"
			cmd := exec.CommandContext(t.Context(), os.Args[0], run, "-test.v", "-test.count=1")
			cmd.Env = append(os.Environ(), brokenEnv+"="+bb.name)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("the kit passed a backend with the fault %q:\n%s", bb.name, out)
			}
			if !strings.Contains(string(out), "--- FAIL: TestKitFailsBrokenBackends/"+bb.failing+" ") {
				t.Errorf("subtest %s did not fail on the fault %q", bb.failing, bb.name)
			}
			if !strings.Contains(string(out), bb.want) {
				t.Errorf("the kit's verdict on the fault %q does not say %q", bb.name, bb.want)
			}
			for _, p := range bb.passing {
				if !strings.Contains(string(out), "--- PASS: TestKitFailsBrokenBackends/"+p+" ") {
					t.Errorf("subtest %s did not pass with the fault %q, which it is not meant to catch", p, bb.name)
				}
			}
			if t.Failed() {
				t.Logf("the kit's output:\n%s", out)
			}
		})
	}
}

var storageIDs atomic.Uint64

// harness is memstorage in-process, its first copy held and its source
// cut through the backend.
type harness struct {
	mem  *memstorage.Backend
	b    sdk.Backend
	env  sdk.Environment
	vol  sdk.Volume
	snap sdk.Snapshot
	// sourceCut: CutSource cut the source and has not restored it; the
	// faults that show with the source lost look at it.
	sourceCut *atomic.Bool
}

func newHarness(*testing.T) *harness {
	src, dst := storageIDs.Add(1), storageIDs.Add(1)
	mem := memstorage.New()
	storage := func(cluster, id uint64) sdk.Storage {
		return sdk.Storage{ClusterID: cluster, StorageID: id, Type: memstorage.DefaultType, BackendName: "memory"}
	}
	env := sdk.Environment{ID: fmt.Sprintf("storage.%d.%d", src, dst), Source: storage(1, src), Target: storage(2, dst)}
	vol := sdk.Volume{Environment: env, ClusterID: 1, VolumeID: src, VolumeUUID: plugintest.NewUUID()}
	snap := sdk.Snapshot{Volume: vol, SnapshotID: src, SnapshotUUID: plugintest.NewUUID()}
	mem.AddSourceSnapshot(vol.VolumeUUID, snap.SnapshotUUID)
	return &harness{mem: mem, b: mem, env: env, vol: vol, snap: snap, sourceCut: new(atomic.Bool)}
}

func (h *harness) Backend() sdk.Backend         { return h.b }
func (h *harness) Environment() sdk.Environment { return h.env }
func (h *harness) Volume() sdk.Volume           { return h.vol }
func (h *harness) Snapshot() sdk.Snapshot       { return h.snap }
func (h *harness) Timeout() time.Duration       { return 2 * time.Second }

func (h *harness) HoldFirstCopy(*testing.T) (release func()) {
	return h.mem.HoldFirstCopy(h.vol.VolumeUUID)
}

func (h *harness) CutSource(*testing.T) (restore func()) {
	h.sourceCut.Store(true)
	r := h.mem.CutStorage(h.env.Source)
	return func() { r(); h.sourceCut.Store(false) }
}

// noHold is a harness that cannot hold the first copy.
type noHold struct{ h *harness }

func (n noHold) Backend() sdk.Backend         { return n.h.Backend() }
func (n noHold) Environment() sdk.Environment { return n.h.Environment() }
func (n noHold) Volume() sdk.Volume           { return n.h.Volume() }
func (n noHold) Snapshot() sdk.Snapshot       { return n.h.Snapshot() }
func (n noHold) Timeout() time.Duration       { return n.h.Timeout() }

// partialStop ends replication during the first copy, keeps nothing and
// returns nil: what a fast storage's kit run never shows.
type partialStop struct{ sdk.Backend }

func (p partialStop) StopVolume(ctx context.Context, vol sdk.Volume) (sdk.CleanupReport, error) {
	if st, err := p.VolumeStatus(ctx, vol); err == nil && st.State == sdk.ReplicationSyncing {
		return sdk.CleanupReport{}, p.DeleteTarget(ctx, vol)
	}
	return p.Backend.StopVolume(ctx, vol)
}

// flatErrors formats its errors with %v: the text survives, the sentinel
// does not.
type flatErrors struct{ sdk.Backend }

func (f flatErrors) StartVolume(ctx context.Context, vol sdk.Volume) error {
	if err := f.Backend.StartVolume(ctx, vol); err != nil {
		return fmt.Errorf("start volume: %v", err)
	}
	return nil
}

// noTarget never reports a copy on the target.
type noTarget struct{ sdk.Backend }

func (n noTarget) VolumeStatus(ctx context.Context, vol sdk.Volume) (sdk.VolumeReplication, error) {
	st, err := n.Backend.VolumeStatus(ctx, vol)
	st.TargetExists = false
	return st, err
}

// destroyAll deletes the target copy, standalone or not.
type destroyAll struct{ sdk.Backend }

func (d destroyAll) DestroyVolume(ctx context.Context, vol sdk.Volume) (sdk.CleanupReport, error) {
	rep, err := d.Backend.DestroyVolume(ctx, vol)
	if err == nil {
		err = d.DeleteTarget(ctx, vol)
	}
	return rep, err
}

// reversedStatuses answers VolumeStatuses in reverse order.
type reversedStatuses struct{ sdk.Backend }

func (r reversedStatuses) VolumeStatuses(ctx context.Context, env sdk.Environment, vols []sdk.Volume) ([]sdk.VolumeReplication, error) {
	reps, err := r.Backend.VolumeStatuses(ctx, env, vols)
	slices.Reverse(reps)
	return reps, err
}

// staleStatuses answers VolumeStatuses as if nothing were ever replicated.
type staleStatuses struct{ sdk.Backend }

func (s staleStatuses) VolumeStatuses(ctx context.Context, env sdk.Environment, vols []sdk.Volume) ([]sdk.VolumeReplication, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	reps := make([]sdk.VolumeReplication, len(vols))
	for i := range reps {
		reps[i].State = sdk.ReplicationAbsent
	}
	return reps, nil
}

// statusesIgnoreCtx answers VolumeStatuses whether or not ctx ended.
type statusesIgnoreCtx struct{ sdk.Backend }

func (s statusesIgnoreCtx) VolumeStatuses(ctx context.Context, env sdk.Environment, vols []sdk.Volume) ([]sdk.VolumeReplication, error) {
	return s.Backend.VolumeStatuses(context.WithoutCancel(ctx), env, vols)
}

// noCut is a harness that cannot cut its source.
type noCut struct{ h *harness }

func (n noCut) Backend() sdk.Backend         { return n.h.Backend() }
func (n noCut) Environment() sdk.Environment { return n.h.Environment() }
func (n noCut) Volume() sdk.Volume           { return n.h.Volume() }
func (n noCut) Snapshot() sdk.Snapshot       { return n.h.Snapshot() }
func (n noCut) Timeout() time.Duration       { return n.h.Timeout() }

func (n noCut) HoldFirstCopy(t *testing.T) (release func()) { return n.h.HoldFirstCopy(t) }

// errSourceLost is what the faults below answer with the source cut: a
// plugin that needs the source for everything.
var errSourceLost = fmt.Errorf("memstorage: the source is unreachable: %w", sdk.ErrRetryable)

// stopNeedsSource fails a stop with the source cut, or, waiting, retries
// it until ctx ends.
type stopNeedsSource struct {
	sdk.Backend
	h    *harness
	wait bool
}

func (s stopNeedsSource) StopVolume(ctx context.Context, vol sdk.Volume) (sdk.CleanupReport, error) {
	if !s.h.sourceCut.Load() {
		return s.Backend.StopVolume(ctx, vol)
	}
	if s.wait {
		<-ctx.Done()
		return sdk.CleanupReport{}, fmt.Errorf("memstorage: retried until: %w", ctx.Err())
	}
	return sdk.CleanupReport{}, errSourceLost
}

// destroyWithoutSource deletes the target copy even with the source cut.
type destroyWithoutSource struct {
	sdk.Backend
	h *harness
}

func (d destroyWithoutSource) DestroyVolume(ctx context.Context, vol sdk.Volume) (sdk.CleanupReport, error) {
	rep, err := d.Backend.DestroyVolume(ctx, vol)
	if err == nil && d.h.sourceCut.Load() {
		err = d.DeleteTarget(ctx, vol)
	}
	return rep, err
}

// teardownNeedsSource fails a teardown with the source cut.
type teardownNeedsSource struct {
	sdk.Backend
	h *harness
}

func (d teardownNeedsSource) TeardownEnvironment(ctx context.Context, env sdk.Environment, force bool) (sdk.CleanupReport, error) {
	if d.h.sourceCut.Load() {
		return sdk.CleanupReport{}, errSourceLost
	}
	return d.Backend.TeardownEnvironment(ctx, env, force)
}

// forceIgnored tears down as if never forced.
type forceIgnored struct{ sdk.Backend }

func (f forceIgnored) TeardownEnvironment(ctx context.Context, env sdk.Environment, _ bool) (sdk.CleanupReport, error) {
	return f.Backend.TeardownEnvironment(ctx, env, false)
}

// noLeftovers finds nothing, records included.
type noLeftovers struct{ sdk.Backend }

func (noLeftovers) FindLeftovers(ctx context.Context, _ sdk.LeftoverQuery) ([]sdk.Leftover, error) {
	return nil, ctx.Err()
}

// leftoversIgnoreQuery lists what the query accounts for too.
type leftoversIgnoreQuery struct{ sdk.Backend }

func (l leftoversIgnoreQuery) FindLeftovers(ctx context.Context, q sdk.LeftoverQuery) ([]sdk.Leftover, error) {
	return l.Backend.FindLeftovers(ctx, sdk.LeftoverQuery{Storage: q.Storage})
}
