// Package porttest holds one conformance suite per port. Every
// implementation runs the suite of its port from its own tests: the
// in-memory fakes and the etcd and NATS adapters, so they all honour the
// same contracts (the doc comments in package ports). The storage
// backend's suite is the plugin SDK's plugintest, which the fake backend,
// the plugin host and every plugin run as it is: the port is the SDK's
// contract.
//
// The suites are written for shared, real stores: every subtest works under
// its own key prefix, subject or identity, made unique per run, and cleans
// up after itself where it can.
package porttest

import (
	"crypto/rand"
	"fmt"
	"strings"
	"testing"
	"time"
)

// waitTimeout bounds every wait for something the contract says happens
// (an event, a closed channel, a delivery). Generous, for real stores.
const waitTimeout = 10 * time.Second

// quiet is how long a suite watches for something that must not happen.
const quiet = 100 * time.Millisecond

// runID tells runs apart, so leftovers of an earlier run on a shared store
// do not meet this one.
var runID = newUUID()[:8]

// name turns the test's name into a token safe in keys, subjects, durable
// names and identities, unique to this run.
func name(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, r := range t.Name() {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		default:
			b.WriteRune('_')
		}
	}
	return b.String() + "-" + runID
}

// prefix is a key prefix for the test alone, ending in "/".
func prefix(t *testing.T) string {
	t.Helper()
	return "porttest/" + name(t) + "/"
}

// newUUID returns a random RFC 4122 version 4 UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// waitClosed fails the test unless ch is closed within waitTimeout.
func waitClosed(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitTimeout):
		t.Fatalf("%s: not closed after %v", what, waitTimeout)
	}
}

// isClosed reports whether ch is closed now.
func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}
