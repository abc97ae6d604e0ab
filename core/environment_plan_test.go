package core_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/cdmdr/mirror/core"
	"github.com/cdmdr/mirror/ports"
)

func TestPlanEnvironment(t *testing.T) {
	t.Parallel()
	notReady := &ports.EnvironmentHealth{Ready: false, Description: "pool mirroring disabled"}
	ready := &ports.EnvironmentHealth{Ready: true}
	st := func(s core.State, op core.Operation) *core.Status { return &core.Status{StateCode: s, Operation: op} }
	type want struct {
		write   core.State // none = no write
		code    string     // substring of the reason code, "" = no reason
		action  core.Action
		success core.State
		finish  bool // OnSuccess.Finish
		observe bool // the plan only asks for the report
	}
	cases := map[string]struct {
		in   core.EnvironmentInput
		want want
	}{
		"start, no status, not ready: prepare, saying why": {
			core.EnvironmentInput{Operation: core.OpStart, Observed: notReady},
			want{write: initializing, code: "cdm-dr.mirror.environment.waiting-prepare-not_ready", action: core.ActPrepare, success: mirroring}},
		"start, initializing, not ready: prepare again, saying why": {
			core.EnvironmentInput{Operation: core.OpStart, Status: st(initializing, start), Observed: notReady},
			want{write: initializing, code: "cdm-dr.mirror.environment.waiting-prepare-not_ready", action: core.ActPrepare, success: mirroring}},
		"start, stopping, not ready: prepare, saying why": {
			core.EnvironmentInput{Operation: core.OpStart, Status: st(stopping, core.OpStop), Observed: notReady},
			want{write: initializing, code: "cdm-dr.mirror.environment.waiting-prepare-not_ready", action: core.ActPrepare, success: mirroring}},
		"start, mirroring, not ready any more: prepare, keeping mirroring": {
			core.EnvironmentInput{Operation: core.OpStart, Status: st(mirroring, start), Observed: notReady},
			want{action: core.ActPrepare}},
		"start, mirroring written by an older daemon, not ready: prepare, keeping mirroring": {
			core.EnvironmentInput{Operation: core.OpStart, Status: st(mirroring, ""), Observed: notReady},
			want{action: core.ActPrepare}},
		"start, error, not ready: prepare keeping the error": {
			core.EnvironmentInput{Operation: core.OpStart, Status: &core.Status{StateCode: errState, Operation: start,
				ErrorReason: &core.Reason{Code: "x", Contents: "y"}}, Observed: notReady},
			want{action: core.ActPrepare, success: mirroring}},
		"start, ready: mirroring": {
			core.EnvironmentInput{Operation: core.OpStart, Observed: ready},
			want{write: mirroring}},
		"start, error, ready: mirroring": {
			core.EnvironmentInput{Operation: core.OpStart, Status: st(errState, start), Observed: ready},
			want{write: mirroring}},
		"start, observe error": {
			core.EnvironmentInput{Operation: core.OpStart, ObserveErr: fmt.Errorf("ceph: %w", ports.ErrRetryable)},
			want{write: errState, code: "cdm-dr.mirror.environment.failure-observe-unavailable"}},
		"start, not observed: ask first": {
			core.EnvironmentInput{Operation: core.OpStart},
			want{observe: true}},
		"stop, no volumes: teardown then finish": {
			core.EnvironmentInput{Operation: core.OpStop, Status: st(mirroring, start), Observed: ready},
			want{write: stopping, action: core.ActTeardown, finish: true}},
		"stop, no volumes, nothing observed": {
			core.EnvironmentInput{Operation: core.OpStop, ObserveErr: ports.ErrRetryable},
			want{write: stopping, action: core.ActTeardown, finish: true}},
		"stop, volumes remain: wait": {
			core.EnvironmentInput{Operation: core.OpStop, Status: st(mirroring, start), Observed: ready,
				Volumes: []string{"mirror_volume/storage.11.13/volume.7"}},
			want{write: stopping, code: "cdm-dr.mirror.environment.waiting-stop-volumes_remain"}},
		"unknown operation": {
			core.EnvironmentInput{Operation: "pause", Observed: ready},
			want{write: errState, code: "cdm-dr.mirror.environment.refused-operation-unknown_operation"}},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			p := core.PlanEnvironment(c.in)
			w := c.want
			if p.Observe != w.observe {
				t.Errorf("Observe = %v, want %v", p.Observe, w.observe)
			}
			checkEnvStatus(t, "Write", p.Write, w.write, w.code, c.in.Operation)
			if p.Action != w.action {
				t.Errorf("Action = %q, want %q", p.Action, w.action)
			}
			checkEnvStatus(t, "OnSuccess.Write", p.OnSuccess.Write, w.success, "", c.in.Operation)
			if p.OnSuccess.Finish != w.finish {
				t.Errorf("OnSuccess.Finish = %v, want %v", p.OnSuccess.Finish, w.finish)
			}
		})
	}
}

