package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cdmdr/mirror/adapters/nats/natstest"
)

// buildDaemon builds mirrord and the example plugin, as an operator
// installs them: mirrord in dir, the plugin in dir/plugins.
func buildDaemon(t *testing.T) (mirrord, plugins string) {
	t.Helper()
	dir := t.TempDir()
	plugins = filepath.Join(dir, "plugins")
	if err := os.Mkdir(plugins, 0o755); err != nil {
		t.Fatal(err)
	}
	mirrord = filepath.Join(dir, "mirrord")
	for _, b := range []struct{ dir, out string }{{"../mirrord", mirrord}, {"../../plugins/example", filepath.Join(plugins, "example")}} {
		cmd := exec.Command("go", "build", "-o", b.out, ".")
		cmd.Dir = b.dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build %s: %v\n%s", b.dir, err, out)
		}
		// Whatever the umask: the host refuses a plugin others may write.
		if err := os.Chmod(b.out, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return mirrord, plugins
}

// Every operation through a running mirrord with the example plugin as a
// process: mirrorctl asks, --wait follows the daemon's statuses to the
// end, get shows the daemon leading, a refusal writes nothing, and
// doctor finds nothing on the site the daemon keeps.
func TestOperationsThroughMirrord(t *testing.T) {
	if testing.Short() {
		t.Skip("builds mirrord and a plugin")
	}
	mirrord, plugins := buildDaemon(t)
	f := newFixture(t)
	nats := natstest.Start(t, true)
	var logs syncBuffer
	cmd := exec.Command(mirrord, "--daemon-id", "ctl-d1", "--etcd-endpoints", strings.Join(f.srv.Endpoints(), ","),
		"--nats-url", nats.URL(), "--plugin-dir", plugins, "--etcd-session-ttl", "2s",
		"--poll-interval", "1s", "--fast-poll-interval", "200ms", "--log-format", "json")
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "MIRRORD_") })
	out := f.secrets.Writer("the log of mirrord", &logs)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("mirrord:\n%s", logs.String())
		}
	})

	for _, s := range [][2]int{{5, 11}, {6, 13}} {
		key := sprintf("clusters/%d/storages/%d", s[0], s[1])
		f.put(key, sprintf(storageRecord, s[0], s[1]))
		f.put(key+"/metadata", metadataWithKeyring)
	}
	f.put("mirror_environment/storage.11.13", envRecord)
	f.put("mirror_volume/storage.11.13/volume.7", sprintf(volRecord, 7, 7))

	step := func(want int, args ...string) result {
		t.Helper()
		r := f.run(args...)
		if r.code != want {
			t.Fatalf("%q: exit %d, want %d\n%s%s", args, r.code, want, r.stdout, r.stderr)
		}
		return r
	}
	step(exitOK, "environment", "start", "storage.11.13", "--wait", "--timeout", "60s")
	step(exitOK, "volume", "start", "storage.11.13/volume.7", "--wait", "--timeout", "60s")
	r := step(exitOK, "get", "volumes", "-o", "json")
	if !strings.Contains(r.stdout, `"state_code": "mirroring"`) || !strings.Contains(r.stdout, `"leader": "ctl-d1"`) {
		t.Fatalf("get volumes after start:\n%s", r.stdout)
	}
	step(exitOK, "volume", "pause", "storage.11.13/volume.7", "--wait", "--timeout", "60s")
	if got := row(t, step(exitOK, "get", "volumes").stdout, "storage.11.13/volume.7"); got[2] != "paused" || got[7] != "ctl-d1" {
		t.Fatalf("volume row after pause: %q", got)
	}
	rev := f.revision()
	step(exitRefused, "volume", "start", "storage.11.13/volume.7", "--wait", "--timeout", "60s")
	if f.revision() != rev {
		t.Fatal("a refused start wrote")
	}
	step(exitOK, "doctor")
	step(exitOK, "volume", "stop_and_delete", "storage.11.13/volume.7", "--wait", "--timeout", "60s")
	step(exitOK, "environment", "stop", "storage.11.13", "--wait", "--timeout", "60s")
	// The daemon resigns right after deleting the keys.
	eventually(t, "only the daemon's announcement left", func() bool {
		left := mirrorKeys(f.all())
		return len(left) == 1 && strings.HasPrefix(left[0], "mirror_leader/daemons/")
	})

	// doctor --storages asks the plugins as mirrord leftovers does: the
	// example finds nothing; a storage whose type no plugin serves is
	// named.
	r = step(exitOK, "doctor", "--storages", "--plugin-dir", plugins)
	if !strings.Contains(r.stdout, "0 finding(s) in etcd and on the storages") {
		t.Fatalf("doctor --storages on a clean site:\n%s%s", r.stdout, r.stderr)
	}
	f.put("clusters/7/storages/21", `{"cluster_id":7,"storage_id":21,"type":"openstack.storage.type.netapp"}`)
	f.put("clusters/7/storages/21/metadata", `{}`)
	r = step(exitFailed, "doctor", "--storages", "--plugin-dir", plugins, "-o", "json")
	var got []Finding
	if err := json.Unmarshal([]byte(r.stdout), &got); err != nil || len(got) != 1 || got[0].Check != checkStorageSkipped || got[0].Key != "clusters/7/storages/21" {
		t.Fatalf("doctor --storages with a netapp storage (err %v):\n%s%s", err, r.stdout, r.stderr)
	}
}
