// Package plugintest is the conformance kit for storage plugins: one suite
// that checks a backend honours the storage contract (sdk.Backend, whose
// doc comments are the contract), which every plugin must pass, the
// vendors' as much as ours, and which the daemon's own backends pass too.
//
// A vendor writes a Harness (a backend, a pair of storages it can prepare,
// a volume and a snapshot that exist on the source, a way to hold the
// volume's first copy: FirstCopyHolder, and a way to cut the source off:
// SourceCutter) and runs the suite three ways from its tests: in-process
// with Run, through go-plugin's real gRPC shim with RunGRPC, and against
// the built plugin executable with RunBinary, which is what mirrord loads:
//
//	func TestConformance(t *testing.T) {
//		plugintest.RunGRPC(t, func(t *testing.T) plugintest.Harness {
//			return newHarness(t) // a fresh environment and volume
//		})
//	}
//
// Each subtest gets a fresh harness and, when it ends, destroys the volume,
// deletes its target copy and tears the environment down. A failure says
// what the backend did and what the contract wants.
//
// CutSource makes the source storage unreachable for the backend under
// test, as on the day the protection site is lost, until restore is
// called; the kit then checks that stop, destroy and teardown end within
// the harness's Timeout, keep the target copy and report what they left,
// and that FindLeftovers finds what they recorded. For a real storage,
// cut the network path from the plugin to the source and nothing else
// (drop the packets to its addresses, for Ceph its monitors and OSDs, or
// give the backend a source address that answers nothing), so that the
// backend sees what it would see of a lost site: calls that hang until
// their deadline, not a quick "connection refused". Restore must return
// once the source answers again. A cut costs the storage's own timeouts,
// so the kit cuts three times in all; keep the harness's Timeout above
// what one stop or destroy with the source lost takes. For a simulator,
// tell it (memstorage: CutStorage, or the file named by "cut_file" in
// the source storage's metadata, memstorage.CutFile).
package plugintest

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// Harness is one subtest's fixture: the backend under test and things
// that exist on its source storage.
type Harness interface {
	// Backend returns the backend under test.
	Backend() sdk.Backend
	// Environment returns a pair of storages the backend can prepare, of
	// a type it serves, not prepared yet. The suite prepares and tears it
	// down.
	Environment() sdk.Environment
	// Volume returns a volume of Environment that exists on the source and
	// is not replicated.
	Volume() sdk.Volume
	// Snapshot returns a snapshot of Volume that exists on the source.
	Snapshot() sdk.Snapshot
	// Timeout bounds each wait for a state the storage reaches on its own
	// (the first copy done, a snapshot ready, a target deleted), and each
	// cleanup.
	Timeout() time.Duration
}

// FirstCopyHolder: a Harness that can keep its Volume's first copy from
// completing. Every harness must implement it: a fast storage's first
// copy is done before the kit can stop it, and only a held copy shows
// whether StopVolume keeps a partial copy, which the contract forbids.
// For a real storage, throttle or pause the copy from outside the plugin
// (a replication daemon paused, bandwidth limited, a big volume); for a
// simulator, tell it.
type FirstCopyHolder interface {
	// HoldFirstCopy is called right after the kit's StartVolume of Volume()
	// returned. Until release is called, the first copy must not complete.
	HoldFirstCopy(t *testing.T) (release func())
}

