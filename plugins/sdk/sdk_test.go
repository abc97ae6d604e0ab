package sdk_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/cdmdr/mirror/plugins/sdk"
	"github.com/cdmdr/mirror/plugins/sdk/memstorage"
	"github.com/cdmdr/mirror/plugins/sdk/plugintest"
)

// TestMain doubles as a plugin: started by go-plugin (which sets the
// handshake's magic cookie), the test binary serves a memstorage backend
// that logs through sdk.Logger, so the tests can run the real executable
// path without building one.
func TestMain(m *testing.M) {
	if os.Getenv(sdk.Handshake.MagicCookieKey) == sdk.Handshake.MagicCookieValue {
		sdk.Serve(&logging{Backend: memstorage.New(memstorage.AutoSource()), log: sdk.Logger()})
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}

// logging is the test plugin's backend: Info logs at every level.
type logging struct {
	sdk.Backend
	log interface {
		DebugContext(ctx context.Context, msg string, args ...any)
		InfoContext(ctx context.Context, msg string, args ...any)
		WarnContext(ctx context.Context, msg string, args ...any)
		ErrorContext(ctx context.Context, msg string, args ...any)
	}
}

func (l *logging) Info(ctx context.Context) (sdk.Info, error) {
	l.log.DebugContext(ctx, "info debug", "volume_uuid", "v-1")
	l.log.InfoContext(ctx, "info asked", "volume_uuid", "v-1", "attempt", 2)
	l.log.WarnContext(ctx, "info warn")
	l.log.ErrorContext(ctx, "info error", "err", "boom")
	return l.Backend.Info(ctx)
}

var storageIDs atomic.Uint64

type harness struct {
	b        sdk.Backend
	env      sdk.Environment
	vol      sdk.Volume
	snap     sdk.Snapshot
	holdFile memstorage.HoldFile
	cutFile  memstorage.CutFile
}

// CutSource implements plugintest.SourceCutter through the file the
// source storage's metadata names.
func (h *harness) CutSource(t *testing.T) (restore func()) {
	restore, err := h.cutFile.Cut()
	if err != nil {
		t.Fatal(err)
	}
	return restore
}

// HoldFirstCopy implements plugintest.FirstCopyHolder through the file
// the source storage's metadata names: the backend is in another process.
func (h *harness) HoldFirstCopy(t *testing.T) (release func()) {
	release, err := h.holdFile.Hold()
	if err != nil {
		t.Fatal(err)
	}
	return release
}

func (h *harness) Backend() sdk.Backend         { return h.b }
func (h *harness) Environment() sdk.Environment { return h.env }
func (h *harness) Volume() sdk.Volume           { return h.vol }
func (h *harness) Snapshot() sdk.Snapshot       { return h.snap }
func (h *harness) Timeout() time.Duration       { return 5 * time.Second }

// newHarness returns a fresh environment of memstorage's default type
// whose source storage lists one volume and one snapshot in its
// metadata, and names the files that hold its first copies and cut it
// off: how a harness reaches inside a plugin process.
func newHarness(t *testing.T, b sdk.Backend) *harness {
	src, dst := storageIDs.Add(1), storageIDs.Add(1)
	volUUID, snapUUID := plugintest.NewUUID(), plugintest.NewUUID()
	dir := t.TempDir()
	holdFile := memstorage.HoldFile(filepath.Join(dir, "hold"))
	cutFile := memstorage.CutFile(filepath.Join(dir, "cut"))
	env := sdk.Environment{
		ID: fmt.Sprintf("storage.%d.%d", src, dst),
		Source: sdk.Storage{ClusterID: 1, StorageID: src, Type: memstorage.DefaultType, BackendName: "memory",
			Metadata: json.RawMessage(fmt.Sprintf(`{"volumes": [%q], "snapshots": {%q: %q}, "hold_first_copy": %q, "cut_file": %q}`,
				volUUID, snapUUID, volUUID, holdFile, cutFile))},
		Target: sdk.Storage{ClusterID: 2, StorageID: dst, Type: memstorage.DefaultType, BackendName: "memory"},
	}
	vol := sdk.Volume{Environment: env, ClusterID: 1, VolumeID: src, VolumeUUID: volUUID}
	return &harness{b: b, env: env, vol: vol, holdFile: holdFile, cutFile: cutFile, snap: sdk.Snapshot{
		Volume: vol, SnapshotID: src, SnapshotUUID: snapUUID, SnapshotName: "snapshot-" + snapUUID,
	}}
}

func self(t *testing.T) string {
	t.Helper()
	path, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// TestConformanceBinary runs the kit against this test binary serving as
// a plugin, over go-plugin's real process handshake and mutual TLS.
func TestConformanceBinary(t *testing.T) {
	plugintest.RunBinary(t, self(t), func(t *testing.T, b sdk.Backend) plugintest.Harness { return newHarness(t, b) })
}
