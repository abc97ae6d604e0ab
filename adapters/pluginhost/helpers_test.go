package pluginhost

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cdmdr/mirror/ports"
)

const exampleType = "openstack.storage.type.example"

// writePlugin puts a plugin named name in dir: a script running the test
// plugin with args (flags are how tests reach it: the host hides its
// environment from plugins).
func writePlugin(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	return writeScript(t, dir, name, fmt.Sprintf("exec %s %s", testPlugin, strings.Join(args, " ")))
}

// writeScript puts an executable shell script in dir.
func writeScript(t *testing.T, dir, name, body string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := writeFile(path, "#!/bin/sh\n"+body+"\n"); err != nil {
		t.Fatal(err)
	}
	return path
}

// writeFile writes an executable file, mode 0755 whatever the umask.
func writeFile(path, body string) error {
	if err := os.WriteFile(path, []byte(body), 0o755); err != nil {
		return err
	}
	return os.Chmod(path, 0o755)
}

// startHost runs a host on dir until the test ends, and waits for its
// first scan.
func startHost(t testing.TB, cfg Config, log *slog.Logger) *Host {
	t.Helper()
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 10 * time.Second
	}
	h := New(cfg, log)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	select {
	case <-h.scanned:
	case <-time.After(30 * time.Second):
		t.Fatal("no first scan within 30s")
	}
	return h
}

// status is the status of the plugin at path.
func status(t *testing.T, h *Host, path string) PluginStatus {
	t.Helper()
	for _, st := range h.Plugins() {
		if st.Path == path {
			return st
		}
	}
	t.Fatalf("no status for %s in %+v", path, h.Plugins())
	return PluginStatus{}
}

// eventually polls cond until it holds, for up to 10s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not %s within 10s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// alive says whether a process with that id exists.
func alive(pid int) bool {
	return pid > 0 && !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

var ids atomic.Uint64

// fixture is a fresh environment of storageType with one volume and one
// snapshot listed on its source (memstorage reads them from the metadata),
// and the source's other metadata fields.
func fixture(storageType string, metadata ...any) (ports.Environment, ports.Volume, ports.Snapshot) {
	n := ids.Add(1)
	volUUID := fmt.Sprintf("vol-%d", n)
	snapUUID := fmt.Sprintf("snap-%d", n)
	fields := map[string]any{"volumes": []string{volUUID}, "snapshots": map[string]string{snapUUID: volUUID}}
	for i := 0; i+1 < len(metadata); i += 2 {
		fields[metadata[i].(string)] = metadata[i+1]
	}
	meta, _ := json.Marshal(fields)
	env := ports.Environment{
		ID:     fmt.Sprintf("storage.%d.%d", 2*n, 2*n+1),
		Source: ports.Storage{ClusterID: 1, StorageID: 2 * n, Type: storageType, BackendName: "example", Metadata: meta},
		Target: ports.Storage{ClusterID: 2, StorageID: 2*n + 1, Type: storageType, BackendName: "example", Metadata: json.RawMessage(`{}`)},
	}
	vol := ports.Volume{Environment: env, ClusterID: 1, VolumeID: n, VolumeUUID: volUUID}
	snap := ports.Snapshot{Volume: vol, SnapshotID: n, SnapshotUUID: snapUUID, SnapshotName: "snapshot-" + snapUUID}
	return env, vol, snap
}

// logRecorder is a slog handler keeping every record, at every level.
type logRecorder struct {
	mu      *sync.Mutex
	records *[]slog.Record
	attrs   []slog.Attr
}

func newLogRecorder() *logRecorder {
	return &logRecorder{mu: &sync.Mutex{}, records: new([]slog.Record)}
}

func (r *logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (r *logRecorder) Handle(_ context.Context, rec slog.Record) error {
	rec = rec.Clone()
	rec.AddAttrs(r.attrs...)
	r.mu.Lock()
	defer r.mu.Unlock()
	*r.records = append(*r.records, rec)
	return nil
}

func (r *logRecorder) WithAttrs(as []slog.Attr) slog.Handler {
	c := *r
	c.attrs = append(append([]slog.Attr(nil), r.attrs...), as...)
	return &c
}

func (r *logRecorder) WithGroup(string) slog.Handler { return r }

// find returns the records whose message contains msg, as maps of their
// attributes (message under "msg", level under "level").
func (r *logRecorder) find(msg string) []map[string]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []map[string]string
	for _, rec := range *r.records {
		if !strings.Contains(rec.Message, msg) {
			continue
		}
		m := map[string]string{"msg": rec.Message, "level": rec.Level.String()}
		rec.Attrs(func(a slog.Attr) bool {
			m[a.Key] = a.Value.String()
			return true
		})
		out = append(out, m)
	}
	return out
}

// duplicateKeys lists the records holding an attribute key more than once
// (as "message: key").
func (r *logRecorder) duplicateKeys() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, rec := range *r.records {
		seen := map[string]bool{}
		rec.Attrs(func(a slog.Attr) bool {
			if seen[a.Key] {
				out = append(out, rec.Message+": "+a.Key)
			}
			seen[a.Key] = true
			return true
		})
	}
	return out
}