// Run checks that the harnesses' backend honours the sdk.Backend
// contract. newHarness is called once per subtest. Features a backend
// does not offer (Info's Capabilities) are not checked.
func Run(t *testing.T, newHarness func(t *testing.T) Harness) {
	t.Helper()
	tests := []struct {
		name string
		run  func(t *testing.T, f *fixture)
	}{
		{"Info", testInfo},
		{"Environment", testEnvironment},
		{"StartNeedsEnvironment", testStartNeedsEnvironment},
		{"VolumeLifecycle", testVolumeLifecycle},
		{"StopDuringFirstCopy", testStopDuringFirstCopy},
		{"NotReplicated", testNotReplicated},
		{"VolumeStatuses", testVolumeStatuses},
		{"DeleteTarget", testDeleteTarget},
		{"TeardownWaitsForVolumes", testTeardownRefused},
		{"Destroy", testDestroy},
		{"DestroyKeepsStandaloneCopy", testDestroyKeepsStandalone},
		{"Snapshots", testSnapshots},
		{"CancelledContext", testCancelled},
		{"StopWithSourceLost", testStopWithSourceLost},
		{"DestroyKeepsLastCopy", testDestroyKeepsLastCopy},
		{"TeardownWithSourceLost", testTeardownWithSourceLost},
		{"ForcedTeardown", testForcedTeardown},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			f := &fixture{h: h, be: h.Backend(), env: h.Environment(), vol: h.Volume()}
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), h.Timeout())
				defer cancel()
				if _, err := f.be.DestroyVolume(ctx, f.vol); err != nil {
					t.Errorf("cleanup: DestroyVolume returned %v; the contract wants nil (leftovers go in the report)", err)
				}
				// Destroy leaves a standalone copy kept by StopVolume.
				if err := f.be.DeleteTarget(ctx, f.vol); err != nil {
					t.Errorf("cleanup: DeleteTarget after DestroyVolume returned %v; the contract wants nil", err)
				}
				if err := reportless(f.be.TeardownEnvironment(ctx, f.env, false)); err != nil {
					t.Errorf("cleanup: TeardownEnvironment after DestroyVolume returned %v; the contract wants nil "+
						"(no volume of the pair is replicated any more)", err)
				}
			})
			info, err := f.be.Info(t.Context())
			if err != nil {
				t.Fatalf("Info returned %v; the contract wants it to answer without any storage", err)
			}
			f.caps = info.Capabilities
			tc.run(t, f)
		})
	}
}

type fixture struct {
	h    Harness
	be   sdk.Backend
	env  sdk.Environment
	vol  sdk.Volume
	caps sdk.Capabilities
}

// twice calls op twice: every method is idempotent.
func twice(t *testing.T, what string, op func() error) {
	t.Helper()
	for i, call := range []string{"", " again (every method is idempotent)"} {
		if err := op(); err != nil {
			t.Fatalf("%s%s returned %v; the contract wants nil (call %d)", what, call, err, i+1)
		}
	}
}

// wantErr fails t unless err wraps want, saying what came back instead.
// An error that only says the same words (formatted with %v instead of
// %w) is called out: errors.Is does not see it, so neither does the
// daemon.
func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if errors.Is(err, want) {
		return
	}
	name := sentinelName(want)
	switch {
	case err == nil:
		t.Fatalf("%s returned nil; the contract wants an error wrapping sdk.%s", what, name)
	case strings.Contains(err.Error(), want.Error()):
		t.Fatalf("%s returned %q, whose text says %q but which does not wrap sdk.%s (errors.Is is false: "+
			"the daemon will not see it); wrap it with %%w, not %%v or %%s", what, err, want.Error(), name)
	default:
		t.Fatalf("%s returned %q, which does not wrap sdk.%s; the contract wants sdk.%s", what, err, name, name)
	}
}

func sentinelName(err error) string {
	switch err {
	case sdk.ErrNotFound:
		return "ErrNotFound"
	case sdk.ErrPrecondition:
		return "ErrPrecondition"
	case sdk.ErrInProgress:
		return "ErrInProgress"
	case sdk.ErrRetryable:
		return "ErrRetryable"
	}
	return fmt.Sprintf("%v", err)
}

func (f *fixture) prepare(t *testing.T) {
	t.Helper()
	if err := f.be.PrepareEnvironment(t.Context(), f.env); err != nil {
		t.Fatalf("PrepareEnvironment of the harness's environment returned %v; the contract wants nil once it is ready", err)
	}
}

func (f *fixture) start(t *testing.T) {
	t.Helper()
	f.prepare(t)
	twice(t, "StartVolume", func() error { return f.be.StartVolume(t.Context(), f.vol) })
}

func (f *fixture) status(t *testing.T) sdk.VolumeReplication {
	t.Helper()
	st, err := f.be.VolumeStatus(t.Context(), f.vol)
	if err != nil {
		t.Fatalf("VolumeStatus returned %v; the contract wants a report (a volume not replicated is absent, not an error)", err)
	}
	return st
}

// volumeWant is a volume status the contract calls for: check says what
// in a status differs from it, or "" when nothing does.
type volumeWant struct {
	what  string
	check func(sdk.VolumeReplication) string
}

// target says what a volumeWant asks of TargetExists.
type target int

const (
	anyTarget  target = iota
	targetKept        // a copy is on the target
	targetGone        // no copy is on the target
)

