package pluginhost

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"
)

// Plugin binaries, built once: the example plugin vendors copy
// (plugins/example), and the test plugin (testdata/testplugin), which
// also misbehaves on demand.
var examplePlugin, testPlugin string

func TestMain(m *testing.M) {
	tmp, err := os.MkdirTemp("", "pluginhost-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	examplePlugin = filepath.Join(tmp, "example")
	testPlugin = filepath.Join(tmp, "testplugin")
	for _, build := range []*exec.Cmd{
		// Its own module, as a vendor's plugin is.
		exec.Command("go", "build", "-C", "../../plugins/example", "-o", examplePlugin, "."),
		exec.Command("go", "build", "-o", testPlugin, "./testdata/testplugin"),
	} {
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", build, err)
			os.RemoveAll(tmp)
			os.Exit(1)
		}
	}
	goleak.VerifyTestMain(m, goleak.Cleanup(func(code int) {
		os.RemoveAll(tmp)
		os.Exit(code)
	}))
}
