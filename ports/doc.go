// Package ports declares the small interfaces the mirror engine needs from
// the outside world — a key-value store, leader election, a message bus,
// storage backends, an event reporter and a clock — and the plain records
// that cross them.
//
// Each method's doc comment is its contract; every implementation (the
// in-memory fakes, the etcd and NATS adapters, the plugin host) must honour
// it, and the conformance suites under ports/porttest check that they do.
//
// ports imports nothing but the standard library, so core/ and app/ can
// depend on it without depending on any adapter.
package ports
