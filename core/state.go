package core

// State is a state_code of a status record.
type State string

// StateNone stands for "no status yet".
const StateNone State = ""

// Volume states (docs/contract.md §4).
const (
	StateWaiting      State = "waiting"
	StateInitializing State = "initializing"
	StateMirroring    State = "mirroring"
	StatePaused       State = "paused"
	StateStopping     State = "stopping"
	StateDeleting     State = "deleting"
	StateError        State = "error"
)

// VolumeStates lists every volume state, StateNone excluded.
var VolumeStates = []State{StateWaiting, StateInitializing, StateMirroring, StatePaused, StateStopping, StateDeleting, StateError}

// Environment states (docs/contract.md §3) are initializing, mirroring, stopping and
// error, named like the volume states they share.

// Snapshot states (docs/contract.md §5). A snapshot record is "mirroring" until the
// target holds it, then "mirrored".
const (
	SnapshotMirroring State = "mirroring"
	SnapshotMirrored  State = "mirrored"
	SnapshotDeleting  State = "deleting"
	SnapshotError     State = "error"
)

// ValidVolumeState reports whether s is one of docs/contract.md §4's volume states.
func ValidVolumeState(s State) bool {
	for _, v := range VolumeStates {
		if v == s {
			return true
		}
	}
	return false
}
