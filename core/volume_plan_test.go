package core_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cdmdr/mirror/core"
	"github.com/cdmdr/mirror/ports"
)

// obsKind is one backend observation of a volume.
type obsKind string

const (
	obsAbsent    obsKind = "absent"
	obsSyncing   obsKind = "syncing"
	obsReplaying obsKind = "replaying"
	obsPaused    obsKind = "paused"
	obsFailed    obsKind = "failed"
	obsError     obsKind = "observe_error"
	// obsAbsentTarget is absent replication with the target copy still there.
	obsAbsentTarget obsKind = "absent+target"
)

var allObs = []obsKind{obsAbsent, obsSyncing, obsReplaying, obsPaused, obsFailed, obsError}

// observe builds what the backend reports for k. Plain absent means the
// target copy is gone too (TargetExists false).
func observe(k obsKind) (*ports.VolumeReplication, error) {
	switch k {
	case obsError:
		return nil, fmt.Errorf("rbd mirror image status: %w", ports.ErrRetryable)
	case obsAbsent:
		return &ports.VolumeReplication{State: ports.ReplicationAbsent}, nil
	case obsAbsentTarget:
		return &ports.VolumeReplication{State: ports.ReplicationAbsent, TargetExists: true}, nil
	case obsFailed:
		return &ports.VolumeReplication{State: ports.ReplicationFailed, TargetExists: true, Description: "split-brain"}, nil
	}
	return &ports.VolumeReplication{State: ports.ReplicationState(k), TargetExists: true}, nil
}

// outcome expected of a plan. A zero State means "no write".
type expect struct {
	write     core.State
	writeCode string // substring of the written error_reason code; "" = no reason
	action    core.Action
	success   core.State // OnSuccess.Write state
	succFin   bool       // OnSuccess.Finish
	failure   core.State // OnFailure
	finish    bool       // Finish
	empty     bool       // the plan is entirely empty
}

const (
	codeWaiting  = "cdm-dr.mirror.volume.waiting-environment-not_ready"
	codeObserve  = "cdm-dr.mirror.volume.failure-observe-unavailable"
	codeBackend  = "cdm-dr.mirror.volume.failure-replication-backend_error"
	codeLost     = "cdm-dr.mirror.volume.failure-replication-lost"
	codeNotRepl  = "cdm-dr.mirror.volume.failure-pause-not_replicated"
	codeRefusedP = "cdm-dr.mirror.volume.refused-operation-"
)

func wWrite(s core.State, code string) expect { return expect{write: s, writeCode: code} }
func wAct(a core.Action, success core.State) expect {
	return expect{action: a, success: success, failure: errState}
}

// scenario is one row: an operation, some current states, some
// observations and the environment state, with what docs/contract.md §4 says happens.
type scenario struct {
	name  string
	op    core.Operation
	froms []core.State
	obs   []obsKind
	env   core.State
	want  expect
}

var followStates = []core.State{initializing, mirroring}

