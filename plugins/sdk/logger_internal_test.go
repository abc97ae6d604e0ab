package sdk

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"
	"time"
)

// TestLoggerFormat: the plugin logger writes one hclog JSON object a line:
// @level, @message, @timestamp in hclog's layout, attributes as they are.
func TestLoggerFormat(t *testing.T) {
	var buf bytes.Buffer
	log := newLogger(&buf)
	log.Debug("volume status asked", "volume_uuid", "v-1")
	log.Info("image mirroring enabled", "volume_uuid", "v-1", "attempt", 2)
	log.Warn("peer slow")
	log.Error("enable failed", "err", "boom")
	log.Log(t.Context(), slog.LevelDebug-4, "trace") // below debug: dropped
	log.Log(t.Context(), slog.LevelError+4, "fatal")
	log.WithGroup("rbd").Info("grouped", "pool", "volumes")

	want := []struct{ level, message string }{
		{"debug", "volume status asked"}, {"info", "image mirroring enabled"}, {"warn", "peer slow"},
		{"error", "enable failed"}, {"error", "fatal"}, {"info", "grouped"},
	}
	lines := bytes.Split(bytes.TrimSpace(buf.Bytes()), []byte("\n"))
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d:\n%s", len(lines), len(want), buf.String())
	}
	for i, line := range lines {
		var entry map[string]any
		if err := json.Unmarshal(line, &entry); err != nil {
			t.Fatalf("line %d is not JSON: %v\n%s", i, err, line)
		}
		if entry["@level"] != want[i].level || entry["@message"] != want[i].message {
			t.Errorf("line %d = %s, want @level %q and @message %q", i, line, want[i].level, want[i].message)
		}
		ts, _ := entry["@timestamp"].(string)
		// The layout go-plugin parses @timestamp with.
		if _, err := time.Parse("2006-01-02T15:04:05.000000Z07:00", ts); err != nil {
			t.Errorf("line %d: @timestamp %q: %v", i, ts, err)
		}
		for _, k := range []string{"level", "msg", "time"} {
			if _, ok := entry[k]; ok {
				t.Errorf("line %d has slog's key %q: %s", i, k, line)
			}
		}
	}
	var info map[string]any
	_ = json.Unmarshal(lines[1], &info)
	if info["volume_uuid"] != "v-1" || info["attempt"] != 2.0 {
		t.Errorf("attributes lost: %s", lines[1])
	}
	var grouped map[string]any
	_ = json.Unmarshal(lines[5], &grouped)
	if g, _ := grouped["rbd"].(map[string]any); g["pool"] != "volumes" {
		t.Errorf("grouped attributes lost: %s", lines[5])
	}
}
