package main

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cdmdr/mirror/core"
)

const exampleType = "openstack.storage.type.example"

// buildExamplePlugin builds plugins/example into a fresh plugin directory,
// as an operator installs it.
func buildExamplePlugin(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "example"), ".")
	cmd.Dir = filepath.Join("..", "..", "plugins", "example")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build the example plugin: %v\n%s", err, out)
	}
	// Whatever the umask: the host refuses a plugin others may write.
	if err := os.Chmod(filepath.Join(dir, "example"), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// startWithPlugins runs a daemon built by the production injector: its
// backends are the plugins of dir, started as real processes; edit
// changes the test configuration first.
func (c *cluster) startWithPlugins(id, dir string, edit ...func(*Config)) *daemon {
	c.t.Helper()
	cfg := c.config(id)
	cfg.PluginDir = dir
	for _, e := range edit {
		e(&cfg)
	}
	logs := &syncBuffer{}
	out := c.secrets.Writer("the log of daemon "+id, logs)
	log := slog.New(slog.NewTextHandler(out, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	d, cleanup, err := initDaemon(ctx, cfg, log)
	if err != nil {
		cancel()
		c.t.Fatalf("start %s: %v", id, err)
	}
	dm := &daemon{id: id, logs: logs, cancel: cancel, done: make(chan struct{}), httpAddr: d.HTTP.Addr()}
	go func() {
		dm.err = d.Engine.Run(ctx)
		cleanup()
		close(dm.done)
	}()
	c.t.Cleanup(func() {
		dm.stop()
		if c.t.Failed() {
			c.t.Logf("logs of %s:\n%s", id, logs.String())
		}
	})
	return dm
}

// The engine end to end with a plugin loaded as a real process from a
// directory: etcd keys in, plugin calls, statuses out.
func TestEndToEndWithPluginProcess(t *testing.T) {
	dir := buildExamplePlugin(t)
	c := newCluster(t)
	d := c.startWithPlugins("d1", dir)

	for _, s := range []string{"clusters/5/storages/11", "clusters/6/storages/13"} {
		parts := strings.Split(s, "/")
		c.put(s, `{"cluster_id":`+parts[1]+`,"storage_id":`+parts[3]+`,"type":"`+exampleType+`","backend_name":"example"}`)
		c.put(s+"/metadata", `{"pool":"volumes","keyring":"`+seedKeyring+`"}`)
	}
	c.seedEnvironment("start")
	c.waitState("mirror_environment/storage.11.13/status", core.StateMirroring)

	ref := seedVol7
	c.put(core.VolumeKey(ref), `{"source_cluster_storage":{"cluster_id":5,"storage_id":11},"target_cluster_storage":{"cluster_id":6,"storage_id":13},"source_volume":{"cluster_id":5,"volume_id":7,"volume_uuid":"`+seedUUID+`"},"source_agent":{"ip":"192.168.137.101","port":8080}}`)
	c.setOp(ref, "start")
	c.waitState(core.VolumeStatusKey(ref), core.StateMirroring)
	c.setOp(ref, "pause")
	c.waitState(core.VolumeStatusKey(ref), core.StatePaused)
	c.setOp(ref, "stop_and_delete")
	c.waitGone(core.VolumeKey(ref))

	// A storage type no plugin serves: the status says which plugins are
	// loaded, so the operator sees what is missing.
	c.put("clusters/5/storages/21", `{"cluster_id":5,"storage_id":21,"type":"openstack.storage.type.netapp","backend_name":"netapp"}`)
	c.put("clusters/6/storages/23", `{"cluster_id":6,"storage_id":23,"type":"openstack.storage.type.netapp","backend_name":"netapp"}`)
	c.put("mirror_environment/storage.21.23", `{"source_cluster_storage":{"cluster_id":5,"storage_id":21},"target_cluster_storage":{"cluster_id":6,"storage_id":23}}`)
	c.put("mirror_environment/storage.21.23/operation", `{"operation":"start"}`)
	st := c.waitState("mirror_environment/storage.21.23/status", core.StateError)
	if st.ErrorReason == nil || !strings.Contains(st.ErrorReason.Code, "no_backend") || !strings.Contains(st.ErrorReason.Contents, "example") {
		t.Fatalf("status %+v: want no_backend naming the loaded example plugin", st)
	}

	c.seedEnvironment("stop")
	c.waitGone("mirror_environment/storage.11.13")
	pgrep := func() string {
		out, _ := exec.Command("pgrep", "-f", filepath.Join(dir, "example")).Output()
		return strings.TrimSpace(string(out))
	}
	if pgrep() == "" {
		t.Fatal("no plugin process found while the daemon runs")
	}
	d.stop()
	if strings.Contains(d.logs.String(), seedKeyring) {
		t.Fatal("a keyring reached the logs")
	}
	// The plugin process is gone with the daemon.
	if left := pgrep(); left != "" {
		t.Fatalf("plugin processes left after the daemon stopped: %s", left)
	}
}
