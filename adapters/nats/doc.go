// Package nats implements ports.Bus on NATS.
//
// With JetStream (the default whenever the server offers it) the subjects
// of the snapshot stream are captured by a file-backed stream, so events the
// cluster manager publishes with plain core-NATS publishes are kept while no
// daemon runs, and a durable subscription is a durable pull consumer shared
// by every daemon. Without JetStream the bus falls back to core NATS: a
// durable name becomes a queue group, which shares messages between daemons
// but neither keeps a backlog nor redelivers (see Bus.Subscribe).
//
// Connect dials the server for the daemon; StartEmbedded runs a server in
// process (tests, and a single-host setup); package natstest wraps it for
// tests.
package nats
