package plugintest

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// SourceCutter: a Harness that can make its Environment's source storage unreachable for the backend under test (the protection site lost). Every harness must implement it, as FirstCopyHolder.
type SourceCutter interface {
	CutSource(t *testing.T) (restore func())
}

// cutter finds the harness's SourceCutter, failing t, saying what to add,
// when it has none.
func cutter(t *testing.T, h Harness) SourceCutter {
	t.Helper()
	c, ok := find[SourceCutter](h)
	if !ok {
		t.Fatalf("the harness (%T) does not implement plugintest.SourceCutter, so the kit cannot check what the "+
			"contract asks on the day the protection site is lost: stop, destroy and teardown that do not wait for "+
			"it, and never delete the last copy. Add CutSource(t *testing.T) (restore func()) to the harness: make "+
			"the Environment's source storage unreachable for the backend under test until restore is called "+
			"(block its addresses, stop its monitors, or point the backend at an address that answers nothing)", h)
	}
	return c
}

// cut makes the source unreachable until the returned restore, which
// t's cleanup calls too, before the subtest's own cleanup.
func (f *fixture) cut(t *testing.T, c SourceCutter) (restore func()) {
	t.Helper()
	var once sync.Once
	r := c.CutSource(t)
	restore = func() { once.Do(r) }
	t.Cleanup(restore)
	return restore
}

// bounded calls call with a ctx that ends after budget, and fails t
// unless it returns by then: with a storage unreachable, stop, destroy and
// teardown never wait for it. A call that honours ctx returns when it
// ends; one that does not is given a moment more, then abandoned.
func bounded(t *testing.T, what string, budget time.Duration, call func(ctx context.Context) (sdk.CleanupReport, error)) (sdk.CleanupReport, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), budget)
	defer cancel()
	type answer struct {
		rep sdk.CleanupReport
		err error
	}
	done := make(chan answer, 1)
	begin := time.Now()
	go func() {
		rep, err := call(ctx)
		done <- answer{rep, err}
	}()
	select {
	case a := <-done:
		if errors.Is(a.err, context.DeadlineExceeded) || time.Since(begin) > budget {
			t.Fatalf("%s returned %v after %v: it waited for the unreachable storage until its ctx ended (the harness's "+
				"Timeout); the contract wants it never to wait for an unreachable storage: do what the other storage "+
				"allows, within ctx, and list the rest in the report", what, a.err, time.Since(begin).Round(time.Millisecond))
		}
		return a.rep, a.err
	case <-time.After(budget + promptly):
		t.Fatalf("%s did not return within %v (the harness's Timeout), though its ctx ended: the contract wants it "+
			"never to wait for an unreachable storage, and every call to honour ctx", what, budget+promptly)
		return sdk.CleanupReport{}, nil
	}
}

// reportNames fails t unless the report names the volume (its UUID): an
// operator must know what was left.
func (f *fixture) reportNames(t *testing.T, what string, rep sdk.CleanupReport) {
	t.Helper()
	if len(rep.Leftovers) == 0 {
		t.Fatalf("%s returned nil with an empty report; the contract wants what it could not do (on the unreachable "+
			"storage) listed in the report, in words an operator can act on", what)
	}
	for _, l := range rep.Leftovers {
		if strings.Contains(l, f.vol.VolumeUUID) {
			t.Logf("%s report: %q", what, rep.Leftovers)
			return
		}
	}
	t.Fatalf("%s reported %q, which does not name the volume %s; the contract wants each leftover to say which "+
		"storage, what is left and why", what, rep.Leftovers, f.vol.VolumeUUID)
}

// targetKeptAny: the copy is on the target, whatever the replication.
var targetKeptAny = volumeWant{what: "with a copy on the target", check: func(st sdk.VolumeReplication) string {
	if !st.TargetExists {
		return "TargetExists is false, the contract wants true: with the source unreachable the target copy may be " +
			"the volume's last one, and is never deleted"
	}
	return ""
}}