func volumeScenarios() []scenario {
	ready := mirroring // the environment's state when it is ready
	var sc []scenario
	add := func(s scenario) { sc = append(sc, s) }

	// ---- start -------------------------------------------------------
	// "A volume whose environment is not mirroring waits in waiting."
	for _, env := range []core.State{none, initializing, stopping, errState} {
		add(scenario{"start waits while the environment is " + string(env) + "", start,
			[]core.State{none, waiting, errState}, allObs, env, wWrite(waiting, codeWaiting)})
	}
	// "in waiting, error or with no status: run the start process"
	add(scenario{"start runs the start process when not replicated", start,
		[]core.State{none, waiting, errState}, []obsKind{obsAbsent, obsPaused}, ready, wAct(core.ActStart, initializing)})
	add(scenario{"start follows a first copy already running", start,
		[]core.State{none, waiting, errState}, []obsKind{obsSyncing}, ready, wWrite(initializing, "")})
	add(scenario{"start from no status finds it replaying", start,
		[]core.State{none, errState}, []obsKind{obsReplaying}, ready, wWrite(mirroring, "")})
	// waiting→mirroring is no arrow: the plan passes through initializing.
	add(scenario{"start from waiting finds it replaying", start,
		[]core.State{waiting}, []obsKind{obsReplaying}, ready, wWrite(initializing, "")})
	add(scenario{"start sees a backend failure", start,
		[]core.State{none, waiting, errState}, []obsKind{obsFailed}, ready, wWrite(errState, codeBackend)})
	add(scenario{"start cannot observe", start,
		[]core.State{none, waiting, errState}, []obsKind{obsError}, ready, wWrite(errState, codeObserve)})
	// "In initializing/mirroring the start process is not run again: the
	// daemon only follows progress" — whatever the environment.
	for _, env := range []core.State{ready, stopping} {
		add(scenario{"start follows: replaying is mirroring, env " + string(env), start,
			followStates, []obsKind{obsReplaying}, env, wWrite(mirroring, "")})
		add(scenario{"start follows: failed is error, env " + string(env), start,
			followStates, []obsKind{obsFailed}, env, wWrite(errState, codeBackend)})
		add(scenario{"start follows: replication lost is error, env " + string(env), start,
			followStates, []obsKind{obsAbsent}, env, wWrite(errState, codeLost)})
		add(scenario{"start follows: observe error is error, env " + string(env), start,
			followStates, []obsKind{obsError}, env, wWrite(errState, codeObserve)})
		add(scenario{"start follows: a forgotten pause is resumed, env " + string(env), start,
			[]core.State{initializing}, []obsKind{obsPaused}, env, wAct(core.ActResume, initializing)})
		add(scenario{"start follows: a forgotten pause is resumed in mirroring, env " + string(env), start,
			[]core.State{mirroring}, []obsKind{obsPaused}, env, wAct(core.ActResume, mirroring)})
		add(scenario{"start follows: syncing keeps initializing, env " + string(env), start,
			[]core.State{initializing}, []obsKind{obsSyncing}, env, wWrite(initializing, "")})
		add(scenario{"start follows: a resync stays mirroring, env " + string(env), start,
			[]core.State{mirroring}, []obsKind{obsSyncing}, env, wWrite(mirroring, "")})
	}

	// ---- resume ------------------------------------------------------
	add(scenario{"resume with no status waits for the environment", resume,
		[]core.State{none}, allObs, initializing, expect{empty: true}})
	add(scenario{"resume keeps paused while the environment is not ready", resume,
		[]core.State{paused}, allObs, stopping, wWrite(paused, codeWaiting)})
	add(scenario{"resume keeps error while the environment is not ready", resume,
		[]core.State{errState}, allObs, none, wWrite(errState, codeWaiting)})
	add(scenario{"resume restarts replay", resume,
		[]core.State{none, paused, errState}, []obsKind{obsPaused}, ready, wAct(core.ActResume, initializing)})
	add(scenario{"resume with nothing to resume starts again", resume,
		[]core.State{none, paused, errState}, []obsKind{obsAbsent}, ready, wAct(core.ActStart, initializing)})
	add(scenario{"resume follows a running copy", resume,
		[]core.State{none, paused, errState}, []obsKind{obsSyncing}, ready, wWrite(initializing, "")})
	add(scenario{"resume from no status finds it replaying", resume,
		[]core.State{none}, []obsKind{obsReplaying}, ready, wWrite(mirroring, "")})
	// paused→mirroring and error→mirroring are no arrows of resume.
	add(scenario{"resume from paused or error finds it replaying", resume,
		[]core.State{paused, errState}, []obsKind{obsReplaying}, ready, wWrite(initializing, "")})
	add(scenario{"resume sees a backend failure", resume,
		[]core.State{none, paused}, []obsKind{obsFailed}, ready, wWrite(errState, codeBackend)})
	// An explicit resume from error asks the backend to restart replay of
	// a failed replication (start never does: a split brain waits).
	add(scenario{"resume from error restarts a failed replication", resume,
		[]core.State{errState}, []obsKind{obsFailed}, ready, wAct(core.ActResume, initializing)})
	add(scenario{"resume cannot observe", resume,
		[]core.State{none, paused, errState}, []obsKind{obsError}, ready, wWrite(errState, codeObserve)})
	add(scenario{"resume follows: replaying is mirroring", resume,
		followStates, []obsKind{obsReplaying}, ready, wWrite(mirroring, "")})
	add(scenario{"resume follows: failed is error", resume,
		followStates, []obsKind{obsFailed}, ready, wWrite(errState, codeBackend)})
	add(scenario{"resume follows: lost is error", resume,
		followStates, []obsKind{obsAbsent}, ready, wWrite(errState, codeLost)})
	add(scenario{"resume follows: observe error", resume,
		followStates, []obsKind{obsError}, stopping, wWrite(errState, codeObserve)})
	add(scenario{"resume follows: paused in initializing", resume,
		[]core.State{initializing}, []obsKind{obsPaused}, ready, wAct(core.ActResume, initializing)})
	add(scenario{"resume follows: paused in mirroring", resume,
		[]core.State{mirroring}, []obsKind{obsPaused}, ready, wAct(core.ActResume, mirroring)})
	add(scenario{"resume follows: syncing keeps initializing", resume,
		[]core.State{initializing}, []obsKind{obsSyncing}, ready, wWrite(initializing, "")})
	add(scenario{"resume follows: a resync stays mirroring", resume,
		[]core.State{mirroring}, []obsKind{obsSyncing}, ready, wWrite(mirroring, "")})
	add(scenario{"resume follows: observe error, env ready", resume,
		followStates, []obsKind{obsError}, ready, wWrite(errState, codeObserve)})

	// ---- pause -------------------------------------------------------
	pauseFrom := []core.State{none, mirroring, initializing, errState, paused}
	add(scenario{"pause stops replay", pause,
		pauseFrom, []obsKind{obsSyncing, obsReplaying}, ready, wAct(core.ActPause, paused)})
	add(scenario{"pause stops replay whatever the environment", pause,
		pauseFrom, []obsKind{obsReplaying}, stopping, wAct(core.ActPause, paused)})
	add(scenario{"pause sees it paused", pause,
		pauseFrom, []obsKind{obsPaused}, ready, wWrite(paused, "")})
	add(scenario{"pause of a volume never started is an error", pause,
		[]core.State{none}, []obsKind{obsAbsent}, ready, wWrite(errState, codeNotRepl)})
	// A replicated volume whose backend lost the replication is set up
	// again, then paused: error (lost) first, then start from error.
	add(scenario{"pause of a volume whose replication was lost says so", pause,
		[]core.State{mirroring, initializing, paused}, []obsKind{obsAbsent}, ready, wWrite(errState, codeLost)})
	add(scenario{"pause sets a lost replication up again from error", pause,
		[]core.State{errState}, []obsKind{obsAbsent}, ready, wAct(core.ActStart, none)})
	add(scenario{"pause cannot observe", pause,
		pauseFrom, []obsKind{obsError}, ready, wWrite(errState, codeObserve)})
	add(scenario{"pause sees a failure once paused", pause,
		[]core.State{paused}, []obsKind{obsFailed}, ready, wWrite(errState, codeBackend)})
	add(scenario{"pause of a failed replication still pauses", pause,
		[]core.State{none, mirroring, initializing, errState}, []obsKind{obsFailed}, ready, wAct(core.ActPause, paused)})

	// ---- stop --------------------------------------------------------
	// stopping, then the stop action, then the keys are deleted.
	add(scenario{"stop", stop,
		[]core.State{none, initializing, mirroring, paused, stopping, errState},
		append(append([]obsKind{}, allObs...), obsAbsentTarget), ready,
		expect{write: stopping, action: core.ActStop, succFin: true, failure: errState}})
	add(scenario{"stop whatever the environment", stop,
		[]core.State{mirroring}, allObs, stopping,
		expect{write: stopping, action: core.ActStop, succFin: true, failure: errState}})

	// ---- stop_and_delete ---------------------------------------------
	add(scenario{"stop_and_delete deletes the target", stopAndDelete,
		[]core.State{none, initializing, mirroring, paused, errState},
		append(append([]obsKind{}, allObs...), obsAbsentTarget), ready,
		expect{write: stopping, action: core.ActDeleteTarget, success: deleting, failure: errState}})
	add(scenario{"stop_and_delete in stopping deletes a target still there", stopAndDelete,
		[]core.State{stopping}, []obsKind{obsAbsentTarget, obsSyncing, obsReplaying, obsPaused, obsFailed, obsError}, ready,
		expect{write: stopping, action: core.ActDeleteTarget, success: deleting, failure: errState}})
	// The daemon died between the deletion and writing deleting: the
	// target is not deleted twice.
	add(scenario{"stop_and_delete in stopping with the target gone deletes nothing", stopAndDelete,
		[]core.State{stopping}, []obsKind{obsAbsent}, ready, wWrite(deleting, "")})
	add(scenario{"stop_and_delete finishes once the target is gone", stopAndDelete,
		[]core.State{deleting}, []obsKind{obsAbsent}, ready, expect{finish: true}})
	add(scenario{"stop_and_delete keeps deleting while the target exists", stopAndDelete,
		[]core.State{deleting}, []obsKind{obsAbsentTarget, obsReplaying, obsSyncing, obsPaused, obsFailed}, ready,
		expect{action: core.ActDeleteTarget, success: deleting, failure: errState}})
	add(scenario{"stop_and_delete cannot observe while deleting", stopAndDelete,
		[]core.State{deleting}, []obsKind{obsError}, ready, wWrite(errState, codeObserve)})

	// ---- destroy -----------------------------------------------------
	add(scenario{"destroy", destroy, allFrom,
		append(append([]obsKind{}, allObs...), obsAbsentTarget), ready,
		expect{action: core.ActDestroy, succFin: true}})
	add(scenario{"destroy whatever the environment", destroy, allFrom, allObs, none,
		expect{action: core.ActDestroy, succFin: true}})

	// ---- refused -----------------------------------------------------
	for _, op := range core.VolumeOperations {
		var refused []core.State
		for _, s := range core.VolumeStates {
			if !specCanStart(op, s) {
				refused = append(refused, s)
			}
		}
		if len(refused) == 0 {
			continue
		}
		add(scenario{string(op) + " refused", op, refused, allObs, ready, expect{}}) // write checked below
	}
	return sc
}