func stateIs(state sdk.ReplicationState, tgt target, why string) volumeWant {
	what := string(state)
	switch tgt {
	case targetKept:
		what += " with a copy on the target"
	case targetGone:
		what += " with no copy on the target"
	}
	return volumeWant{what: what, check: func(st sdk.VolumeReplication) string {
		var wrong []string
		if st.State != state {
			wrong = append(wrong, fmt.Sprintf("State is %q, the contract wants %q", st.State, state))
		}
		if tgt == targetKept && !st.TargetExists {
			wrong = append(wrong, "TargetExists is false, the contract wants true")
		}
		if tgt == targetGone && st.TargetExists {
			wrong = append(wrong, "TargetExists is true, the contract wants false")
		}
		if len(wrong) == 0 {
			return ""
		}
		msg := strings.Join(wrong, "; ")
		if why != "" {
			msg += " (" + why + ")"
		}
		return msg
	}}
}

var (
	replaying = stateIs(sdk.ReplicationReplaying, targetKept, "a replaying volume is followed by a copy on the target")
	absent    = stateIs(sdk.ReplicationAbsent, anyTarget, "")
	gone      = stateIs(sdk.ReplicationAbsent, targetGone, "")
)

// is fails t unless the volume's status is w now.
func (f *fixture) is(t *testing.T, when string, w volumeWant) sdk.VolumeReplication {
	t.Helper()
	st := f.status(t)
	if wrong := w.check(st); wrong != "" {
		t.Fatalf("VolumeStatus %s = %+v: %s", when, st, wrong)
	}
	return st
}

// eventually polls the volume's status until it is w, within the
// harness's timeout.
func (f *fixture) eventually(t *testing.T, when string, w volumeWant) sdk.VolumeReplication {
	t.Helper()
	var st sdk.VolumeReplication
	var wrong string
	if !poll(t, f.h.Timeout(), func() bool { st = f.status(t); wrong = w.check(st); return wrong == "" }) {
		t.Fatalf("volume not %s %s within %v (the harness's Timeout); last VolumeStatus = %+v: %s",
			w.what, when, f.h.Timeout(), st, wrong)
	}
	return st
}

// poll calls done until it returns true or timeout passes, backing off
// from 10ms to 1s between calls: quick for a simulator, gentle on a real
// storage.
func poll(t *testing.T, timeout time.Duration, done func() bool) bool {
	t.Helper()
	deadline := time.Now().Add(timeout)
	wait := 10 * time.Millisecond
	for {
		if done() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		select {
		case <-time.After(wait):
		case <-t.Context().Done():
			return false
		}
		wait = min(2*wait, time.Second)
	}
}

// stop stops the volume, calling again while the backend answers
// ErrInProgress (its first copy still running) within the harness's
// timeout, and then once more, which must succeed too.
func (f *fixture) stop(t *testing.T) {
	t.Helper()
	var err error
	done := poll(t, f.h.Timeout(), func() bool {
		err = reportless(f.be.StopVolume(t.Context(), f.vol))
		if errors.Is(err, sdk.ErrInProgress) {
			// A stop that waits for the copy has ended nothing yet.
			if st := f.status(t); st.State == sdk.ReplicationAbsent {
				t.Fatalf("StopVolume returned %q (ErrInProgress), yet VolumeStatus = %+v: replication ended; "+
					"the contract wants a stop that waits to change nothing but letting the first copy go on", err, st)
			}
			return false
		}
		return true
	})
	if !done {
		t.Fatalf("StopVolume still returned ErrInProgress after %v (the harness's Timeout): %v; "+
			"the contract wants the first copy to get on by itself and the stop to succeed once it is complete",
			f.h.Timeout(), err)
	}
	if err != nil {
		t.Fatalf("StopVolume returned %v; the contract wants nil once the target is kept as a standalone volume", err)
	}
	if err := reportless(f.be.StopVolume(t.Context(), f.vol)); err != nil {
		t.Fatalf("StopVolume again, once stopped, returned %v; the contract wants nil (stopping a volume not replicated succeeds)", err)
	}
}

// stopped checks the status after a stop: absent, the target kept when
// the backend says it keeps it.
func (f *fixture) stopped(t *testing.T, when string) {
	t.Helper()
	if f.caps.KeepTargetStop {
		f.is(t, when, stateIs(sdk.ReplicationAbsent, targetKept,
			"Capabilities.KeepTargetStop: StopVolume keeps the target as a standalone volume"))
		return
	}
	f.is(t, when, absent)
}

