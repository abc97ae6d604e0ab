// Package contract is the storage contract between mirror's daemon and a
// storage plugin, written once: the Backend interface, the plain Go types
// that cross it, and the errors the daemon acts on.
//
// It imports only the standard library, so that both sides can use it as
// it is: a vendor's plugin through package sdk (which gives every name
// here again), the daemon's ports package directly, without either
// depending on the other. Each method's doc comment is its contract;
// package plugintest checks that a backend honours it.
package contract
