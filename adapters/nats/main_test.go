package nats_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Subscriptions, connections and embedded servers must release every
// goroutine once stopped, closed and shut down.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
