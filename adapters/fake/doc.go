// Package fake holds in-memory, deterministic, concurrency-safe
// implementations of every port, for fast unit tests of the engine and for
// the wire-injected test harness.
//
// Each fake honours its port's contract (the conformance suites in
// ports/porttest run against them) and adds test helpers to script
// failures, inspect what was called and drive time or replication by hand.
package fake