func testInfo(t *testing.T, f *fixture) {
	for range 2 {
		info, err := f.be.Info(t.Context())
		if err != nil {
			t.Fatalf("Info returned %v; the contract wants it to answer without any storage", err)
		}
		if info.Name == "" || info.Version == "" || len(info.StorageTypes) == 0 {
			t.Fatalf("Info returned %+v; the contract wants a name, a version and at least one storage type", info)
		}
		for _, s := range []sdk.Storage{f.env.Source, f.env.Target} {
			if !slices.Contains(info.StorageTypes, s.Type) {
				t.Fatalf("the harness's storage %d is of type %q, which the backend does not serve (Info.StorageTypes %q)",
					s.StorageID, s.Type, info.StorageTypes)
			}
		}
	}
}

func testEnvironment(t *testing.T, f *fixture) {
	ctx := t.Context()
	if err := reportless(f.be.TeardownEnvironment(ctx, f.env, false)); err != nil {
		t.Fatalf("TeardownEnvironment of an environment never prepared returned %v; the contract wants nil", err)
	}
	twice(t, "PrepareEnvironment", func() error { return f.be.PrepareEnvironment(ctx, f.env) })
	h, err := f.be.EnvironmentStatus(ctx, f.env)
	if err != nil || !h.Ready {
		t.Fatalf("EnvironmentStatus after PrepareEnvironment returned %+v, %v; the contract wants Ready "+
			"(PrepareEnvironment returns nil only once the environment is ready)", h, err)
	}
	twice(t, "TeardownEnvironment", func() error { return reportless(f.be.TeardownEnvironment(ctx, f.env, false)) })
	h, err = f.be.EnvironmentStatus(ctx, f.env)
	if err != nil || h.Ready {
		t.Fatalf("EnvironmentStatus after TeardownEnvironment returned %+v, %v; the contract wants not Ready, no error", h, err)
	}
}

func testStartNeedsEnvironment(t *testing.T, f *fixture) {
	wantErr(t, "StartVolume in an environment not prepared", f.be.StartVolume(t.Context(), f.vol), sdk.ErrPrecondition)
	f.is(t, "after a refused start", absent)
}

func testVolumeLifecycle(t *testing.T, f *fixture) {
	ctx := t.Context()
	f.is(t, "before any start", absent)
	f.start(t)
	if st := f.status(t); st.State == sdk.ReplicationAbsent {
		t.Fatalf("VolumeStatus right after StartVolume = %+v; the contract wants replication set up "+
			"(StartVolume returns once it is): syncing or replaying", st)
	}
	f.eventually(t, "after start", replaying)

	if f.caps.Pause {
		twice(t, "PauseVolume", func() error { return f.be.PauseVolume(ctx, f.vol) })
		f.is(t, "after pause", stateIs(sdk.ReplicationPaused, targetKept, "a pause keeps replication set up"))
		twice(t, "ResumeVolume", func() error { return f.be.ResumeVolume(ctx, f.vol) })
		f.eventually(t, "after resume", replaying)

		// Start also resumes a paused volume.
		if err := f.be.PauseVolume(ctx, f.vol); err != nil {
			t.Fatalf("PauseVolume of a replaying volume returned %v; the contract wants nil", err)
		}
		if err := f.be.StartVolume(ctx, f.vol); err != nil {
			t.Fatalf("StartVolume of a paused volume returned %v; the contract wants nil (start resumes it)", err)
		}
		f.eventually(t, "after StartVolume of a paused volume", replaying)
	}

	f.stop(t)
	f.stopped(t, "after stop")
}

// find finds the harness's T (FirstCopyHolder, SourceCutter), through
// the kit's own wrappers (RunGRPC's).
func find[T any](h Harness) (T, bool) {
	for {
		if x, ok := h.(T); ok {
			return x, true
		}
		w, ok := h.(interface{ unwrap() Harness })
		if !ok {
			var none T
			return none, false
		}
		h = w.unwrap()
	}
}