func checkStatus(t *testing.T, what string, got *core.Status, want core.State, code string, op core.Operation) {
	t.Helper()
	if want == none {
		if got != nil {
			t.Errorf("%s = %+v, want no write", what, *got)
		}
		return
	}
	if got == nil {
		t.Errorf("%s = nil, want state %s", what, want)
		return
	}
	if got.StateCode != want {
		t.Errorf("%s state = %q, want %q (reason %+v)", what, got.StateCode, want, got.ErrorReason)
	}
	if got.Operation != op {
		t.Errorf("%s operation = %q, want %q", what, got.Operation, op)
	}
	switch {
	case code == "" && got.ErrorReason != nil:
		t.Errorf("%s has reason %+v, want none", what, *got.ErrorReason)
	case code != "" && got.ErrorReason == nil:
		t.Errorf("%s has no reason, want code %q", what, code)
	case code != "" && !strings.Contains(got.ErrorReason.Code, code):
		t.Errorf("%s reason code = %q, want %q", what, got.ErrorReason.Code, code)
	case code != "" && strings.TrimSpace(got.ErrorReason.Contents) == "":
		t.Errorf("%s reason %q has no contents", what, got.ErrorReason.Code)
	}
}

func TestPlanVolumeScenarios(t *testing.T) {
	t.Parallel()
	n := 0
	for _, s := range volumeScenarios() {
		for _, from := range s.froms {
			for _, k := range s.obs {
				// With the status reached under this operation, and (for a
				// status) left by another operation ("entering").
				prevOps := []core.Operation{s.op}
				if from != none {
					prevOps = append(prevOps, otherOp(s.op), "")
				}
				for _, prev := range prevOps {
					n++
					name := fmt.Sprintf("%s/from=%q/under=%q/obs=%s/env=%q", s.name, from, prev, k, s.env)
					s, from, k, prev := s, from, k, prev
					t.Run(name, func(t *testing.T) {
						t.Parallel()
						checkScenario(t, s, from, prev, k)
					})
				}
			}
		}
	}
	t.Logf("%d PlanVolume cases", n)
}

