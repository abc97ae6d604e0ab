package core_test

import (
	"fmt"
	"testing"

	"github.com/cdmdr/mirror/core"
)

// Short names for the literal table below (docs/contract.md §4.2).
const (
	none         = core.StateNone
	waiting      = core.StateWaiting
	initializing = core.StateInitializing
	mirroring    = core.StateMirroring
	paused       = core.StatePaused
	stopping     = core.StateStopping
	deleting     = core.StateDeleting
	errState     = core.StateError

	start         = core.OpStart
	resume        = core.OpResume
	pause         = core.OpPause
	stop          = core.OpStop
	stopAndDelete = core.OpStopAndDelete
	destroy       = core.OpDestroy
)

// star marks a "[*]" row: "no status yet, or any state the operation may
// start from".
const star = core.State("[*]")

type specRow struct {
	op       core.Operation
	from, to core.State
}

// specRows is the volume table of docs/contract.md §4.2 written in the
// original design's notation, one row per arrow: an entry is "[*]→X".
// For stop and stop_and_delete the table's "may start from" states are
// drawn "[*] --> X" in the original's diagrams: those are the "[*]" rows
// of these two operations.
var specRows = []specRow{
	// start | [*]→waiting, [*]→initializing, [*]→mirroring, [*]→error;
	// waiting→initializing, waiting→error; initializing→mirroring,
	// initializing→error; mirroring→error; error→waiting,
	// error→initializing, error→mirroring
	{start, star, waiting},
	{start, star, initializing},
	{start, star, mirroring},
	{start, star, errState},
	{start, waiting, initializing},
	{start, waiting, errState},
	{start, initializing, mirroring},
	{start, initializing, errState},
	{start, mirroring, errState},
	{start, errState, waiting},
	{start, errState, initializing},
	{start, errState, mirroring},

	// resume | [*]→paused, [*]→initializing, [*]→mirroring, [*]→error;
	// paused→error, paused→initializing; initializing→mirroring,
	// initializing→error; mirroring→error; error→initializing
	{resume, star, paused},
	{resume, star, initializing},
	{resume, star, mirroring},
	{resume, star, errState},
	{resume, paused, errState},
	{resume, paused, initializing},
	{resume, initializing, mirroring},
	{resume, initializing, errState},
	{resume, mirroring, errState},
	{resume, errState, initializing},

	// pause | [*]→paused/initializing/mirroring/error; mirroring→paused,
	// initializing→paused; paused→error, error→paused;
	// initializing→error, mirroring→error
	{pause, star, paused},
	{pause, star, initializing},
	{pause, star, mirroring},
	{pause, star, errState},
	{pause, mirroring, paused},
	{pause, initializing, paused},
	{pause, paused, errState},
	{pause, errState, paused},
	{pause, initializing, errState},
	{pause, mirroring, errState},

	// stop | from initializing, mirroring, paused, stopping, error;
	// paused/mirroring/initializing→stopping; stopping→error,
	// error→stopping; stopping→done (keys deleted)
	{stop, star, initializing},
	{stop, star, mirroring},
	{stop, star, paused},
	{stop, star, stopping},
	{stop, star, errState},
	{stop, paused, stopping},
	{stop, mirroring, stopping},
	{stop, initializing, stopping},
	{stop, stopping, errState},
	{stop, errState, stopping},

	// stop_and_delete | from initializing, mirroring, paused, stopping,
	// deleting, error; paused/mirroring/initializing→stopping;
	// mirroring→error, initializing→error; stopping→deleting,
	// stopping→error, error→stopping; deleting→done (keys deleted),
	// deleting→error
	{stopAndDelete, star, initializing},
	{stopAndDelete, star, mirroring},
	{stopAndDelete, star, paused},
	{stopAndDelete, star, stopping},
	{stopAndDelete, star, deleting},
	{stopAndDelete, star, errState},
	{stopAndDelete, paused, stopping},
	{stopAndDelete, mirroring, stopping},
	{stopAndDelete, initializing, stopping},
	{stopAndDelete, mirroring, errState},
	{stopAndDelete, initializing, errState},
	{stopAndDelete, stopping, deleting},
	{stopAndDelete, stopping, errState},
	{stopAndDelete, errState, stopping},
	{stopAndDelete, deleting, errState},

	// destroy (Decision): no diagram, no state written.
}

// specStartFrom lists, per operation, the states it may start from (the
// states "[*]" stands for besides "no status"), from docs/contract.md §4.3 and
// the original's process diagrams:
//   - start: "in waiting, error or with no status: run the start process
//     ... In initializing/mirroring ... only follows progress";
//   - resume: "from paused or error", following in initializing/mirroring;
//   - pause: "from mirroring, initializing or error", and "[*] →
//     pause_enable : paused";
//   - stop, stop_and_delete: their "from" lists;
//   - destroy: "forced teardown", from anything.
var specStartFrom = map[core.Operation][]core.State{
	start:         {waiting, errState, initializing, mirroring},
	resume:        {paused, errState, initializing, mirroring},
	pause:         {mirroring, initializing, errState, paused},
	stop:          {initializing, mirroring, paused, stopping, errState},
	stopAndDelete: {initializing, mirroring, paused, stopping, deleting, errState},
	destroy:       {waiting, initializing, mirroring, paused, stopping, deleting, errState},
}

