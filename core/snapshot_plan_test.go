package core_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/cdmdr/mirror/core"
	"github.com/cdmdr/mirror/ports"
)

func TestPlanSnapshot(t *testing.T) {
	t.Parallel()
	rec := core.SnapshotRecord{ClusterID: 5, VolumeID: 7, VolumeUUID: seedVolumeUUID, SnapshotID: 21, SnapshotUUID: snapUUID}
	del := rec
	del.Deleted = true
	mirroringSt := &core.Status{StateCode: core.SnapshotMirroring}
	obs := func(s ports.SnapshotState) *ports.SnapshotReplication {
		return &ports.SnapshotReplication{State: s}
	}
	type want struct {
		write   core.State
		code    string
		action  core.Action
		success core.State
		finish  bool
		observe bool // without a report, the plan asks for one
	}
	cases := map[string]struct {
		in   core.SnapshotInput
		want want
	}{}
	// A deleted snapshot is removed whatever the volume's state, then its
	// records are deleted.
	for _, vs := range allFrom {
		cases["deleted, volume "+string(vs)] = struct {
			in   core.SnapshotInput
			want want
		}{core.SnapshotInput{Record: del, Status: mirroringSt, VolumeState: vs, Observed: obs(ports.SnapshotReady)},
			want{write: core.SnapshotDeleting, action: core.ActRemoveSnapshot, finish: true}}
	}
	// Not replicating: recorded only.
	for _, vs := range []core.State{none, waiting, stopping, deleting, errState} {
		cases["not replicating, new, volume "+string(vs)] = struct {
			in   core.SnapshotInput
			want want
		}{core.SnapshotInput{Record: rec, VolumeState: vs, Observed: obs(ports.SnapshotAbsent)},
			want{write: core.SnapshotMirroring}}
		cases["not replicating, recorded, volume "+string(vs)] = struct {
			in   core.SnapshotInput
			want want
		}{core.SnapshotInput{Record: rec, Status: mirroringSt, VolumeState: vs}, want{}}
	}
	for _, vs := range []core.State{initializing, mirroring, paused} {
		add := func(name string, in core.SnapshotInput, w want) {
			in.Record = rec
			in.VolumeState = vs
			w.observe = true
			cases[name+", volume "+string(vs)] = struct {
				in   core.SnapshotInput
				want want
			}{in, w}
		}
		add("absent: protect", core.SnapshotInput{Observed: obs(ports.SnapshotAbsent)},
			want{write: core.SnapshotMirroring, action: core.ActAddSnapshot, success: core.SnapshotMirroring})
		add("absent, recorded: protect", core.SnapshotInput{Status: mirroringSt, Observed: obs(ports.SnapshotAbsent)},
			want{write: core.SnapshotMirroring, action: core.ActAddSnapshot, success: core.SnapshotMirroring})
		add("pending", core.SnapshotInput{Status: mirroringSt, Observed: obs(ports.SnapshotPending)},
			want{write: core.SnapshotMirroring})
		add("ready", core.SnapshotInput{Status: mirroringSt, Observed: obs(ports.SnapshotReady)},
			want{write: core.SnapshotMirrored})
		add("ready, no status", core.SnapshotInput{Observed: obs(ports.SnapshotReady)},
			want{write: core.SnapshotMirrored})
		add("observe error", core.SnapshotInput{Status: mirroringSt, ObserveErr: fmt.Errorf("rbd: %w", ports.ErrRetryable)},
			want{write: core.SnapshotError, code: "cdm-dr.mirror.snapshot.failure-observe-unavailable"})
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			p := core.PlanSnapshot(c.in)
			w := c.want
			checkSnapStatus(t, "Write", p.Write, w.write, w.code)
			if p.Action != w.action {
				t.Errorf("Action = %q, want %q", p.Action, w.action)
			}
			checkSnapStatus(t, "OnSuccess.Write", p.OnSuccess.Write, w.success, "")
			if p.OnSuccess.Finish != w.finish {
				t.Errorf("OnSuccess.Finish = %v, want %v", p.OnSuccess.Finish, w.finish)
			}
			if p.Observe {
				t.Errorf("plan asks to observe although the input has the backend's report")
			}
			blind := c.in
			blind.Observed, blind.ObserveErr = nil, nil
			if got := core.PlanSnapshot(blind); got.Observe != w.observe {
				t.Errorf("without a report, Observe = %v, want %v", got.Observe, w.observe)
			} else if got.Observe && (got.Write != nil || got.Action != core.ActNone) {
				t.Errorf("a plan asking to observe also acts: %+v", got)
			}
		})
	}
}

func checkSnapStatus(t *testing.T, what string, got *core.Status, want core.State, code string) {
	t.Helper()
	if want == none {
		if got != nil {
			t.Errorf("%s = %+v, want no write", what, *got)
		}
		return
	}
	if got == nil {
		t.Fatalf("%s = nil, want %q", what, want)
	}
	if got.StateCode != want {
		t.Errorf("%s = %q, want %q", what, got.StateCode, want)
	}
	if code == "" && got.ErrorReason != nil {
		t.Errorf("%s reason = %+v, want none", what, *got.ErrorReason)
	}
	if code != "" && (got.ErrorReason == nil || !strings.HasPrefix(got.ErrorReason.Code, code)) {
		t.Errorf("%s reason = %+v, want code %q", what, got.ErrorReason, code)
	}
}

func TestSnapshotFailed(t *testing.T) {
	t.Parallel()
	rec := core.SnapshotRecord{SnapshotID: 21, SnapshotUUID: snapUUID}
	add := core.SnapshotInput{Record: rec, VolumeState: mirroring, Observed: &ports.SnapshotReplication{State: ports.SnapshotAbsent}}
	del := rec
	del.Deleted = true
	rm := core.SnapshotInput{Record: del, VolumeState: mirroring}
	cases := map[string]struct {
		in   core.SnapshotInput
		err  error
		code string
	}{
		"add not found":       {add, fmt.Errorf("snap: %w", ports.ErrNotFound), "cdm-dr.mirror.snapshot.failure-add_snapshot-not_found"},
		"remove precondition": {rm, fmt.Errorf("clones: %w", ports.ErrPrecondition), "cdm-dr.mirror.snapshot.failure-remove_snapshot-precondition"},
		"add in progress":     {add, ports.ErrInProgress, ""},
		"remove in progress":  {rm, fmt.Errorf("x: %w", ports.ErrInProgress), ""},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			p := core.PlanSnapshot(c.in)
			out := p.Failed(c.err)
			if out.Finish {
				t.Errorf("failure finishes")
			}
			if c.code == "" {
				if out.Write != nil {
					t.Errorf("Failed = %+v, want nothing", *out.Write)
				}
				return
			}
			checkSnapStatus(t, "Failed.Write", out.Write, core.SnapshotError, c.code)
		})
	}
}
