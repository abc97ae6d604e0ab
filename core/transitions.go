package core

// The state tables of docs/contract.md §4, transcribed from the original's state
// diagrams. Each operation is a composite state: "[*] → X" lists the states
// a volume may take when the operation begins (from no status, or from any
// state the operation may start from), and the arrows list the moves
// allowed once the operation is under way. "done" marks the states from
// which the operation may end by deleting the volume's keys.
type transitionTable struct {
	startFrom []State
	entry     []State
	arrows    map[State][]State
	done      []State
}

var volumeTables = map[Operation]transitionTable{
	OpStart: {
		startFrom: []State{StateWaiting, StateInitializing, StateMirroring, StateError},
		entry:     []State{StateWaiting, StateInitializing, StateMirroring, StateError},
		arrows: map[State][]State{
			StateWaiting:      {StateInitializing, StateError},
			StateInitializing: {StateMirroring, StateError},
			StateMirroring:    {StateError},
			StateError:        {StateWaiting, StateInitializing, StateMirroring},
		},
	},
	OpResume: {
		startFrom: []State{StatePaused, StateInitializing, StateMirroring, StateError},
		entry:     []State{StatePaused, StateInitializing, StateMirroring, StateError},
		arrows: map[State][]State{
			StatePaused:       {StateError, StateInitializing},
			StateInitializing: {StateMirroring, StateError},
			StateMirroring:    {StateError},
			StateError:        {StateInitializing},
		},
	},
	OpPause: {
		startFrom: []State{StateMirroring, StateInitializing, StateError, StatePaused},
		entry:     []State{StatePaused, StateInitializing, StateMirroring, StateError},
		arrows: map[State][]State{
			StateMirroring:    {StatePaused, StateError},
			StateInitializing: {StatePaused, StateError},
			StatePaused:       {StateError},
			StateError:        {StatePaused},
		},
	},
	OpStop: {
		startFrom: []State{StateInitializing, StateMirroring, StatePaused, StateStopping, StateError},
		entry:     []State{StateInitializing, StateMirroring, StatePaused, StateStopping, StateError},
		arrows: map[State][]State{
			StatePaused:       {StateStopping},
			StateMirroring:    {StateStopping},
			StateInitializing: {StateStopping},
			StateStopping:     {StateError},
			StateError:        {StateStopping},
		},
		done: []State{StateStopping},
	},
	OpStopAndDelete: {
		startFrom: []State{StateInitializing, StateMirroring, StatePaused, StateStopping, StateDeleting, StateError},
		entry:     []State{StateInitializing, StateMirroring, StatePaused, StateStopping, StateDeleting, StateError},
		arrows: map[State][]State{
			StatePaused:       {StateStopping},
			StateMirroring:    {StateStopping, StateError},
			StateInitializing: {StateStopping, StateError},
			StateStopping:     {StateDeleting, StateError},
			StateError:        {StateStopping},
			StateDeleting:     {StateError},
		},
		done: []State{StateDeleting},
	},
	// destroy has no diagram (docs/contract.md §4.3): it starts from anything,
	// writes no state and always ends by deleting the keys.
	OpDestroy: {
		startFrom: VolumeStates,
		done:      append([]State{StateNone}, VolumeStates...),
	},
}

// CanStartFrom reports whether op may begin (or carry on) with the volume
// in state s. Every operation may begin with no status.
func CanStartFrom(op Operation, s State) bool {
	t, ok := volumeTables[op]
	return ok && (s == StateNone || has(t.startFrom, s))
}

// Allowed reports whether a volume may move from one state to another
// under op. entering is true when the current state was not reached under
// op (no status, or a status written under another operation): then the
// "[*]" entries of the table apply as well as its arrows. Staying in the
// same state is always allowed.
func Allowed(op Operation, from, to State, entering bool) bool {
	t, ok := volumeTables[op]
	if !ok || to == StateNone || !CanStartFrom(op, from) {
		return false
	}
	if from == to {
		return true
	}
	if (entering || from == StateNone) && has(t.entry, to) {
		return true
	}
	return has(t.arrows[from], to)
}

// CanFinish reports whether op may end, deleting the volume's keys, from
// state s.
func CanFinish(op Operation, s State) bool {
	t, ok := volumeTables[op]
	return ok && has(t.done, s)
}

func has(states []State, s State) bool {
	for _, x := range states {
		if x == s {
			return true
		}
	}
	return false
}