func testStopDuringFirstCopy(t *testing.T, f *fixture) {
	ctx := t.Context()
	fh, ok := find[FirstCopyHolder](f.h)
	if !ok {
		t.Fatalf("the harness (%T) does not implement plugintest.FirstCopyHolder, so the kit cannot check the rule "+
			"that matters most: StopVolume never keeps a partial copy. Add HoldFirstCopy(t *testing.T) (release func()) "+
			"to the harness: keep the volume's first copy from completing until release is called "+
			"(throttle or pause it on the storage, or use a volume big enough to outlast the check)", f.h)
	}
	f.prepare(t)
	if err := f.be.StartVolume(ctx, f.vol); err != nil {
		t.Fatalf("StartVolume returned %v; the contract wants nil", err)
	}
	var once sync.Once
	hold := fh.HoldFirstCopy(t)
	release := func() { once.Do(hold) }
	t.Cleanup(release)
	if st := f.status(t); st.State == sdk.ReplicationReplaying || st.State == sdk.ReplicationAbsent {
		t.Fatalf("VolumeStatus with the first copy held = %+v; the contract wants syncing (if it is replaying, "+
			"the harness's HoldFirstCopy came too late or does not hold the copy)", st)
	}
	for _, when := range []string{"while the first copy was held", "again while the first copy was held"} {
		err := reportless(f.be.StopVolume(ctx, f.vol))
		if err == nil {
			t.Fatalf("StopVolume returned nil %s: the contract forbids keeping a partial copy; "+
				"return ErrInProgress until the copy is complete", when)
		}
		wantErr(t, "StopVolume "+when, err, sdk.ErrInProgress)
		if st := f.status(t); st.State == sdk.ReplicationAbsent {
			t.Fatalf("VolumeStatus after StopVolume returned ErrInProgress %s = %+v: replication ended; the contract "+
				"wants a stop that waits to change nothing but letting the first copy go on", when, st)
		}
	}
	release()
	f.stop(t)
	f.stopped(t, "after the held first copy was released and the stop completed")
}

func testNotReplicated(t *testing.T, f *fixture) {
	ctx := t.Context()
	f.prepare(t)
	missing := f.vol
	missing.VolumeUUID = NewUUID()
	wantErr(t, "StartVolume of a volume missing on the source", f.be.StartVolume(ctx, missing), sdk.ErrNotFound)
	for _, v := range []sdk.Volume{missing, f.vol} {
		st, err := f.be.VolumeStatus(ctx, v)
		if err != nil || st.State != sdk.ReplicationAbsent {
			t.Fatalf("VolumeStatus of volume %s never started returned %+v, %v; the contract wants absent, no error",
				v.VolumeUUID, st, err)
		}
	}
	if f.caps.Pause {
		wantErr(t, "PauseVolume of a volume not replicated", f.be.PauseVolume(ctx, f.vol), sdk.ErrNotFound)
		wantErr(t, "ResumeVolume of a volume not replicated", f.be.ResumeVolume(ctx, f.vol), sdk.ErrNotFound)
	}
	for _, v := range []sdk.Volume{missing, f.vol} {
		if err := reportless(f.be.StopVolume(ctx, v)); err != nil {
			t.Fatalf("StopVolume of volume %s not replicated returned %v; the contract wants nil", v.VolumeUUID, err)
		}
		if err := f.be.DeleteTarget(ctx, v); err != nil {
			t.Fatalf("DeleteTarget of volume %s not replicated returned %v; the contract wants nil", v.VolumeUUID, err)
		}
		if _, err := f.be.DestroyVolume(ctx, v); err != nil {
			t.Fatalf("DestroyVolume of volume %s not replicated returned %v; the contract wants nil", v.VolumeUUID, err)
		}
	}
	f.is(t, "after stop, delete and destroy of a volume never started", absent)
}

// bulk is a VolumeStatuses call the kit makes: the harness's volume among
// volumes that exist nowhere, in an order that shows whether the answers
// keep it.
type bulk struct {
	vols  []sdk.Volume
	names []string // what each volume is, for messages
	own   int      // where the harness's volume is
}

func (f *fixture) bulks() []bulk {
	missing, other := f.vol, f.vol
	missing.VolumeUUID, other.VolumeUUID = NewUUID(), NewUUID()
	const own, nowhere, another = "the harness's volume", "a volume missing on the source", "another volume missing on the source"
	return []bulk{
		{vols: []sdk.Volume{missing, f.vol, other}, names: []string{nowhere, own, another}, own: 1},
		{vols: []sdk.Volume{f.vol, missing}, names: []string{own, nowhere}, own: 0},
	}
}

