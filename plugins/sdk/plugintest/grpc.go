package plugintest

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"testing"
	"time"

	hclog "github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"

	"github.com/cdmdr/mirror/plugins/sdk"
)

// RunGRPC runs the suite of Run against each harness's backend served
// in-process through go-plugin's gRPC shim (ServeGRPC): what the daemon
// sees of a plugin, conversions and error codes included, without
// building an executable. Over the wire a call with a cancelled ctx fails
// in the client before it reaches the plugin, so run Run as well: it is
// what checks that the backend itself honours ctx.
func RunGRPC(t *testing.T, newHarness func(t *testing.T) Harness) {
	t.Helper()
	Run(t, func(t *testing.T) Harness {
		h := newHarness(t)
		client, _ := ServeGRPC(t, h.Backend())
		return remote{Harness: h, client: client}
	})
}

// RunBinary runs the suite of Run against the plugin executable at path,
// started once for all subtests as mirrord starts it (StartBinary).
// newHarness gets the backend speaking to the plugin process; since the
// harness cannot reach into that process, the volume and snapshot it
// returns must exist on the source by the plugin's own means (for
// memstorage: listed in the source storage's metadata).
func RunBinary(t *testing.T, path string, newHarness func(t *testing.T, b sdk.Backend) Harness) {
	t.Helper()
	b := StartBinary(t, path)
	Run(t, func(t *testing.T) Harness { return newHarness(t, b) })
}

// ServeGRPC serves b in-process through go-plugin's real gRPC shim
// (sdk.BackendPlugin) and returns a Backend calling it, as the daemon
// would. stop stops the server, as if the plugin process died: calls then
// fail with sdk.ErrRetryable. Both sides are closed at t's cleanup.
func ServeGRPC(t testing.TB, b sdk.Backend) (client sdk.Backend, stop func()) {
	t.Helper()
	c, server := plugin.TestPluginGRPCConn(t, false, sdk.PluginSets(b)[sdk.ProtocolVersion])
	var once sync.Once
	stop = func() { once.Do(server.Stop) }
	t.Cleanup(func() {
		// Stop first: closing the client asks the server to stop itself,
		// which races with a Stop of ours (go-plugin v1.8).
		stop()
		_ = c.Close()
	})
	raw, err := c.Dispense(sdk.PluginName)
	if err != nil {
		t.Fatalf("dispense %q: %v", sdk.PluginName, err)
	}
	client, ok := raw.(sdk.Backend)
	if !ok {
		t.Fatalf("dispense %q returned a %T, not an sdk.Backend", sdk.PluginName, raw)
	}
	return client, stop
}

// StartBinary starts the plugin executable at path as mirrord does:
// go-plugin with sdk.Handshake, gRPC only, mutual TLS, and the binary's
// SHA-256 pinned. It fails t unless the plugin speaks
// sdk.ProtocolVersion, and returns the backend dispensed as
// sdk.PluginName. The process is killed at t's cleanup, and its log shown
// if t failed.
func StartBinary(t testing.TB, path string) sdk.Backend {
	t.Helper()
	sum, err := fileSHA256(path)
	if err != nil {
		t.Fatalf("checksum of plugin %s: %v", path, err)
	}
	logs := &syncBuffer{}
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake,
		VersionedPlugins: sdk.PluginSets(nil),
		Cmd:              exec.Command(path),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		SecureConfig:     &plugin.SecureConfig{Checksum: sum, Hash: sha256.New()},
		StartTimeout:     30 * time.Second,
		Logger: hclog.New(&hclog.LoggerOptions{
			Name: "plugin", Output: logs, Level: hclog.Debug,
		}),
	})
	t.Cleanup(func() {
		client.Kill()
		if t.Failed() {
			t.Logf("plugin %s log:\n%s", path, logs.String())
		}
	})
	rpc, err := client.Client()
	if err != nil {
		t.Fatalf("start plugin %s: %v", path, err)
	}
	if v := client.NegotiatedVersion(); v != sdk.ProtocolVersion {
		t.Fatalf("plugin %s speaks protocol %d, want %d", path, v, sdk.ProtocolVersion)
	}
	raw, err := rpc.Dispense(sdk.PluginName)
	if err != nil {
		t.Fatalf("dispense %q from plugin %s: %v", sdk.PluginName, path, err)
	}
	b, ok := raw.(sdk.Backend)
	if !ok {
		t.Fatalf("dispense %q from plugin %s returned a %T, not an sdk.Backend", sdk.PluginName, path, raw)
	}
	return b
}

// remote is a harness whose backend is reached over gRPC.
type remote struct {
	Harness
	client sdk.Backend
}

func (r remote) Backend() sdk.Backend { return r.client }

// unwrap gives the kit the harness itself, whose FirstCopyHolder it uses.
func (r remote) unwrap() Harness { return r.Harness }

func fileSHA256(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	return h.Sum(nil), nil
}

// syncBuffer collects the plugin's log, written by go-plugin's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