// TestPlanEnvironmentNotReadySaysWhy: the waiting reason of an environment
// being prepared carries the backend's description, and one that says
// nothing still gets words.
func TestPlanEnvironmentNotReadySaysWhy(t *testing.T) {
	t.Parallel()
	for desc, want := range map[string]string{
		"pool volumesdr does not exist on storage 13": "pool volumesdr does not exist on storage 13",
		"": "no details",
	} {
		p := core.PlanEnvironment(core.EnvironmentInput{Operation: core.OpStart,
			Observed: &ports.EnvironmentHealth{Description: desc}})
		if p.Write == nil || p.Write.ErrorReason == nil || !strings.Contains(p.Write.ErrorReason.Contents, want) {
			t.Errorf("description %q: write %+v, want a reason containing %q", desc, p.Write, want)
		}
	}
}

func checkEnvStatus(t *testing.T, what string, got *core.Status, want core.State, code string, op core.Operation) {
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
	if got.StateCode != want || got.Operation != op {
		t.Errorf("%s = %q under %q, want %q under %q", what, got.StateCode, got.Operation, want, op)
	}
	if code == "" && got.ErrorReason != nil {
		t.Errorf("%s reason = %+v, want none", what, *got.ErrorReason)
	}
	if code != "" && (got.ErrorReason == nil || !strings.HasPrefix(got.ErrorReason.Code, code)) {
		t.Errorf("%s reason = %+v, want code %q", what, got.ErrorReason, code)
	}
}

func TestPlanEnvironmentStopNamesRemainingVolumes(t *testing.T) {
	t.Parallel()
	mk := func(n int) []string {
		var keys []string
		for i := 1; i <= n; i++ {
			keys = append(keys, core.VolumeKey(core.VolumeRef{Env: env1113, VolumeID: uint64(i)}))
		}
		return keys
	}
	cases := map[string]struct {
		volumes []string
		named   int
		more    string
	}{
		"one":   {mk(1), 1, ""},
		"five":  {mk(5), 5, ""},
		"six":   {mk(6), 5, "and 1 more"},
		"forty": {mk(40), 5, "and 35 more"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			p := core.PlanEnvironment(core.EnvironmentInput{Operation: core.OpStop, Volumes: c.volumes,
				Observed: &ports.EnvironmentHealth{Ready: true}})
			if p.Action != core.ActNone || p.OnSuccess.Finish {
				t.Fatalf("stop with volumes acts: %+v", p)
			}
			if p.Write == nil || p.Write.StateCode != stopping || p.Write.ErrorReason == nil {
				t.Fatalf("Write = %+v, want stopping with a reason", p.Write)
			}
			msg := p.Write.ErrorReason.Contents
			for i, k := range c.volumes {
				if i < c.named && !strings.Contains(msg, k) {
					t.Errorf("reason %q does not name %s", msg, k)
				}
				if i >= c.named && strings.Contains(msg, k+",") {
					t.Errorf("reason %q lists more than %d volumes", msg, c.named)
				}
			}
			if !strings.Contains(msg, fmt.Sprint(len(c.volumes))) {
				t.Errorf("reason %q does not say how many volumes remain", msg)
			}
			if c.more != "" && !strings.Contains(msg, c.more) {
				t.Errorf("reason %q lacks %q", msg, c.more)
			}
		})
	}
}

func TestEnvironmentFailed(t *testing.T) {
	t.Parallel()
	prep := core.EnvironmentInput{Operation: core.OpStart, Observed: &ports.EnvironmentHealth{}}
	down := core.EnvironmentInput{Operation: core.OpStop, Observed: &ports.EnvironmentHealth{Ready: true}}
	cases := map[string]struct {
		in   core.EnvironmentInput
		err  error
		code string
	}{
		"prepare precondition": {prep, fmt.Errorf("peer: %w", ports.ErrPrecondition), "cdm-dr.mirror.environment.failure-prepare-precondition"},
		"prepare timeout":      {prep, context.DeadlineExceeded, "cdm-dr.mirror.environment.failure-prepare-timeout"},
		"prepare no backend":   {prep, ports.ErrNoBackend, "cdm-dr.mirror.environment.failure-prepare-no_backend"},
		"teardown precondition": {down, fmt.Errorf("images still mirrored: %w", ports.ErrPrecondition),
			"cdm-dr.mirror.environment.failure-teardown-precondition"},
		"teardown in progress": {down, ports.ErrInProgress, ""},
		"prepare in progress":  {prep, fmt.Errorf("x: %w", ports.ErrInProgress), ""},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			p := core.PlanEnvironment(c.in)
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
			checkEnvStatus(t, "Failed.Write", out.Write, errState, c.code, c.in.Operation)
		})
	}
}