// statuses calls VolumeStatuses of b's volumes; it fails t unless there
// is one answer per volume and the volumes that exist nowhere are absent
// with no target, and returns the answer for the harness's volume.
func (f *fixture) statuses(t *testing.T, when string, b bulk) sdk.VolumeReplication {
	t.Helper()
	reps, err := f.be.VolumeStatuses(t.Context(), f.env, b.vols)
	if err != nil {
		t.Fatalf("VolumeStatuses %s of %s returned %v; the contract wants a report of each volume "+
			"(a volume not replicated is absent, not an error)", when, strings.Join(b.names, ", "), err)
	}
	if len(reps) != len(b.vols) {
		t.Fatalf("VolumeStatuses %s of %d volumes (%s) returned %d answers: %+v; the contract wants one per volume, "+
			"in the order asked", when, len(b.vols), strings.Join(b.names, ", "), len(reps), reps)
	}
	for i, rep := range reps {
		if i == b.own {
			continue
		}
		if wrong := gone.check(rep); wrong != "" {
			t.Fatalf("VolumeStatuses %s of %s: answer %d, for %s, is %+v: %s (a volume that exists nowhere is absent; "+
				"if this is the harness's volume's answer, the answers are not in the order asked)",
				when, strings.Join(b.names, ", "), i+1, b.names[i], rep, wrong)
		}
	}
	return reps[b.own]
}

// statusesEventually polls VolumeStatuses until, in every order the kit
// asks, its answer for the harness's volume is w, which VolumeStatus
// must say too: the bulk answer may be a little older than VolumeStatus's,
// not other.
func (f *fixture) statusesEventually(t *testing.T, when string, w volumeWant) {
	t.Helper()
	for _, b := range f.bulks() {
		var rep sdk.VolumeReplication
		var wrong string
		if !poll(t, f.h.Timeout(), func() bool { rep = f.statuses(t, when, b); wrong = w.check(rep); return wrong == "" }) {
			t.Fatalf("VolumeStatuses %s of %s did not report the harness's volume (answer %d) %s within %v "+
				"(the harness's Timeout); its last answer for it = %+v: %s. VolumeStatus says %+v: the contract wants "+
				"VolumeStatuses to say what VolumeStatus says of each volume, at most a little older, in the order asked",
				when, strings.Join(b.names, ", "), b.own+1, w.what, f.h.Timeout(), rep, wrong, f.status(t))
		}
	}
	f.is(t, when+" (VolumeStatuses said so)", w)
}

func testVolumeStatuses(t *testing.T, f *fixture) {
	f.prepare(t)
	reps, err := f.be.VolumeStatuses(t.Context(), f.env, nil)
	if err != nil || len(reps) != 0 {
		t.Fatalf("VolumeStatuses of no volumes returned %+v, %v; the contract wants no answers, no error", reps, err)
	}
	f.is(t, "before any start", absent)
	f.statusesEventually(t, "before any start", absent)
	f.start(t)
	f.eventually(t, "after start", replaying)
	f.statusesEventually(t, "after start", replaying)
	f.stop(t)
	stopped := absent
	if f.caps.KeepTargetStop {
		stopped = stateIs(sdk.ReplicationAbsent, targetKept,
			"Capabilities.KeepTargetStop: StopVolume keeps the target as a standalone volume")
	}
	f.statusesEventually(t, "after stop", stopped)
}

func testDeleteTarget(t *testing.T, f *fixture) {
	ctx := t.Context()
	f.start(t)
	f.eventually(t, "after start", replaying)
	twice(t, "DeleteTarget", func() error { return f.be.DeleteTarget(ctx, f.vol) })
	f.eventually(t, "after DeleteTarget", gone)
	if err := f.be.DeleteTarget(ctx, f.vol); err != nil {
		t.Fatalf("DeleteTarget once the target is gone returned %v; the contract wants nil", err)
	}

	// A standalone copy left by StopVolume is deleted too.
	f.start(t)
	f.eventually(t, "after a second start", replaying)
	f.stop(t)
	if err := f.be.DeleteTarget(ctx, f.vol); err != nil {
		t.Fatalf("DeleteTarget of a stopped volume returned %v; the contract wants nil", err)
	}
	f.eventually(t, "after DeleteTarget of the standalone copy StopVolume kept", gone)
}