func otherOp(op core.Operation) core.Operation {
	if op == core.OpPause {
		return core.OpResume
	}
	return core.OpPause
}

func checkScenario(t *testing.T, s scenario, from core.State, prev core.Operation, k obsKind) {
	obs, oerr := observe(k)
	in := core.VolumeInput{Operation: s.op, EnvState: s.env, Observed: obs, ObserveErr: oerr}
	if from != none {
		in.Status = &core.Status{StateCode: from, Operation: prev}
	}
	p := core.PlanVolume(in)
	w := s.want

	if !specCanStart(s.op, from) {
		// "an operation asked for in a state that has no transition for
		// it gets a clear error_reason": the state is kept.
		if p.Action != core.ActNone || p.OnSuccess.Finish {
			t.Fatalf("refused plan acts: %+v", p)
		}
		if p.Write == nil {
			t.Fatalf("refused plan writes nothing; want state %q with a refusal reason", from)
		}
		if p.Write.StateCode != from {
			t.Errorf("refused plan moves %q → %q", from, p.Write.StateCode)
		}
		if p.Write.Operation != prev {
			t.Errorf("refused plan writes operation %q; the state was reached under %q", p.Write.Operation, prev)
		}
		if p.Write.ErrorReason == nil || !strings.Contains(p.Write.ErrorReason.Code, "refused") ||
			!strings.HasPrefix(p.Write.ErrorReason.Code, codeRefusedP) {
			t.Errorf("refused plan reason = %+v, want a code with %q", p.Write.ErrorReason, codeRefusedP)
		} else if !strings.Contains(p.Write.ErrorReason.Contents, string(s.op)) {
			t.Errorf("refusal %q does not name the operation", p.Write.ErrorReason.Contents)
		}
		return
	}

	if w.empty {
		if p.Write != nil || p.Action != core.ActNone || p.OnSuccess != (core.Outcome{}) {
			t.Fatalf("plan = %+v, want an empty plan", p)
		}
		return
	}
	checkStatus(t, "Write", p.Write, w.write, w.writeCode, s.op)
	if p.Action != w.action {
		t.Errorf("Action = %q, want %q", p.Action, w.action)
	}
	if p.Observe {
		t.Fatalf("plan asks to observe although the input has the backend's report: %+v", p)
	}
	if w.action == core.ActNone {
		// Without an action, OnSuccess follows at once: it may only
		// finish the operation.
		if p.OnSuccess != (core.Outcome{Finish: w.finish}) {
			t.Errorf("OnSuccess = %+v without an action, want Finish %v only", p.OnSuccess, w.finish)
		}
		return
	}
	checkStatus(t, "OnSuccess.Write", p.OnSuccess.Write, w.success, "", s.op)
	if p.OnSuccess.Finish != w.succFin {
		t.Errorf("OnSuccess.Finish = %v, want %v", p.OnSuccess.Finish, w.succFin)
	}
	if p.Action != core.ActDestroy && stateOf(p.OnFailure) != w.failure {
		t.Errorf("OnFailure = %q, want %q", stateOf(p.OnFailure), w.failure)
	}
	if s.op == core.OpStart && (from == initializing || from == mirroring) && p.Action == core.ActStart {
		t.Errorf("start process run again in %s", from)
	}

	// What the failure of that action leads to.
	out := p.Failed(fmt.Errorf("backend: %w", ports.ErrPrecondition))
	if p.Action == core.ActDestroy {
		// "never left in error: the volume's keys are always removed"
		if !out.Finish || out.Write != nil {
			t.Errorf("destroy failure = %+v, want Finish and no write", out)
		}
		return
	}
	checkStatus(t, "Failed.Write", out.Write, errState,
		"cdm-dr.mirror.volume.failure-"+string(p.Action)+"-precondition", s.op)
	if out.Finish {
		t.Errorf("failed %s finishes", p.Action)
	}
	// Work still under way keeps the planned state and says why.
	out = p.Failed(fmt.Errorf("x: %w", ports.ErrInProgress))
	switch {
	case out.Finish:
		t.Errorf("Failed(ErrInProgress) finishes")
	case p.Write == nil && out.Write != nil:
		t.Errorf("Failed(ErrInProgress) = %+v, want nothing (nothing was planned to be written)", out)
	case p.Write != nil:
		checkStatus(t, "Failed(ErrInProgress).Write", out.Write, p.Write.StateCode,
			"cdm-dr.mirror.volume.waiting-"+string(p.Action)+"-in_progress", s.op)
	}
}

