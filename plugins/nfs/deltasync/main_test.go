package deltasync

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(crashEnv); mode != "" {
		// A child of TestProcessKilled: sync until it kills itself.
		err := crashChild(mode, os.Getenv(crashEnv+"_SRC"), os.Getenv(crashEnv+"_DST"))
		fmt.Fprintln(os.Stderr, "the child was not killed:", err)
		os.Exit(3)
	}
	goleak.VerifyTestMain(m)
}
