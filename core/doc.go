// Package core holds mirror's entities and state rules: the etcd key
// schema and wire records of docs/contract.md §2, and the pure decisions of docs/contract.md §3-§5
// (given an operation, the current status and what the backend reports,
// what to write and what to do next).
//
// core depends only on ports and the standard library, reads no clock and
// does no I/O: callers pass time and observations in and carry decisions
// out, which is what lets the rules be tested exhaustively.
package core