// TestPlanVolumeCoversEveryStartState checks the scenario table is
// complete: every operation × every state (none included) × every
// observation has a row.
func TestPlanVolumeCoversEveryStartState(t *testing.T) {
	t.Parallel()
	type key struct {
		op   core.Operation
		from core.State
		k    obsKind
	}
	seen := map[key]bool{}
	for _, s := range volumeScenarios() {
		if s.env != mirroring {
			continue
		}
		for _, f := range s.froms {
			for _, k := range s.obs {
				seen[key{s.op, f, k}] = true
			}
		}
	}
	for _, op := range core.VolumeOperations {
		for _, f := range allFrom {
			for _, k := range allObs {
				if !seen[key{op, f, k}] {
					t.Errorf("no scenario for %s from %q observing %s", op, f, k)
				}
			}
		}
	}
}

func TestPlanVolumeCarriesBackendDetails(t *testing.T) {
	t.Parallel()
	sync := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	in := core.VolumeInput{
		Operation: start,
		Status:    &core.Status{StateCode: initializing, Operation: start},
		EnvState:  mirroring,
		Observed: &ports.VolumeReplication{State: ports.ReplicationSyncing, TargetExists: true,
			Progress: 42, LastSyncTime: sync, Lag: "12 entries"},
	}
	p := core.PlanVolume(in)
	if p.Write == nil || p.Write.StateCode != initializing {
		t.Fatalf("Write = %+v, want initializing", p.Write)
	}
	if p.Write.Progress == nil || *p.Write.Progress != 42 {
		t.Errorf("Progress = %v, want 42", p.Write.Progress)
	}
	if p.Write.LastSyncTime == nil || !p.Write.LastSyncTime.Equal(sync) {
		t.Errorf("LastSyncTime = %v, want %v", p.Write.LastSyncTime, sync)
	}
	if p.Write.Lag != "12 entries" {
		t.Errorf("Lag = %q", p.Write.Lag)
	}
	// replaying: no progress shown
	in.Observed = &ports.VolumeReplication{State: ports.ReplicationReplaying, Progress: 100}
	p = core.PlanVolume(in)
	if p.Write == nil || p.Write.StateCode != mirroring || p.Write.Progress != nil || p.Write.LastSyncTime != nil {
		t.Errorf("Write = %+v, want mirroring without progress or sync time", p.Write)
	}
	// the backend's description shows in a failure
	in.Observed = &ports.VolumeReplication{State: ports.ReplicationFailed, Description: "split-brain detected"}
	p = core.PlanVolume(in)
	if p.Write == nil || p.Write.ErrorReason == nil || !strings.Contains(p.Write.ErrorReason.Contents, "split-brain detected") {
		t.Errorf("Write = %+v, want the backend's description in the reason", p.Write)
	}
}

