package fake_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every fake that starts goroutines (watchers, subscribers) must stop them
// when its ctx ends or it is stopped.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
