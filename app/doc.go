// Package app is mirrord's engine: it keeps a cache of the mirror keys
// from watches (re-listed on every resync as a safety net), runs one
// worker per environment and per volume while this daemon leads it, turns
// each worker's view into a decision with core's plans, carries the
// decision out on the storage backend and writes the status back, fenced
// by leadership. Snapshot events from the bus become snapshot records that
// the volume's worker then replicates.
//
// app depends on core and ports only; cmd/ wires real adapters in, and
// app/harness wires fakes for tests.
package app