func TestPlanVolumeWaitingReasonNamesEnvironmentState(t *testing.T) {
	t.Parallel()
	for name, env := range map[string]core.State{"initializing": initializing, "error": errState} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			p := core.PlanVolume(core.VolumeInput{Operation: start, EnvState: env})
			if p.Write == nil || p.Write.ErrorReason == nil || !strings.Contains(p.Write.ErrorReason.Contents, string(env)) {
				t.Errorf("Write = %+v, want a reason naming %q", p.Write, env)
			}
		})
	}
}

func TestVolumeFailedCause(t *testing.T) {
	t.Parallel()
	waitingStart := core.VolumeInput{Operation: start, Status: &core.Status{StateCode: waiting, Operation: start},
		EnvState: mirroring, Observed: &ports.VolumeReplication{State: ports.ReplicationAbsent}}
	stopIn := core.VolumeInput{Operation: stop, Status: &core.Status{StateCode: mirroring, Operation: start},
		EnvState: mirroring, Observed: &ports.VolumeReplication{State: ports.ReplicationReplaying}}
	sadIn := core.VolumeInput{Operation: stopAndDelete, Status: &core.Status{StateCode: paused, Operation: pause},
		Observed: &ports.VolumeReplication{State: ports.ReplicationPaused}}
	pauseIn := core.VolumeInput{Operation: pause, Status: &core.Status{StateCode: mirroring, Operation: start},
		Observed: &ports.VolumeReplication{State: ports.ReplicationReplaying}}
	resumeIn := core.VolumeInput{Operation: resume, Status: &core.Status{StateCode: paused, Operation: pause},
		EnvState: mirroring, Observed: &ports.VolumeReplication{State: ports.ReplicationPaused}}

	cases := map[string]struct {
		in    core.VolumeInput
		err   error
		code  string     // "" = no write
		state core.State // the state written; "" = error
	}{
		"start not found":         {waitingStart, fmt.Errorf("image volume-x: %w", ports.ErrNotFound), "cdm-dr.mirror.volume.failure-start-not_found", ""},
		"start precondition":      {waitingStart, fmt.Errorf("pool: %w", ports.ErrPrecondition), "cdm-dr.mirror.volume.failure-start-precondition", ""},
		"start retryable":         {waitingStart, fmt.Errorf("plugin: %w", ports.ErrRetryable), "cdm-dr.mirror.volume.failure-start-unavailable", ""},
		"start deadline":          {waitingStart, fmt.Errorf("rbd: %w", context.DeadlineExceeded), "cdm-dr.mirror.volume.failure-start-timeout", ""},
		"start deadline+retry":    {waitingStart, fmt.Errorf("%w: %w", ports.ErrRetryable, context.DeadlineExceeded), "cdm-dr.mirror.volume.failure-start-timeout", ""},
		"start malformed":         {waitingStart, fmt.Errorf("metadata: %w", core.ErrMalformed), "cdm-dr.mirror.volume.failure-start-malformed", ""},
		"start contradiction":     {waitingStart, fmt.Errorf("x: %w", core.ErrContradiction), "cdm-dr.mirror.volume.failure-start-contradiction", ""},
		"start no backend":        {waitingStart, fmt.Errorf("x: %w", ports.ErrNoBackend), "cdm-dr.mirror.volume.failure-start-no_backend", ""},
		"start unknown":           {waitingStart, errors.New("boom"), "cdm-dr.mirror.volume.failure-start-unknown", ""},
		"start in progress":       {waitingStart, fmt.Errorf("x: %w", ports.ErrInProgress), "", ""},
		"start bare in progress":  {waitingStart, ports.ErrInProgress, "", ""},
		"stop precondition":       {stopIn, fmt.Errorf("promote: %w", ports.ErrPrecondition), "cdm-dr.mirror.volume.failure-stop-precondition", ""},
		"stop in progress":        {stopIn, ports.ErrInProgress, "cdm-dr.mirror.volume.waiting-stop-in_progress", stopping},
		"stop_and_delete timeout": {sadIn, context.DeadlineExceeded, "cdm-dr.mirror.volume.failure-delete_target-timeout", ""},
		"pause not found":         {pauseIn, ports.ErrNotFound, "cdm-dr.mirror.volume.failure-pause-not_found", ""},
		"resume not found":        {resumeIn, ports.ErrNotFound, "cdm-dr.mirror.volume.failure-resume-not_found", ""},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			p := core.PlanVolume(c.in)
			if p.Action == core.ActNone {
				t.Fatalf("plan %+v has no action", p)
			}
			out := p.Failed(c.err)
			if out.Finish {
				t.Errorf("Failed finishes: %+v", out)
			}
			if c.code == "" {
				if out.Write != nil {
					t.Errorf("Failed(%v) writes %+v, want nothing", c.err, *out.Write)
				}
				return
			}
			if out.Write == nil {
				t.Fatalf("Failed(%v) writes nothing", c.err)
			}
			want := c.state
			if want == core.StateNone {
				want = errState
			}
			if out.Write.StateCode != want || out.Write.Operation != c.in.Operation {
				t.Errorf("Failed wrote %q under %q, want %q under %q", out.Write.StateCode, out.Write.Operation, want, c.in.Operation)
			}
			if out.Write.ErrorReason == nil || out.Write.ErrorReason.Code != c.code {
				t.Errorf("reason = %+v, want code %q", out.Write.ErrorReason, c.code)
			}
			if out.Write.ErrorReason != nil && !strings.Contains(out.Write.ErrorReason.Contents, c.err.Error()) {
				t.Errorf("contents %q do not explain %q", out.Write.ErrorReason.Contents, c.err)
			}
		})
	}
}

