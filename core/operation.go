package core

import "fmt"

// Operation is what the DR manager asks for, in an .../operation key.
type Operation string

// Volume operations (docs/contract.md §4).
const (
	OpStart         Operation = "start"
	OpResume        Operation = "resume"
	OpPause         Operation = "pause"
	OpStop          Operation = "stop"
	OpStopAndDelete Operation = "stop_and_delete"
	OpDestroy       Operation = "destroy"
)

// VolumeOperations lists every volume operation.
var VolumeOperations = []Operation{OpStart, OpResume, OpPause, OpStop, OpStopAndDelete, OpDestroy}

// EnvironmentOperations lists every environment operation (docs/contract.md §3).
var EnvironmentOperations = []Operation{OpStart, OpStop}

// ParseVolumeOperation accepts exactly the operation names of docs/contract.md §4.
func ParseVolumeOperation(s string) (Operation, error) {
	for _, op := range VolumeOperations {
		if string(op) == s {
			return op, nil
		}
	}
	return "", fmt.Errorf("%w %s: want one of start, resume, pause, stop, stop_and_delete, destroy", ErrUnknownOperation, Quote(s))
}

// ParseEnvironmentOperation accepts "start" and "stop".
func ParseEnvironmentOperation(s string) (Operation, error) {
	if s == string(OpStart) || s == string(OpStop) {
		return Operation(s), nil
	}
	return "", fmt.Errorf("%w %s: want start or stop", ErrUnknownOperation, Quote(s))
}
