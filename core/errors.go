package core

import "errors"

// Sentinel errors of the core rules.
var (
	// ErrMalformed marks a wire record that cannot be decoded or is
	// missing required fields.
	ErrMalformed = errors.New("malformed record")
	// ErrContradiction marks records that disagree with each other or with
	// their key (a volume whose storages differ from its environment's).
	ErrContradiction = errors.New("contradictory records")
	// ErrUnknownOperation marks an operation name the contract
	// (docs/contract.md §2.3) does not define.
	ErrUnknownOperation = errors.New("unknown operation")
)
