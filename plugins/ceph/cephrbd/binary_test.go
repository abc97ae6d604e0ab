package cephrbd

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/cdmdr/mirror/plugins/sdk"
	"github.com/cdmdr/mirror/plugins/sdk/plugintest"
)

// TestConformanceBinary runs the conformance kit against the built plugin
// executable, started as mirrord starts it (go-plugin, mutual TLS, its
// checksum pinned): the gRPC conversions and error codes on real Ceph.
func TestConformanceBinary(t *testing.T) {
	r := newRig(t, modeJournal)
	dir := t.TempDir()
	bin := filepath.Join(dir, "ceph")
	build := exec.Command("go", "build", "-tags", "pacific", "-o", bin, "github.com/cdmdr/mirror/plugins/ceph")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the plugin: %v\n%s", err, out)
	}
	state := filepath.Join(r.stateDir, "binary")
	// mirrord starts a plugin without arguments; a wrapper gives it its
	// state directory, as an operator's would.
	script := filepath.Join(dir, "mirror-plugin-ceph")
	if err := os.WriteFile(script, fmt.Appendf(nil, "#!/bin/sh\nexec %s --state-dir %s\n", bin, state), 0o700); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// rbd-mirror runs in its own process group and outlives a killed
		// plugin on purpose; the kit tears each environment down, and this
		// catches what a failed subtest left.
		_ = exec.Command("pkill", "-f", state).Run()
	})
	plugintest.RunBinary(t, script, func(t *testing.T, b sdk.Backend) plugintest.Harness {
		h := r.newHarness(t)
		h.remote, h.stateDir = b, state
		return h
	})
	checkPrivate(t, state)
}