func TestCauseAndCode(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		err  error
		want string
	}{
		"nil":           {nil, "none"},
		"not found":     {fmt.Errorf("a: %w", ports.ErrNotFound), "not_found"},
		"precondition":  {fmt.Errorf("a: %w", ports.ErrPrecondition), "precondition"},
		"in progress":   {ports.ErrInProgress, "in_progress"},
		"retryable":     {ports.ErrRetryable, "unavailable"},
		"deadline":      {context.DeadlineExceeded, "timeout"},
		"malformed":     {core.ErrMalformed, "malformed"},
		"contradiction": {core.ErrContradiction, "contradiction"},
		"unknown op":    {fmt.Errorf("x: %w", core.ErrUnknownOperation), "unknown_operation"},
		"no backend":    {ports.ErrNoBackend, "no_backend"},
		"canceled":      {context.Canceled, "unknown"},
		"plain":         {errors.New("x"), "unknown"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if got := core.Cause(c.err); got != c.want {
				t.Errorf("Cause(%v) = %q, want %q", c.err, got, c.want)
			}
		})
	}
	if got := core.Code("volume", "failure", "start", "not_found"); got != "cdm-dr.mirror.volume.failure-start-not_found" {
		t.Errorf("Code = %q", got)
	}
	r := core.FailureReason("volume", "start", ports.ErrNotFound)
	if r.Code != "cdm-dr.mirror.volume.failure-start-not_found" || !strings.Contains(r.Contents, "start") {
		t.Errorf("FailureReason = %+v", r)
	}
}

func TestPlanVolumeUnknownOperationRefused(t *testing.T) {
	t.Parallel()
	// With no status there is no state to keep: that case is
	// TestUnknownOperationWithoutStatusIsError.
	for _, st := range []*core.Status{{StateCode: mirroring, Operation: start}} {
		p := core.PlanVolume(core.VolumeInput{Operation: "restart", Status: st, EnvState: mirroring,
			Observed: &ports.VolumeReplication{State: ports.ReplicationReplaying}})
		if p.Action != core.ActNone || p.OnSuccess.Finish {
			t.Errorf("unknown operation acts: %+v", p)
		}
		if p.Write == nil || p.Write.ErrorReason == nil || !strings.Contains(p.Write.ErrorReason.Code, "refused") {
			t.Errorf("unknown operation from %+v: Write = %+v, want a refusal", st, p.Write)
		}
	}
}

// TestStopWaitingKeepsItsReason: a stop the backend makes wait keeps its
// waiting reason across retries instead of clearing and rewriting it.
func TestStopWaitingKeepsItsReason(t *testing.T) {
	t.Parallel()
	in := core.VolumeInput{Operation: stop, Status: &core.Status{StateCode: mirroring, Operation: start},
		EnvState: mirroring, Observed: &ports.VolumeReplication{State: ports.ReplicationSyncing}}
	p := core.PlanVolume(in)
	out := p.Failed(fmt.Errorf("first copy at 40%%: %w", ports.ErrInProgress))
	if out.Write == nil || out.Write.StateCode != stopping || out.Write.ErrorReason == nil {
		t.Fatalf("Failed(ErrInProgress) = %+v, want stopping with a reason", out)
	}
	again := core.VolumeInput{Operation: stop, Status: out.Write, EnvState: mirroring, Observed: in.Observed}
	p2 := core.PlanVolume(again)
	if p2.Action != core.ActStop || p2.Write == nil || !p2.Write.Same(*out.Write) {
		t.Fatalf("retry plan = %+v, want the stop again with the status unchanged (%+v)", p2, *out.Write)
	}
}

