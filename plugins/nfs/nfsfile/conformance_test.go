package nfsfile_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/cdmdr/mirror/plugins/nfs/nfsfile"
	"github.com/cdmdr/mirror/plugins/sdk"
	"github.com/cdmdr/mirror/plugins/sdk/plugintest"
)

// kitHarness is the conformance kit's fixture: a source share served by
// an agent behind a gate, a target share, and the backend.
type kitHarness struct {
	s    *site
	be   sdk.Backend
	env  sdk.Environment
	vol  sdk.Volume
	snap sdk.Snapshot
}

func newKitHarness(t *testing.T, be sdk.Backend) *kitHarness {
	s := newSite(t)
	// A first copy of volumeSize takes about half a second: the kit's
	// hold, right after StartVolume, comes before it is done.
	s.gate.throttle(volumeSize * 2)
	h := &kitHarness{s: s, be: be, env: s.environment(t, "1s")}
	uuid := plugintest.NewUUID()
	s.writeVolume(t, uuid, volumeSize)
	h.vol = sdk.Volume{Environment: h.env, ClusterID: 5, VolumeID: 7, VolumeUUID: uuid, SourceAgent: s.agentAddr(t)}
	snapUUID := plugintest.NewUUID()
	// Cinder's NFS driver names a snapshot's file volume-{uuid}.{snapshot uuid}.
	if err := os.WriteFile(filepath.Join(s.srcDir, "volume-"+uuid+"."+snapUUID), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	h.snap = sdk.Snapshot{Volume: h.vol, SnapshotID: 21, SnapshotUUID: snapUUID, SnapshotName: "snapshot-" + snapUUID}
	return h
}

func (h *kitHarness) Backend() sdk.Backend         { return h.be }
func (h *kitHarness) Environment() sdk.Environment { return h.env }
func (h *kitHarness) Volume() sdk.Volume           { return h.vol }
func (h *kitHarness) Snapshot() sdk.Snapshot       { return h.snap }
func (h *kitHarness) Timeout() time.Duration       { return 20 * time.Second }

// HoldFirstCopy holds the agent's block data: the first copy stalls.
func (h *kitHarness) HoldFirstCopy(t *testing.T) (release func()) {
	h.s.gate.hold.close()
	return h.s.gate.hold.open
}

// CutSource makes every request to the agent hang, as a lost site's.
func (h *kitHarness) CutSource(t *testing.T) (restore func()) {
	h.s.gate.cut.close()
	return h.s.gate.cut.open
}

func newBackend(t *testing.T) *nfsfile.Backend {
	b := nfsfile.New(nfsfile.Options{ProbeTimeout: 2 * time.Second})
	t.Cleanup(b.Close)
	return b
}

func TestConformance(t *testing.T) {
	plugintest.Run(t, func(t *testing.T) plugintest.Harness {
		return newKitHarness(t, newBackend(t))
	})
}

func TestConformanceOverGRPC(t *testing.T) {
	plugintest.RunGRPC(t, func(t *testing.T) plugintest.Harness {
		return newKitHarness(t, newBackend(t))
	})
}

// TestConformanceBinary runs the kit against the built plugin executable,
// started as mirrord starts it (go-plugin, mutual TLS, its checksum
// pinned).
func TestConformanceBinary(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "nfs")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/cdmdr/mirror/plugins/nfs").CombinedOutput(); err != nil {
		t.Fatalf("build the plugin: %v\n%s", err, out)
	}
	plugintest.RunBinary(t, bin, func(t *testing.T, b sdk.Backend) plugintest.Harness {
		return newKitHarness(t, b)
	})
}
