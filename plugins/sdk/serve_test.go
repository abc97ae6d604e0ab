package sdk_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os/exec"
	"sync"
	"testing"

	hclog "github.com/hashicorp/go-hclog"
	plugin "github.com/hashicorp/go-plugin"

	"github.com/cdmdr/mirror/plugins/sdk"
)

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

// TestLoggerThroughGoPlugin: what a plugin logs with sdk.Logger reaches
// the daemon's logger with its level, message and attributes, as go-plugin
// parses it from the plugin's stderr.
func TestLoggerThroughGoPlugin(t *testing.T) {
	var out lockedBuffer
	client := plugin.NewClient(&plugin.ClientConfig{
		HandshakeConfig:  sdk.Handshake,
		VersionedPlugins: sdk.PluginSets(nil),
		Cmd:              exec.Command(self(t)),
		AllowedProtocols: []plugin.Protocol{plugin.ProtocolGRPC},
		AutoMTLS:         true,
		Logger:           hclog.New(&hclog.LoggerOptions{Output: &out, Level: hclog.Debug, JSONFormat: true}),
	})
	defer client.Kill()
	rpc, err := client.Client()
	if err != nil {
		t.Fatal(err)
	}
	raw, err := rpc.Dispense(sdk.PluginName)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := raw.(sdk.Backend).Info(t.Context()); err != nil {
		t.Fatal(err)
	}
	client.Kill() // flushes the plugin's stderr into the logger

	want := map[string]string{"info debug": "debug", "info asked": "info", "info warn": "warn", "info error": "error"}
	got := map[string]map[string]any{}
	sc := bufio.NewScanner(bytes.NewReader(out.Bytes()))
	for sc.Scan() {
		var entry map[string]any
		if err := json.Unmarshal(sc.Bytes(), &entry); err != nil {
			t.Fatalf("daemon log line is not JSON: %v: %s", err, sc.Bytes())
		}
		if msg, _ := entry["@message"].(string); want[msg] != "" {
			got[msg] = entry
		}
	}
	for msg, level := range want {
		entry := got[msg]
		if entry == nil {
			t.Errorf("%q did not reach the daemon's log as a message of its own:\n%s", msg, out.Bytes())
			continue
		}
		if entry["@level"] != level {
			t.Errorf("%q reached the daemon's log at %v, want %s", msg, entry["@level"], level)
		}
	}
	if e := got["info asked"]; e != nil && (e["volume_uuid"] != "v-1" || e["attempt"] != 2.0) {
		t.Errorf("attributes lost on the way: %v", e)
	}
	if e := got["info error"]; e != nil && e["err"] != "boom" {
		t.Errorf("err attribute lost on the way: %v", e)
	}
}