// TestStopAfterStopAndDeleteDeletedTheTarget: a stop written over a
// stop_and_delete that deleted the target already (the daemon died before
// writing deleting) is refused, the state kept: it cannot keep a copy that
// is gone, and must not end as a stop done. With the target still there
// it stops as usual.
func TestStopAfterStopAndDeleteDeletedTheTarget(t *testing.T) {
	t.Parallel()
	for _, from := range []core.State{stopping, errState} {
		st := &core.Status{StateCode: from, Operation: stopAndDelete}
		gone := core.PlanVolume(core.VolumeInput{Operation: stop, Status: st, EnvState: mirroring,
			Observed: &ports.VolumeReplication{State: ports.ReplicationAbsent}})
		if gone.Action != core.ActNone || gone.OnSuccess.Finish || gone.Write == nil || gone.Write.StateCode != from ||
			gone.Write.Operation != stopAndDelete || gone.Write.ErrorReason == nil ||
			gone.Write.ErrorReason.Code != codeRefusedP+"stop" || !strings.Contains(gone.Write.ErrorReason.Contents, "deleted the target") {
			t.Errorf("stop over a stop_and_delete in %s, target gone: plan %+v, write %+v; want a refusal keeping the state", from, gone, gone.Write)
		}
		kept := core.PlanVolume(core.VolumeInput{Operation: stop, Status: st, EnvState: mirroring,
			Observed: &ports.VolumeReplication{State: ports.ReplicationAbsent, TargetExists: true}})
		if kept.Action != core.ActStop || !kept.OnSuccess.Finish {
			t.Errorf("stop over a stop_and_delete in %s, target there: plan %+v, want the stop", from, kept)
		}
	}
}

// A paused volume whose backend lost its replication (a restarted plugin,
// an operator's hand) is set up again and paused, as a mirroring one is
// set up again; every write is a move of docs/contract.md §4.2. Only a
// pause of a volume never started keeps the not_replicated error.
func TestPauseRestoresALostReplication(t *testing.T) {
	t.Parallel()
	absent := &ports.VolumeReplication{State: ports.ReplicationAbsent}
	st := &core.Status{StateCode: paused, Operation: pause}
	step := func(obs *ports.VolumeReplication) core.Plan {
		t.Helper()
		p := core.PlanVolume(core.VolumeInput{Operation: pause, Status: st, EnvState: mirroring, Observed: obs})
		for _, w := range []*core.Status{p.Write, p.OnSuccess.Write} {
			if w == nil {
				continue
			}
			if !core.Allowed(pause, st.StateCode, w.StateCode, st.Operation != pause) {
				t.Fatalf("pause moves %s → %s, which docs/contract.md §4.2 forbids", st.StateCode, w.StateCode)
			}
			st = w
		}
		return p
	}

	if p := step(absent); p.Action != core.ActNone || st.StateCode != errState || st.ErrorReason == nil || st.ErrorReason.Code != codeLost {
		t.Fatalf("paused, replication absent: plan %+v, status %+v; want error %s", p, st, codeLost)
	}
	if p := step(absent); p.Action != core.ActStart || st.StateCode != errState {
		t.Fatalf("error, replication absent: plan %+v, status %+v; want the start process, still error", p, st)
	}
	if p := step(&ports.VolumeReplication{State: ports.ReplicationSyncing, TargetExists: true}); p.Action != core.ActPause || st.StateCode != paused {
		t.Fatalf("error, replication set up again: plan %+v, status %+v; want the pause, then paused", p, st)
	}
	if p := step(&ports.VolumeReplication{State: ports.ReplicationPaused, TargetExists: true}); p.Action != core.ActNone || st.StateCode != paused || st.ErrorReason != nil {
		t.Fatalf("paused again: plan %+v, status %+v; want paused, no reason", p, st)
	}

	// Never started: the error stays, pass after pass.
	st = nil
	for range 3 {
		p := core.PlanVolume(core.VolumeInput{Operation: pause, Status: st, EnvState: mirroring, Observed: absent})
		if p.Action != core.ActNone || p.Write == nil || p.Write.StateCode != errState || p.Write.ErrorReason.Code != codeNotRepl {
			t.Fatalf("pause of a volume never started: plan %+v, want error %s and no action", p, codeNotRepl)
		}
		st = p.Write
	}
}
