package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cdmdr/mirror/plugins/sdk"
	"github.com/cdmdr/mirror/plugins/sdk/memstorage"
	"github.com/cdmdr/mirror/plugins/sdk/plugintest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestConformance builds the plugin and runs the conformance kit against
// the executable, started as mirrord starts it.
func TestConformance(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "mirror-plugin-example")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		t.Fatalf("go build: %v", err)
	}
	// Run by hand, a plugin says mirrord must start it, and exits.
	out, err := exec.Command(bin).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "plugin") {
		t.Fatalf("the plugin run by hand = %v, %q; want it to say it is a plugin and fail", err, out)
	}
	plugintest.RunBinary(t, bin, newHarness)
}

// storageIDs numbers the storages, so each subtest has an environment of
// its own.
var storageIDs atomic.Uint64

// harness is one subtest's fixture. The test cannot reach into the plugin
// process, so the source storage's metadata lists the volume and snapshot
// that exist on it and names the files that hold its first copies and cut
// it off (memstorage reads {"volumes": [...], "snapshots": {snapshot:
// volume}, "hold_first_copy": path, "cut_file": path}); a real plugin's
// harness creates them on its real source storage instead, holds a first
// copy there and cuts the network path to it.
type harness struct {
	b        sdk.Backend
	env      sdk.Environment
	vol      sdk.Volume
	snap     sdk.Snapshot
	holdFile memstorage.HoldFile
	cutFile  memstorage.CutFile
}

func newHarness(t *testing.T, b sdk.Backend) plugintest.Harness {
	src, dst := storageIDs.Add(1), storageIDs.Add(1)
	volUUID, snapUUID := plugintest.NewUUID(), plugintest.NewUUID()
	dir := t.TempDir()
	holdFile := memstorage.HoldFile(filepath.Join(dir, "hold"))
	cutFile := memstorage.CutFile(filepath.Join(dir, "cut"))
	source, err := json.Marshal(map[string]any{
		"volumes":         []string{volUUID},
		"snapshots":       map[string]string{snapUUID: volUUID},
		"hold_first_copy": holdFile,
		"cut_file":        cutFile,
	})
	if err != nil {
		t.Fatal(err)
	}
	env := sdk.Environment{
		ID:     fmt.Sprintf("storage.%d.%d", src, dst),
		Source: sdk.Storage{ClusterID: 1, StorageID: src, Type: StorageType, BackendName: "example", Metadata: source},
		Target: sdk.Storage{ClusterID: 2, StorageID: dst, Type: StorageType, BackendName: "example-dr"},
	}
	vol := sdk.Volume{Environment: env, ClusterID: 1, VolumeID: src, VolumeUUID: volUUID}
	return &harness{b: b, env: env, vol: vol, holdFile: holdFile, cutFile: cutFile, snap: sdk.Snapshot{
		Volume: vol, SnapshotID: src, SnapshotUUID: snapUUID, SnapshotName: "snapshot-" + snapUUID,
	}}
}

func (h *harness) Backend() sdk.Backend         { return h.b }
func (h *harness) Environment() sdk.Environment { return h.env }
func (h *harness) Volume() sdk.Volume           { return h.vol }
func (h *harness) Snapshot() sdk.Snapshot       { return h.snap }
func (h *harness) Timeout() time.Duration       { return 10 * time.Second }

// HoldFirstCopy implements plugintest.FirstCopyHolder: while the file
// exists, the plugin's first copy of the volume does not complete.
func (h *harness) HoldFirstCopy(t *testing.T) (release func()) {
	release, err := h.holdFile.Hold()
	if err != nil {
		t.Fatal(err)
	}
	return release
}

// CutSource implements plugintest.SourceCutter: while the file exists,
// the plugin cannot reach the source storage.
func (h *harness) CutSource(t *testing.T) (restore func()) {
	restore, err := h.cutFile.Cut()
	if err != nil {
		t.Fatal(err)
	}
	return restore
}