// testStopWithSourceLost: a stop with the source unreachable keeps the
// complete copy standalone without waiting, reports and records what it
// left on the source; FindLeftovers lists that record.
func testStopWithSourceLost(t *testing.T, f *fixture) {
	c := cutter(t, f.h)
	f.start(t)
	f.eventually(t, "after start", replaying)
	restore := f.cut(t, c)
	const what = "StopVolume with the source storage unreachable"
	deadline := time.Now().Add(f.h.Timeout())
	var rep sdk.CleanupReport
	var err error
	for {
		rep, err = bounded(t, what, time.Until(deadline), func(ctx context.Context) (sdk.CleanupReport, error) {
			return f.be.StopVolume(ctx, f.vol)
		})
		if !errors.Is(err, sdk.ErrInProgress) {
			break
		}
		// Making the copy standalone may take the storage a moment.
		if time.Until(deadline) < 200*time.Millisecond {
			t.Fatalf("%s still returned %v after %v (the harness's Timeout); the contract wants a complete copy kept "+
				"standalone without waiting for the source", what, err, f.h.Timeout())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("%s returned %v; the contract wants nil once the complete copy is kept standalone on the target, "+
			"without waiting for the source, and what could not be done there in the report", what, err)
	}
	f.reportNames(t, what, rep)
	restore()
	want := stateIs(sdk.ReplicationAbsent, anyTarget, "")
	if f.caps.KeepTargetStop {
		want = stateIs(sdk.ReplicationAbsent, targetKept,
			"StopVolume with the source unreachable keeps the complete copy as a standalone volume")
	}
	f.eventually(t, "after StopVolume with the source unreachable, the source back", want)

	t.Run("FindLeftovers", func(t *testing.T) { testLeftoversAfterStop(t, f) })
}

// testLeftoversAfterStop: what the stop with the source lost recorded is
// found on the target storage, whatever the query accounts for, and
// nothing else when the query accounts for the environment and volume.
func testLeftoversAfterStop(t *testing.T, f *fixture) {
	names := func(list []sdk.Leftover) []string {
		var out []string
		for _, l := range list {
			out = append(out, l.Kind+" "+l.Name)
		}
		return out
	}
	mentions := func(l sdk.Leftover) bool {
		return strings.Contains(l.Name+" "+l.Description+" "+l.Remedy, f.vol.VolumeUUID)
	}
	all, err := f.be.FindLeftovers(t.Context(), sdk.LeftoverQuery{Storage: f.env.Target})
	if err != nil {
		t.Fatalf("FindLeftovers on the target storage returned %v; the contract wants a list", err)
	}
	if !slicesAny(all, mentions) {
		t.Fatalf("FindLeftovers on the target storage, asked with no environment or volume, listed %q, nothing naming "+
			"the volume %s; the contract wants what StopVolume with the source unreachable recorded it could not clean "+
			"(replication still set up on the source) listed", names(all), f.vol.VolumeUUID)
	}
	q := sdk.LeftoverQuery{Storage: f.env.Target, Environments: []sdk.Environment{f.env}, Volumes: []sdk.Volume{f.vol}}
	known, err := f.be.FindLeftovers(t.Context(), q)
	if err != nil {
		t.Fatalf("FindLeftovers on the target storage, asked with the environment and volume, returned %v; the contract wants a list", err)
	}
	if !slicesAny(known, mentions) {
		t.Fatalf("FindLeftovers on the target storage, asked with the environment and volume, listed %q, nothing naming "+
			"the volume %s; the contract wants what earlier calls recorded listed whatever the query accounts for",
			names(known), f.vol.VolumeUUID)
	}
	// A real storage may hold other users' things (other environments of
	// a shared pool): only what names this environment is the query's.
	for _, l := range known {
		if !mentions(l) && strings.Contains(l.Name+" "+l.Description+" "+l.Remedy, f.env.ID) {
			t.Fatalf("FindLeftovers on the target storage, asked with the environment and volume, listed %+v; the "+
				"contract wants nothing the query accounts for listed, only what earlier calls recorded (here: what "+
				"StopVolume of volume %s left)", l, f.vol.VolumeUUID)
		}
	}
}

func slicesAny(list []sdk.Leftover, ok func(sdk.Leftover) bool) bool {
	for _, l := range list {
		if ok(l) {
			return true
		}
	}
	return false
}

// testDestroyKeepsLastCopy: a destroy with the source unreachable keeps
// the replicated copy, which may be the volume's last one, and says so.
func testDestroyKeepsLastCopy(t *testing.T, f *fixture) {
	c := cutter(t, f.h)
	f.start(t)
	f.eventually(t, "after start", replaying)
	restore := f.cut(t, c)
	const what = "DestroyVolume with the source storage unreachable"
	rep, err := bounded(t, what, f.h.Timeout(), func(ctx context.Context) (sdk.CleanupReport, error) {
		return f.be.DestroyVolume(ctx, f.vol)
	})
	if err != nil {
		t.Fatalf("%s returned %v; the contract wants nil, the copy kept, and what it left in the report", what, err)
	}
	f.reportNames(t, what, rep)
	restore()
	f.eventually(t, "after DestroyVolume with the source unreachable, the source back", targetKeptAny)
}

// testTeardownWithSourceLost: a teardown with the source unreachable ends
// what it reaches and reports the rest, without waiting.
func testTeardownWithSourceLost(t *testing.T, f *fixture) {
	c := cutter(t, f.h)
	f.start(t)
	f.eventually(t, "after start", replaying)
	f.stop(t)
	restore := f.cut(t, c)
	const what = "TeardownEnvironment (not forced) with the source storage unreachable, no volume replicated"
	rep, err := bounded(t, what, f.h.Timeout(), func(ctx context.Context) (sdk.CleanupReport, error) {
		return f.be.TeardownEnvironment(ctx, f.env, false)
	})
	if err != nil {
		t.Fatalf("%s returned %v; the contract wants nil once what it reaches is torn down, the rest in the report", what, err)
	}
	if len(rep.Leftovers) == 0 && !f.caps.PairingOnTargetOnly {
		t.Fatalf("%s returned nil with an empty report; the contract wants what it left on the unreachable storage "+
			"(its pairing) listed (a plugin that keeps nothing on the source says so: Capabilities.PairingOnTargetOnly)", what)
	}
	t.Logf("%s report: %q", what, rep.Leftovers)
	restore()
	if h, err := f.be.EnvironmentStatus(t.Context(), f.env); err != nil || h.Ready {
		t.Fatalf("EnvironmentStatus after %s, the source back, returned %+v, %v; the contract wants not Ready, no error "+
			"(the pairing was ended on the target)", what, h, err)
	}
}

// testForcedTeardown: force tears the environment down with a volume
// still replicated, deletes no copy and lists the volume.
func testForcedTeardown(t *testing.T, f *fixture) {
	ctx := t.Context()
	f.start(t)
	f.eventually(t, "after start", replaying)
	rep, err := f.be.TeardownEnvironment(ctx, f.env, true)
	if err != nil {
		t.Fatalf("TeardownEnvironment(force) with a replicated volume returned %v; the contract wants nil: force "+
			"ends the pairing even while volumes are replicated", err)
	}
	f.reportNames(t, "TeardownEnvironment(force) with a replicated volume", rep)
	if h, err := f.be.EnvironmentStatus(ctx, f.env); err != nil || h.Ready {
		t.Fatalf("EnvironmentStatus after TeardownEnvironment(force) returned %+v, %v; the contract wants not Ready, no error", h, err)
	}
	f.is(t, "after TeardownEnvironment(force)", volumeWant{what: "with a copy on the target",
		check: func(st sdk.VolumeReplication) string {
			if !st.TargetExists {
				return "TargetExists is false, the contract wants true: a forced teardown deletes no volume or copy"
			}
			return ""
		}})
}