func testTeardownRefused(t *testing.T, f *fixture) {
	ctx := t.Context()
	f.start(t)
	wantErr(t, "TeardownEnvironment with a replicated volume", reportless(f.be.TeardownEnvironment(ctx, f.env, false)), sdk.ErrPrecondition)
	if h, err := f.be.EnvironmentStatus(ctx, f.env); err != nil || !h.Ready {
		t.Fatalf("EnvironmentStatus after a refused TeardownEnvironment returned %+v, %v; the contract wants Ready: "+
			"a refused call changes nothing", h, err)
	}
	if f.caps.Pause {
		if err := f.be.PauseVolume(ctx, f.vol); err != nil {
			t.Fatalf("PauseVolume returned %v; the contract wants nil", err)
		}
		wantErr(t, "TeardownEnvironment with a paused volume", reportless(f.be.TeardownEnvironment(ctx, f.env, false)), sdk.ErrPrecondition)
	}
	f.stop(t)
	if err := reportless(f.be.TeardownEnvironment(ctx, f.env, false)); err != nil {
		t.Fatalf("TeardownEnvironment once no volume is replicated returned %v; the contract wants nil "+
			"(a standalone copy StopVolume kept is not replicated)", err)
	}
	if h, err := f.be.EnvironmentStatus(ctx, f.env); err != nil || h.Ready {
		t.Fatalf("EnvironmentStatus after TeardownEnvironment returned %+v, %v; the contract wants not Ready, no error", h, err)
	}
}

func testDestroy(t *testing.T, f *fixture) {
	ctx := t.Context()
	f.start(t)
	for i := range 2 {
		rep, err := f.be.DestroyVolume(ctx, f.vol)
		if err != nil {
			t.Fatalf("DestroyVolume (call %d) returned %v; the contract wants nil, and leftovers in the report", i+1, err)
		}
		if len(rep.Leftovers) > 0 {
			t.Logf("DestroyVolume (call %d) leftovers: %q", i+1, rep.Leftovers)
			return
		}
	}
	f.eventually(t, "after DestroyVolume of a replicated volume (no leftovers reported)",
		stateIs(sdk.ReplicationAbsent, targetGone, "destroy deletes the replicated target copy"))
	// The source volume survives: replication can start again.
	f.start(t)
	f.eventually(t, "after destroy and a new start (DestroyVolume never deletes the source volume)", replaying)
}

func testDestroyKeepsStandalone(t *testing.T, f *fixture) {
	if !f.caps.KeepTargetStop {
		t.Skip("the backend does not keep a standalone target on stop (Capabilities.KeepTargetStop)")
	}
	ctx := t.Context()
	f.start(t)
	f.eventually(t, "after start", replaying)
	f.stop(t)
	f.stopped(t, "after stop")
	for i := range 2 {
		rep, err := f.be.DestroyVolume(ctx, f.vol)
		if err != nil {
			t.Fatalf("DestroyVolume of a stopped volume (call %d) returned %v; the contract wants nil", i+1, err)
		}
		if len(rep.Leftovers) > 0 {
			t.Logf("DestroyVolume of a stopped volume (call %d) leftovers: %q", i+1, rep.Leftovers)
		}
	}
	f.is(t, "after DestroyVolume of a stopped volume", stateIs(sdk.ReplicationAbsent, targetKept,
		"DestroyVolume deleted the standalone copy StopVolume kept: that copy is the user's volume, "+
			"and only DeleteTarget removes it"))
}

func testSnapshots(t *testing.T, f *fixture) {
	if !f.caps.Snapshots {
		t.Skip("the backend does not offer snapshots (Capabilities.Snapshots)")
	}
	ctx := t.Context()
	snap := f.h.Snapshot()
	f.start(t)
	snapStatus := func(when string) sdk.SnapshotReplication {
		t.Helper()
		st, err := f.be.SnapshotStatus(ctx, snap)
		if err != nil {
			t.Fatalf("SnapshotStatus %s returned %v; the contract wants a report", when, err)
		}
		return st
	}
	if st := snapStatus("before AddSnapshot"); st.State != sdk.SnapshotAbsent {
		t.Fatalf("SnapshotStatus before AddSnapshot = %+v; the contract wants absent", st)
	}
	twice(t, "AddSnapshot", func() error { return f.be.AddSnapshot(ctx, snap) })
	var st sdk.SnapshotReplication
	ready := poll(t, f.h.Timeout(), func() bool {
		st = snapStatus("after AddSnapshot")
		if st.State != sdk.SnapshotPending && st.State != sdk.SnapshotReady {
			t.Fatalf("SnapshotStatus after AddSnapshot = %+v; the contract wants pending or ready", st)
		}
		return st.State == sdk.SnapshotReady
	})
	if !ready {
		t.Fatalf("snapshot not ready within %v (the harness's Timeout); last SnapshotStatus = %+v; "+
			"the contract wants the target to get it by itself", f.h.Timeout(), st)
	}
	twice(t, "RemoveSnapshot", func() error { return f.be.RemoveSnapshot(ctx, snap) })
	if st := snapStatus("after RemoveSnapshot"); st.State != sdk.SnapshotAbsent {
		t.Fatalf("SnapshotStatus after RemoveSnapshot = %+v; the contract wants absent", st)
	}

	missing := snap
	missing.SnapshotUUID = NewUUID()
	missing.SnapshotName = "snapshot-" + missing.SnapshotUUID
	wantErr(t, "AddSnapshot of a snapshot missing on the source", f.be.AddSnapshot(ctx, missing), sdk.ErrNotFound)
	if st, err := f.be.SnapshotStatus(ctx, missing); err != nil || st.State != sdk.SnapshotAbsent {
		t.Fatalf("SnapshotStatus of a snapshot missing on the source returned %+v, %v; the contract wants absent, no error", st, err)
	}
	if err := f.be.RemoveSnapshot(ctx, missing); err != nil {
		t.Fatalf("RemoveSnapshot of a missing snapshot returned %v; the contract wants nil", err)
	}
}