// specDone lists "X→done (keys deleted)"; destroy ends from anything.
var specDone = map[core.Operation][]core.State{
	stop:          {stopping},
	stopAndDelete: {deleting},
	destroy:       {none, waiting, initializing, mirroring, paused, stopping, deleting, errState},
}

var allFrom = append([]core.State{none}, core.VolumeStates...)

func contains[T comparable](xs []T, x T) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func specCanStart(op core.Operation, s core.State) bool {
	list, ok := specStartFrom[op]
	return ok && (s == none || contains(list, s))
}

// specAllowed is the contract's answer, computed from the literal rows only.
func specAllowed(op core.Operation, from, to core.State, entering bool) bool {
	if to == none || !specCanStart(op, from) {
		return false
	}
	if from == to {
		return true // staying is always allowed in a startable state
	}
	for _, r := range specRows {
		if r.op != op || r.to != to {
			continue
		}
		if r.from == from {
			return true
		}
		if r.from == star && (entering || from == none) {
			return true
		}
	}
	return false
}

func TestVolumeStatesMatchSpec(t *testing.T) {
	t.Parallel()
	want := []core.State{"waiting", "initializing", "mirroring", "paused", "stopping", "deleting", "error"}
	if fmt.Sprint(core.VolumeStates) != fmt.Sprint(want) {
		t.Fatalf("VolumeStates = %v, docs/contract.md §4 says %v", core.VolumeStates, want)
	}
	ops := []core.Operation{"start", "resume", "pause", "stop", "stop_and_delete", "destroy"}
	if fmt.Sprint(core.VolumeOperations) != fmt.Sprint(ops) {
		t.Fatalf("VolumeOperations = %v, docs/contract.md §4 says %v", core.VolumeOperations, ops)
	}
}

// TestAllowedSpecRows checks every literal row: arrows with entering false
// and true, "[*]" rows from no status and from every start-from state with
// entering true.
func TestAllowedSpecRows(t *testing.T) {
	t.Parallel()
	type tc struct {
		op       core.Operation
		from, to core.State
		entering bool
	}
	cases := map[string]tc{}
	for _, r := range specRows {
		if r.from == star {
			for _, from := range append([]core.State{none}, specStartFrom[r.op]...) {
				cases[fmt.Sprintf("%s/[*]=%q->%s/entering", r.op, from, r.to)] = tc{r.op, from, r.to, true}
			}
			continue
		}
		cases[fmt.Sprintf("%s/%s->%s", r.op, r.from, r.to)] = tc{r.op, r.from, r.to, false}
		cases[fmt.Sprintf("%s/%s->%s/entering", r.op, r.from, r.to)] = tc{r.op, r.from, r.to, true}
	}
	if len(cases) < 100 {
		t.Fatalf("only %d cases built from the table", len(cases))
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if !core.Allowed(c.op, c.from, c.to, c.entering) {
				t.Errorf("Allowed(%s, %q, %q, entering=%v) = false; docs/contract.md §4 lists it", c.op, c.from, c.to, c.entering)
			}
		})
	}
}

// TestAllowedExhaustive compares Allowed with the literal table for every
// operation, every from (no status included), every to and both values of
// entering: anything not listed must be refused.
func TestAllowedExhaustive(t *testing.T) {
	t.Parallel()
	ops := append(append([]core.Operation{}, core.VolumeOperations...), "restart", "Start", "")
	tos := append([]core.State{none}, core.VolumeStates...)
	tos = append(tos, "bogus", "mirrored")
	froms := append(append([]core.State{}, allFrom...), "bogus")
	n, allowed := 0, 0
	for _, op := range ops {
		for _, from := range froms {
			for _, to := range tos {
				for _, entering := range []bool{false, true} {
					n++
					want := specAllowed(op, from, to, entering)
					if want {
						allowed++
					}
					if got := core.Allowed(op, from, to, entering); got != want {
						t.Errorf("Allowed(%q, %q, %q, entering=%v) = %v, docs/contract.md §4 table says %v", op, from, to, entering, got, want)
					}
				}
			}
		}
	}
	t.Logf("%d combinations, %d allowed", n, allowed)
}

func TestCanStartFrom(t *testing.T) {
	t.Parallel()
	for _, op := range append(append([]core.Operation{}, core.VolumeOperations...), "restart", "") {
		for _, s := range append(append([]core.State{}, allFrom...), "bogus") {
			want := specCanStart(op, s)
			if got := core.CanStartFrom(op, s); got != want {
				t.Errorf("CanStartFrom(%q, %q) = %v, want %v", op, s, got, want)
			}
		}
	}
}

func TestCanFinish(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		op   core.Operation
		from []core.State
	}{
		"start never finishes":               {start, nil},
		"resume never finishes":              {resume, nil},
		"pause never finishes":               {pause, nil},
		"stop only from stopping":            {stop, []core.State{stopping}},
		"stop_and_delete only from deleting": {stopAndDelete, []core.State{deleting}},
		"destroy from anything":              {destroy, allFrom},
		"unknown operation never":            {"restart", nil},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			for _, s := range allFrom {
				want := contains(c.from, s)
				if got := core.CanFinish(c.op, s); got != want {
					t.Errorf("CanFinish(%q, %q) = %v, want %v", c.op, s, got, want)
				}
			}
		})
	}
	// cross-check with the literal done rows
	for op, states := range specDone {
		for _, s := range states {
			if !core.CanFinish(op, s) {
				t.Errorf("CanFinish(%s, %q) = false; docs/contract.md §4.2 ends %s from %q", op, s, op, s)
			}
		}
	}
}