// promptly bounds how long a call with a cancelled ctx may take.
const promptly = time.Second

func testCancelled(t *testing.T, f *fixture) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	snap := f.h.Snapshot()
	calls := []struct {
		method string
		call   func() error
	}{
		{"Info", func() error { _, err := f.be.Info(ctx); return err }},
		{"PrepareEnvironment", func() error { return f.be.PrepareEnvironment(ctx, f.env) }},
		{"EnvironmentStatus", func() error { _, err := f.be.EnvironmentStatus(ctx, f.env); return err }},
		{"TeardownEnvironment", func() error { return reportless(f.be.TeardownEnvironment(ctx, f.env, false)) }},
		{"StartVolume", func() error { return f.be.StartVolume(ctx, f.vol) }},
		{"VolumeStatus", func() error { _, err := f.be.VolumeStatus(ctx, f.vol); return err }},
		{"VolumeStatuses", func() error { _, err := f.be.VolumeStatuses(ctx, f.env, []sdk.Volume{f.vol}); return err }},
		{"PauseVolume", func() error { return f.be.PauseVolume(ctx, f.vol) }},
		{"ResumeVolume", func() error { return f.be.ResumeVolume(ctx, f.vol) }},
		{"StopVolume", func() error { return reportless(f.be.StopVolume(ctx, f.vol)) }},
		{"DeleteTarget", func() error { return f.be.DeleteTarget(ctx, f.vol) }},
		{"DestroyVolume", func() error { _, err := f.be.DestroyVolume(ctx, f.vol); return err }},
		{"AddSnapshot", func() error { return f.be.AddSnapshot(ctx, snap) }},
		{"RemoveSnapshot", func() error { return f.be.RemoveSnapshot(ctx, snap) }},
		{"SnapshotStatus", func() error { _, err := f.be.SnapshotStatus(ctx, snap); return err }},
		{"FindLeftovers", func() error {
			_, err := f.be.FindLeftovers(ctx, sdk.LeftoverQuery{Storage: f.env.Target})
			return err
		}},
	}
	for _, c := range calls {
		begin := time.Now()
		err := c.call()
		if !errors.Is(err, context.Canceled) {
			t.Errorf("%s with a cancelled ctx returned %v; the contract wants an error wrapping ctx.Err() (context.Canceled)", c.method, err)
		}
		if d := time.Since(begin); d > promptly {
			t.Errorf("%s with a cancelled ctx took %v; the contract wants it to return promptly (at most %v)", c.method, d, promptly)
		}
	}
	// What the cancelled calls left behind, a later call resumes from.
	f.start(t)
	f.eventually(t, "after cancelled calls and a start", replaying)
	if f.caps.Snapshots {
		if err := f.be.AddSnapshot(t.Context(), snap); err != nil {
			t.Fatalf("AddSnapshot after cancelled calls returned %v; the contract wants nil", err)
		}
	}
	f.stop(t)
	if err := reportless(f.be.TeardownEnvironment(t.Context(), f.env, false)); err != nil {
		t.Fatalf("TeardownEnvironment after a stop returned %v; the contract wants nil", err)
	}
}

// NewUUID returns a random RFC 4122 version 4 UUID, for harnesses to
// name volumes and snapshots, and for the suite to name ones that exist
// nowhere.
func NewUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// reportless drops a call's CleanupReport where a check needs only its
// error.
func reportless(_ sdk.CleanupReport, err error) error { return err }
